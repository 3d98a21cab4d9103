"""A model's per-label error rates on labelled posts: what an audit needs to correct its counts.

A share counted from a classifier is biased: a label with a false positive rate of 5% "finds" 5%
of posts in a feed that has none. The audit (:mod:`givetake.serving.audit`) corrects each count
with the label's true and false positive rates, so it needs the confusion counts behind them, and
where they came from. Training records them for the validation split (``metrics.json``
``validation.per_label.<label>.tp/fp/fn/tn``); ``givetake evaluate`` records them for a labelled
sample of the user's own posts (``metrics.json`` ``evaluations.<name>``, and
``<model>/eval/<name>/eval_results.json``). Older metrics have only precision, recall, support and
rows: the counts are worked back from those (exact up to rounding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from givetake.errors import DataError

VALIDATION = "validation"
AUTO = "auto"


def confusion_counts(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], known: np.ndarray | None = None
) -> dict[str, dict[str, int]]:
    """``{label: {"tp", "fp", "fn", "tn"}}`` over the judged cells (``known``; all when None)."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    k = np.ones_like(t) if known is None else np.asarray(known).astype(bool)
    out = {}
    for j, name in enumerate(label_names):
        tj, pj, kj = t[:, j], p[:, j], k[:, j]
        out[name] = {
            "tp": int((tj & pj & kj).sum()),
            "fp": int((~tj & pj & kj).sum()),
            "fn": int((tj & ~pj & kj).sum()),
            "tn": int((~tj & ~pj & kj).sum()),
        }
    return out


@dataclass(frozen=True)
class LabelErrors:
    """One label's confusion counts on labelled posts."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.fp + self.tn

    @property
    def tpr(self) -> float:
        """True positive rate (recall): P(predicted | label true)."""
        return self.tp / self.positives if self.positives else float("nan")

    @property
    def fpr(self) -> float:
        """False positive rate: P(predicted | label false)."""
        return self.fp / self.negatives if self.negatives else float("nan")


@dataclass(frozen=True)
class ErrorRates:
    """Per-label error rates and the labelled posts they were measured on."""

    source: str  # "validation" or an evaluation's name
    description: str  # one line for a report: what was measured, on how many posts
    labels: dict[str, LabelErrors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "description": self.description,
            "per_label": {
                n: {"tp": e.tp, "fp": e.fp, "fn": e.fn, "tn": e.tn, "tpr": e.tpr, "fpr": e.fpr}
                for n, e in self.labels.items()
            },
        }


def _label_counts(name: str, m: dict[str, Any], rows: int) -> LabelErrors:
    if all(k in m for k in ("tp", "fp", "fn", "tn")):
        return LabelErrors(int(m["tp"]), int(m["fp"]), int(m["fn"]), int(m["tn"]))
    try:
        support = int(m["support"])
        judged = rows - int(m.get("unknown", 0))
        tp = round(float(m["recall"]) * support)
        precision = float(m["precision"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"the metrics of {name!r} hold neither confusion counts nor precision/recall/support") from None
    predicted = round(tp / precision) if precision > 0 else 0
    fp = max(predicted - tp, 0)
    return LabelErrors(tp=tp, fp=fp, fn=support - tp, tn=max(judged - support - fp, 0))


def rates_from_metrics(metrics: dict[str, Any], labels: list[str], source: str, description: str) -> ErrorRates:
    """:class:`ErrorRates` from one metrics block (``compute_metrics``'s output)."""
    per_label = metrics.get("per_label") or {}
    rows = int(metrics.get("rows") or 0)
    missing = [n for n in labels if n not in per_label]
    if missing:
        raise DataError(f"error rates from {source!r} lack the labels {', '.join(missing)}")
    return ErrorRates(source, description, {n: _label_counts(n, per_label[n], rows) for n in labels})


def load_error_rates(model_dir: Path, labels: list[str], source: str = AUTO) -> ErrorRates:
    """The model's error rates from ``source``: ``validation``, an evaluation's name, or ``auto``.

    ``auto`` takes the latest ``givetake evaluate`` record (a labelled sample of the user's own
    posts measures the model where it is used): from ``metrics.json`` for a run directory, else
    the newest ``<model>/eval/<name>/`` report (store models); failing both, the validation split.
    A name is looked up in ``metrics.json`` ``evaluations``, then in
    ``<model>/eval/<name>/eval_results.json``; a path to an ``eval_results.json`` file also works.
    """
    metrics_path = model_dir / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    evaluations = metrics.get("evaluations") or {}
    if source == AUTO:
        reports = sorted(
            (p for p in (model_dir / "eval").glob("*/eval_results.json") if p.parent.name != VALIDATION),
            key=lambda p: p.stat().st_mtime,
        )
        source = list(evaluations)[-1] if evaluations else reports[-1].parent.name if reports else VALIDATION
    if source == VALIDATION:
        block = metrics.get(VALIDATION)
        if not block:
            raise DataError(f"{metrics_path}: no validation metrics; pass --error-rates with an evaluation's name")
        return rates_from_metrics(
            block, labels, VALIDATION, f"the training run's validation split ({block.get('rows', '?')} labelled posts)"
        )
    if source in evaluations:
        block = evaluations[source]
    else:
        candidates = [Path(source), model_dir / "eval" / source / "eval_results.json"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            known = ", ".join([VALIDATION, *evaluations]) or VALIDATION
            raise DataError(f"no error rates named {source!r} for {model_dir.name}; known: {known}")
        try:
            block = json.loads(found.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{found}: not valid JSON ({exc})") from None
    return rates_from_metrics(
        block, labels, source, f"givetake evaluate on {source!r} ({block.get('rows', '?')} labelled posts)"
    )
