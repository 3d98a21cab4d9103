"""The model card leads with quality on real posts and says why the validation figure is higher."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from givetake.training.card import render_card
from givetake.training.config import DataConfig, ModelConfig, TrainConfig
from givetake.training.quality_claim import (
    REFERENCE_FILE,
    WHY_VALIDATION_IS_HIGHER,
    quality_lead,
    read_reference,
    recipe_differences,
)

NAMES = ["pitch", "ask"]


def _metrics(macro: float) -> dict[str, Any]:
    per_label = {
        n: {"precision": macro, "recall": macro, "f1": macro + i / 100, "support": 9} for i, n in enumerate(NAMES)
    }
    return {"per_label": per_label, "macro_f1": macro, "micro_f1": macro, "exact_match": macro, "rows": 40}


def _default_config() -> dict[str, Any]:
    return {
        "model": dataclasses.asdict(ModelConfig()),
        "data": dataclasses.asdict(DataConfig()),
        "train": {**dataclasses.asdict(TrainConfig()), "output_dir": "/elsewhere", "threads": 2, "bf16": True},
    }


REFERENCE = {
    "measured_by": "bench/quality.py",
    "measured_at": "2026-12-04 23:00 UTC",
    "recipe": "default recipe",
    "gold": {"name": "dev.jsonl", "rows": 1393, "macro_f1": 0.7712, "per_label_f1": {"pitch": 0.75, "ask": 0.81}},
}


def test_own_evaluation_on_real_posts_leads_and_validation_is_explained() -> None:
    lines = quality_lead(
        {"validation": _metrics(0.96), "evaluations": {"team_posts": _metrics(0.71)}}, _default_config(), REFERENCE
    )
    text = "\n".join(lines)
    assert lines[0] == "## Quality on real posts"
    assert "macro-F1 0.710** on `team_posts` (40 labelled posts" in text
    assert "weakest label `pitch` F1 0.710" in text
    assert "0.7712" not in text and "0.771" not in text  # the reference is not quoted when the run has its own
    assert text.index("0.710") < text.index("Validation macro-F1: 0.960")
    assert WHY_VALIDATION_IS_HIGHER in text


def test_reference_figure_quoted_and_named_when_the_run_has_no_evaluation() -> None:
    text = "\n".join(quality_lead({"validation": _metrics(0.96)}, _default_config(), REFERENCE))
    assert "has not been evaluated on real labelled posts" in text
    assert "**macro-F1 0.771** on 1393 real posts" in text and "`bench/quality.py`" in text
    assert "`pitch` 0.75, `ask` 0.81" in text
    assert "This run follows that recipe." in text


def test_a_run_off_the_default_recipe_is_told_the_figure_is_only_a_guide() -> None:
    config = _default_config()
    config["train"]["epochs"] = 2
    config["data"]["data"] = ["team.csv"]
    assert recipe_differences(config) == ["data=['team.csv']", "epochs=2"]
    text = "\n".join(quality_lead({"validation": _metrics(0.96)}, config, REFERENCE))
    assert "departs from it (data=['team.csv'], epochs=2)" in text and "a guide" in text
    assert recipe_differences({}) == ["run_config.json missing"]


def test_no_reference_and_no_evaluation_says_not_measured(tmp_path: Path) -> None:
    assert read_reference(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert read_reference(tmp_path / "bad.json") is None
    text = "\n".join(quality_lead({"validation": _metrics(0.9)}, _default_config(), reference={}))
    assert "Not measured" in text and "givetake evaluate" in text


def test_shipped_reference_is_readable() -> None:
    ref = read_reference()
    assert ref is not None, f"{REFERENCE_FILE} missing or malformed"
    assert 0 < ref["gold"]["macro_f1"] < 1 and ref["gold"]["rows"] > 0
    assert json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))["measured_by"] == "bench/quality.py"


def test_card_of_a_run_opens_with_real_post_quality(trained_run: Path) -> None:
    card = render_card(trained_run)
    assert card.index("## Quality on real posts") < card.index("## Validation metrics")
    # The tiny test run is not the default recipe (2 epochs, a random base model).
    assert "departs from it" in card or "Not measured" in card
