"""`givetake compare`: per-label F1 of two models and a paired bootstrap CI for the macro-F1 difference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.training.compare import bootstrap_difference, compare_predictions, macro_f1_difference
from givetake.training.evaluate import compute_metrics

Y = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0]])
A = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 0], [0, 1], [0, 0], [0, 0], [0, 0]])
B = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [1, 1], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0]])


def test_known_f1_and_interval_on_hand_made_predictions() -> None:
    cmp = compare_predictions(Y, A, B, ["x", "y"], resamples=2000, seed=1)
    # x: A perfect; B 2 TP, 1 FP, 2 FN -> 4/7.  y: A 1 TP, 1 FP, 1 FN -> 1/2; B perfect
    assert cmp.f1_a == {"x": 1.0, "y": 0.5}
    assert cmp.f1_b == pytest.approx({"x": 4 / 7, "y": 1.0})
    assert cmp.macro_a == pytest.approx(0.75) and cmp.macro_b == pytest.approx((4 / 7 + 1) / 2)
    assert cmp.difference == pytest.approx((4 / 7 + 1) / 2 - 0.75)
    assert cmp.low < cmp.difference < cmp.high and cmp.low < 0 < cmp.high  # 10 rows: no clear winner
    assert cmp.support == {"x": 4, "y": 2} and cmp.rows == 10 and cmp.resamples == 2000
    again = compare_predictions(Y, A, B, ["x", "y"], resamples=2000, seed=1)
    assert (again.low, again.high) == (cmp.low, cmp.high)  # seeded
    text = cmp.format()
    assert "macro-F1 over the 2 shared labels: A 0.750, B 0.786, B - A +0.036, 95% CI [" in text


def test_bootstrap_statistic_scores_each_resample_like_compute_metrics() -> None:
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(Y), (3, len(Y)))  # 3 resamples, label-major as scipy passes them
    diffs = macro_f1_difference(Y.T[:, idx], A.T[:, idx], B.T[:, idx], np.ones_like(Y).T[:, idx])
    assert diffs.shape == (3,)
    for r in range(3):  # the same draws, scored row by row
        a = compute_metrics(Y[idx[r]], A[idx[r]], ["x", "y"])["macro_f1"]
        b = compute_metrics(Y[idx[r]], B[idx[r]], ["x", "y"])["macro_f1"]
        assert diffs[r] == pytest.approx(b - a)


def test_bootstrap_is_paired_and_seeded() -> None:
    boot = bootstrap_difference(Y, A, B, resamples=500, seed=3)
    assert boot.bootstrap_distribution.shape == (500,)
    # Paired: B == A on every resample gives exactly 0, which unpaired resampling would not.
    same = bootstrap_difference(Y, A, A, resamples=500, seed=3)
    assert not same.bootstrap_distribution.any()
    again = bootstrap_difference(Y, A, B, resamples=500, seed=3)
    assert (again.bootstrap_distribution == boot.bootstrap_distribution).all()
    low, high = boot.confidence_interval
    assert (low, high) == tuple(np.percentile(boot.bootstrap_distribution, [2.5, 97.5]))


def test_identical_models_differ_by_exactly_zero_and_unknown_cells_are_ignored() -> None:
    cmp = compare_predictions(Y, A, A, ["x", "y"], resamples=200)
    assert cmp.difference == 0 and cmp.low == 0 and cmp.high == 0 and cmp.b_better == 0
    known = np.ones_like(Y)
    known[6, 1] = 0  # A's false positive on y sits on a cell nobody judged
    masked = compare_predictions(Y, A, B, ["x", "y"], known=known, resamples=200)
    assert masked.f1_a["y"] == pytest.approx(2 / 3)  # 1 TP, 1 FN, no FP


def test_compare_command_on_two_store_models(trained_run: Path, small_data: Path) -> None:
    result = CliRunner().invoke(
        app, ["compare", "givetake:tiny", str(trained_run), "--data", str(small_data), "--resamples", "200", "--json"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.output)
    assert out["difference"] == 0 and out["model_a"] == "givetake:tiny" and len(out["shared"]) == 5
    table = CliRunner().invoke(app, ["compare", "givetake:tiny", "givetake:tiny", "--data", str(small_data)])
    assert table.exit_code == 0 and "(paired bootstrap: 1000 resamples of the " in table.output
