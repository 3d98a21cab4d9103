"""Per-label decision thresholds tuned to maximise each label's F1 on held-out predictions.

A fixed 0.5 cut starves rare labels: a label seen in 10% of posts rarely gets a calibrated
probability above 0.5. Each label gets the cut that maximises its own F1, kept inside
[0.05, 0.95] so a label never fires on noise or becomes unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LOW, HIGH = 0.05, 0.95
TOLERANCE = 0.01
THRESHOLDS_FILE = "thresholds.json"


def best_threshold(
    y_true: np.ndarray, scores: np.ndarray, low: float = LOW, high: float = HIGH, tolerance: float = TOLERANCE
) -> float:
    """The cut in ``[low, high]`` that maximises F1 for one label, taken robustly.

    Candidates are the midpoints between consecutive distinct scores, so the answer does not
    depend on a grid. Every cut whose F1 is within ``tolerance`` of the best counts as
    optimal, and the median of those is returned: on a few hundred validation rows an F1
    difference of 0.01 is noise, and the centre of the plateau transfers better to new posts
    than its edge (measured on the gold dev set, see README). With no positives the label
    stays at ``high``, so it never fires lightly.
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if not y_true.any():
        return high
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y_true[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    # Predicting the top k+1 rows positive; only cut where the next score differs.
    distinct = np.r_[s[1:] < s[:-1], True]
    f1 = 2 * tp / (tp + fp + t.sum())
    cuts = (s + np.r_[s[1:], s[-1] - 1e-6]) / 2
    ok = distinct & (cuts >= low) & (cuts <= high)
    if not ok.any():
        return float(np.clip(cuts[int(np.argmax(np.where(distinct, f1, -1.0)))], low, high))
    best = f1[ok].max()
    chosen = ok & (f1 >= best - tolerance)
    return float(np.round(np.median(cuts[chosen]), 4))


def tune_thresholds(
    y_true: np.ndarray, probs: np.ndarray, label_names: list[str], known: np.ndarray | None = None
) -> dict[str, float]:
    """One F1-maximising threshold per label, from ``probs`` of shape (n, labels).

    ``known`` (0/1, same shape) leaves out the rows where a label was not judged.
    """
    if known is None:
        return {name: best_threshold(y_true[:, j], probs[:, j]) for j, name in enumerate(label_names)}
    rows = np.asarray(known) > 0
    return {name: best_threshold(y_true[rows[:, j], j], probs[rows[:, j], j]) for j, name in enumerate(label_names)}


def apply_thresholds(probs: np.ndarray, thresholds: dict[str, float], label_names: list[str]) -> np.ndarray:
    """0/1 predictions: a label is on when its probability is at or above its threshold."""
    cut = np.array([thresholds[name] for name in label_names], dtype=np.float64)
    return (probs >= cut).astype(np.int8)


def save_thresholds(run_dir: str | Path, thresholds: dict[str, float]) -> None:
    """Write ``thresholds.json`` into a model directory."""
    Path(run_dir, THRESHOLDS_FILE).write_text(json.dumps(thresholds, indent=2), encoding="utf-8")


def load_thresholds(run_dir: str | Path, label_names: list[str]) -> dict[str, float]:
    """Read ``thresholds.json``; every label of the model must have a value in [0, 1]."""
    path = Path(run_dir, THRESHOLDS_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read thresholds ({exc})") from exc
    missing = [n for n in label_names if n not in data]
    if missing:
        raise ValueError(f"{path}: no threshold for label(s) {', '.join(missing)}")
    bad = [n for n in label_names if not isinstance(data[n], (int, float)) or not 0 <= data[n] <= 1]
    if bad:
        raise ValueError(f"{path}: thresholds must be numbers in [0, 1]; bad: {', '.join(bad)}")
    return {n: float(data[n]) for n in label_names}
