"""Per-label threshold tuning and its round trip through the model directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from givetake.core.thresholds import apply_thresholds, best_threshold, load_thresholds, save_thresholds, tune_thresholds


def test_best_threshold_separates_perfectly() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.3, 0.6, 0.8])
    assert best_threshold(y, s, tolerance=0) == pytest.approx(0.45)


def test_best_threshold_maximises_f1_with_overlap() -> None:
    # Cutting at 0.35 gives TP=3, FP=1, FN=0 (F1 6/7); any higher cut loses a positive.
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.2, 0.4, 0.5, 0.7, 0.9])
    assert best_threshold(y, s, tolerance=0) == pytest.approx(0.3)


def test_bounds_and_no_positives() -> None:
    assert best_threshold(np.array([0, 1]), np.array([0.001, 0.002])) == pytest.approx(0.05)
    assert best_threshold(np.array([0, 0]), np.array([0.2, 0.9])) == 0.95


def test_tune_apply_and_round_trip(tmp_path: Path) -> None:
    names = ["a", "b"]
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.6], [0.3, 0.1]])
    th = tune_thresholds(y, p, names)
    assert (apply_thresholds(p, th, names) == y).all()
    save_thresholds(tmp_path, th)
    assert load_thresholds(tmp_path, names) == th
    with pytest.raises(ValueError, match="no threshold for label"):
        load_thresholds(tmp_path, ["a", "b", "c"])


def test_trained_model_uses_saved_thresholds(trained_run: Path) -> None:
    from givetake.core.registry import read_metrics

    saved = load_thresholds(trained_run, list(read_metrics(trained_run)["labels"]))
    assert all(0.05 <= v <= 0.95 for v in saved.values())
    per_label = read_metrics(trained_run)["validation"]["per_label"]
    assert {k: v["threshold"] for k, v in per_label.items()} == saved


def test_plateau_centre_is_preferred_to_its_edge() -> None:
    # Positives score 0.6..0.9, negatives 0.1..0.2: every cut in (0.2, 0.6) is perfect.
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    exact = best_threshold(y, s, tolerance=0)
    assert exact == pytest.approx(0.4)
    # With a tolerance, near-optimal cuts count too and the median of them is taken.
    y2 = np.r_[np.zeros(50), np.ones(50)].astype(int)
    s2 = np.r_[np.linspace(0.0, 0.5, 50), np.linspace(0.3, 1.0, 50)]
    strict, robust = best_threshold(y2, s2, tolerance=0), best_threshold(y2, s2, tolerance=0.02)
    assert 0.3 <= strict <= 0.5 and 0.3 <= robust <= 0.55
