"""The TF-IDF + logistic-regression baseline runs and is scored by the shared evaluation code."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from givetake.cli import app


def test_baseline_command(tmp_path: Path, small_data: Path) -> None:
    result = CliRunner().invoke(
        app, ["baseline", "--data", str(small_data), "--output-dir", str(tmp_path), "--eval", str(small_data)]
    )
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.iterdir()
    assert run.name.endswith("-baseline")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == "baseline"
    assert 0.0 <= metrics["validation"]["macro_f1"] <= 1.0
    # scored on its own training data, the baseline must be far better than chance
    assert metrics["evaluations"]["small.jsonl"]["macro_f1"] > 0.6
    assert (run / "README.md").is_file() and (run / "eval" / "small" / "pr_curve.png").is_file()
