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
THRESHOLDS_FILE = "thresholds.json"


def best_threshold(y_true: np.ndarray, scores: np.ndarray, low: float = LOW, high: float = HIGH) -> float:
    """The cut in ``[low, high]`` with the highest F1 for one label (ties: the midpoint).

    Candidates are the midpoints between consecutive distinct scores, so the answer does not
    depend on a grid; with no positives the label stays at ``high`` (never fires lightly).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if not y_true.any():
        return high
    order = np.argsort(-scores)
    s, t = scores[order], y_true[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    # Predicting the top k rows positive; only cut where the next score differs.
    distinct = np.r_[s[1:] < s[:-1], True]
    f1 = 2 * tp / (tp + fp + t.sum())
    f1 = np.where(distinct, f1, -1.0)
    nxt = np.r_[s[1:], s[-1] - 1e-6]
    cuts = (s + nxt) / 2
    ok = (cuts >= low) & (cuts <= high)
    if not ok.any():
        return float(np.clip(cuts[int(np.argmax(f1))], low, high))
    f1_ok = np.where(ok, f1, -1.0)
    best = f1_ok.max()
    chosen = np.flatnonzero(f1_ok == best)
    return float(np.round(np.median(cuts[chosen]), 4))


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """One F1-maximising threshold per label, from ``probs`` of shape (n, labels)."""
    return {name: best_threshold(y_true[:, j], probs[:, j]) for j, name in enumerate(label_names)}


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
