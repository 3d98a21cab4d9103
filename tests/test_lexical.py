"""The lexical half (TF-IDF + logistic regression): saved without pickle, blended by the predictor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from givetake.core.lexical import LexicalModel, has_lexical
from givetake.core.predictor import Predictor
from givetake.core.thresholds import save_thresholds
from tests.helpers import read_seed_rows

ROWS = read_seed_rows(20)
NAMES = ["pitch", "ask", "helpful_share", "conversation_starter", "customer_service_reply"]


def _data() -> tuple[list[str], np.ndarray]:
    y = np.array([[int(n in r["labels"]) for n in NAMES] for r in ROWS])
    return [r["text"] for r in ROWS], y


def test_save_load_round_trip_without_pickle(tmp_path: Path) -> None:
    texts, y = _data()
    model = LexicalModel(NAMES).fit(texts, y)
    model.save(tmp_path, blend_weight=0.3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lexical.json", "lexical.safetensors"]
    loaded, weight = LexicalModel.load(tmp_path)
    assert weight == 0.3 and has_lexical(tmp_path)
    assert np.array_equal(model.predict_proba(texts), loaded.predict_proba(texts))


def test_learns_its_training_rows() -> None:
    texts, y = _data()
    probs = LexicalModel(NAMES).fit(texts, y).predict_proba(texts)
    assert probs.shape == y.shape and ((probs > 0.5) == y).mean() > 0.9


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    texts, y = _data()
    LexicalModel(NAMES).fit(texts, y).save(tmp_path)
    meta = json.loads((tmp_path / "lexical.json").read_text())
    meta["vocabularies"]["word"] = meta["vocabularies"]["word"][:-5]
    (tmp_path / "lexical.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match"):
        LexicalModel.load(tmp_path)


def test_predictor_blends_both_halves(trained_run: Path, tmp_path: Path) -> None:
    texts = [r["text"] for r in ROWS[:6]]
    blended = Predictor(trained_run)
    assert blended.lexical is not None and blended.lexical_weight == 0.5
    alone = tmp_path / "alone"
    shutil.copytree(trained_run, alone)
    for f in ("lexical.json", "lexical.safetensors"):
        (alone / f).unlink()
    save_thresholds(alone, blended.thresholds)
    transformer = Predictor(alone)
    assert transformer.lexical is None
    expected = 0.5 * transformer.predict_proba(texts)[0] + 0.5 * blended.lexical.predict_proba(texts)
    assert np.allclose(blended.predict_proba(texts)[0], expected, atol=1e-6)
