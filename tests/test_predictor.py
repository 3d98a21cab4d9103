"""The shared predictor on the tiny trained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from givetake.core.predictor import ModelLoadError, Predictor
from givetake.core.thresholds import save_thresholds
from givetake.errors import ModelNotFound

TEXTS = ["@user so sorry, please DM us your order number", "Our summer sale starts now!", "lovely walk today"]


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    # The torch engine; tests/test_engines.py compares the ONNX engines with it.
    return Predictor(trained_run, engine="torch")


def test_predictions_have_labels_scores_and_truncation(predictor: Predictor) -> None:
    out = predictor.predict(TEXTS)
    probs, _ = predictor.predict_proba(TEXTS)
    assert len(out) == 3
    for pred, row in zip(out, probs):
        assert set(pred) == {"labels", "scores", "truncated"}
        assert list(pred["scores"]) == predictor.labels
        assert [pred["scores"][n] for n in predictor.labels] == pytest.approx(row.tolist(), abs=1e-4)
        assert pred["labels"] == [n for n, p in zip(predictor.labels, row) if p >= predictor.thresholds[n]]
        assert pred["truncated"] is False
    assert predictor.predict([]) == []


def test_order_and_batching_do_not_change_scores(predictor: Predictor) -> None:
    texts = TEXTS + ["a much longer post " * 10, "hi"]
    probs, _ = predictor.predict_proba(texts)
    one_by_one = np.vstack([predictor.predict_proba([t])[0] for t in texts])
    assert np.allclose(probs, one_by_one, atol=1e-5)
    rev, _ = predictor.predict_proba(texts[::-1])
    assert np.allclose(rev[::-1], probs, atol=1e-5)


def test_passes_are_cut_where_padding_costs_more_than_a_pass(predictor: Predictor) -> None:
    from givetake.core.predictor import TOKEN_BUDGET

    def passes(lengths: list[int], batch_size: int = 32) -> list[list[int]]:
        predictor.batch_size = batch_size
        try:
            return predictor._batches([[7] * n for n in lengths])
        finally:
            predictor.batch_size = 32

    # Three short posts do not pay for a long one's padding; equal lengths share one pass.
    assert passes([4, 120, 4, 4]) == [[0, 2, 3], [1]]
    assert passes([20] * 6) == [[0, 1, 2, 3, 4, 5]]
    assert passes([20] * 6, batch_size=4) in ([[0, 1], [2, 3, 4, 5]], [[0, 1, 2, 3], [4, 5]])
    # Close lengths share a pass: a second pass would cost more than their padding.
    assert passes([10, 11, 12, 13]) == [[0, 1, 2, 3]]
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 129, size=200).tolist()
    cut = passes(lengths)
    assert sorted(i for p in cut for i in p) == list(range(200))  # every text once
    for p in cut:
        width = max(lengths[i] for i in p)
        assert len(p) <= 32 and (len(p) == 1 or len(p) * width <= TOKEN_BUDGET)
        assert [lengths[i] for i in p] == sorted(lengths[i] for i in p)


def test_sigmoid_scores_are_independent(predictor: Predictor) -> None:
    probs, _ = predictor.predict_proba(TEXTS)
    # a softmax would make every row sum to 1
    assert not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_truncation_flag(predictor: Predictor) -> None:
    long_text = "great " * (predictor.max_length + 20)
    _, flags = predictor.predict_proba([long_text, "short one"])
    assert flags == [True, False]


def test_a_long_post_is_read_at_both_ends(trained_run: Path, tmp_path: Path) -> None:
    predictor = Predictor(trained_run)
    assert predictor.head_tokens == predictor.max_length // 2  # the run's default, recorded in run_config.json
    words = [f"w{i}" for i in range(3 * predictor.max_length)]
    ids, flags = predictor._encode([" ".join(words)])
    full = predictor._tokenize([" ".join(words)])[0]
    assert flags == [True] and len(ids[0]) == predictor.max_length
    head = predictor.head_tokens
    assert ids[0][:head] == full[:head] and ids[0][head:] == full[len(full) - (predictor.max_length - head) :]
    # A run from before head_tokens existed was trained on the start only, and is read that way.
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    config = json.loads((old / "run_config.json").read_text())
    del config["model"]["head_tokens"]
    (old / "run_config.json").write_text(json.dumps(config))
    old_ids, _ = Predictor(old)._encode([" ".join(words)])
    assert old_ids[0] == full[: predictor.max_length - 1] + full[-1:]


def test_thresholds_drive_labels(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    names = Predictor(copy).labels
    save_thresholds(copy, {n: 0.0 for n in names})
    assert all(p["labels"] == names for p in Predictor(copy).predict(TEXTS))
    save_thresholds(copy, {n: 1.0 for n in names})
    assert all(p["labels"] == [] for p in Predictor(copy).predict(TEXTS))


def test_loads_from_the_bentoml_store(trained_run: Path) -> None:
    by_tag = Predictor("givetake:tiny")
    by_dir = Predictor(trained_run)
    assert np.allclose(by_tag.predict_proba(TEXTS)[0], by_dir.predict_proba(TEXTS)[0])


def test_missing_or_broken_model_directories(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        Predictor(tmp_path / "nope")
    with pytest.raises(ModelNotFound, match="neither a model directory nor a model in the BentoML store"):
        Predictor("givetake:no-such-version")
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    (broken / "thresholds.json").unlink()
    with pytest.raises(ModelNotFound, match="missing thresholds.json"):
        Predictor(broken)


def test_pickle_files_are_refused(trained_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pickled"
    shutil.copytree(trained_run, bad)
    (bad / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelLoadError, match="pickle"):
        Predictor(bad)
