"""The TF-IDF + logistic-regression baseline runs and is scored by the shared evaluation code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from givetake.cli import app
from givetake.labels.schema import load_schema
from givetake.training.config import DataConfig, TrainConfig
from givetake.training.data import load_posts, stratified_split
from givetake.training.evaluate import compute_metrics


def test_baseline_command(tmp_path: Path, small_data: Path) -> None:
    result = CliRunner().invoke(
        app, ["baseline", "--data", str(small_data), "--output-dir", str(tmp_path), "--eval", str(small_data)]
    )
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.iterdir()
    assert run.name.endswith("-baseline")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == "baseline"
    # On its validation split the baseline must beat the trivial predictors on the same rows: every
    # label on every post, and each label on a random half (the F1 of these does not need a model).
    y = _validation_labels(small_data)
    validation = metrics["validation"]
    assert validation["rows"] == len(y)
    names = load_schema().names
    assert validation["macro_f1"] > compute_metrics(y, np.ones_like(y), names)["macro_f1"]
    coin = np.random.default_rng(0).integers(0, 2, y.shape)
    assert validation["macro_f1"] > compute_metrics(y, coin, names)["macro_f1"]
    # scored on its own training data, the baseline must be far better than chance
    assert metrics["evaluations"]["small.jsonl"]["macro_f1"] > 0.6
    assert (run / "README.md").is_file() and (run / "eval" / "small" / "pr_curve.png").is_file()


def _validation_labels(data: Path) -> np.ndarray:
    """The label matrix of the validation split the baseline command makes of ``data`` (default settings)."""
    posts = load_posts([data], load_schema())
    _, val_idx = stratified_split(posts, DataConfig().validation_fraction, TrainConfig().seed)
    return posts.y[val_idx]
