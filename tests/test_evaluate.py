"""Evaluation numbers on a hand-made example with known answers, and the written report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from givetake.training.evaluate import compute_metrics, write_report

NAMES = ["a", "b"]
Y_TRUE = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [0, 0]])
Y_PRED = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 0]])


def test_known_answers() -> None:
    m = compute_metrics(Y_TRUE, Y_PRED, NAMES)
    # label a: TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 0.8; label b: TP 1, FP 0, FN 1 -> P 1, R 0.5, F1 2/3
    # Each label also records its confusion counts (the feed audit's error rates come from them).
    assert m["per_label"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2, "tp": 2, "fp": 1, "fn": 0, "tn": 2}
    )
    assert m["per_label"]["b"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "tp": 1, "fp": 0, "fn": 1, "tn": 3}
    )
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # TP 3, FP 1, FN 1
    assert m["exact_match"] == pytest.approx(3 / 5)
    assert m["accuracy_on_none"] == pytest.approx(1 / 2)  # rows 2 and 4 have no label; row 2 gets one
    assert m["rows_with_no_label"] == 2


def test_report_files(tmp_path: Path) -> None:
    probs = np.where(Y_PRED == 1, 0.8, 0.2)
    m = write_report(tmp_path, Y_TRUE, probs, {"a": 0.5, "b": 0.5}, NAMES, title="t")
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved["macro_f1"] == pytest.approx(m["macro_f1"])
    assert saved["per_label"]["a"]["threshold"] == 0.5
    assert "macro-F1 0.733" in (tmp_path / "report.txt").read_text()
    for png in ("confusion_matrix.png", "pr_curve.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
