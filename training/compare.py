"""Compare two models on the same labelled posts (``givetake compare A B --data FILE``).

Per-label F1 of each model (computed by ``training.evaluate.compute_metrics``, each with its
own thresholds), the macro-F1 of each over the labels both models have, and a paired
bootstrap confidence interval for the difference (:func:`scipy.stats.bootstrap`, percentile
method): rows are resampled with replacement, the same rows for both models, and the macro-F1
difference is recomputed on each resample.

Models with different label sets are compared on the labels they share; the data are read
with the newer of the two schemas, whose ``renamed`` entries map an older model's names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from givetake.core.predictor import Predictor
from givetake.core.registry import exact_tag
from givetake.core.thresholds import apply_thresholds
from givetake.errors import DataError
from givetake.training.data import load_posts
from givetake.training.evaluate import compute_metrics

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass
class Comparison:
    """Per-label F1 of two models on the same rows, and their macro-F1 difference (B - A)."""

    labels: list[str]  # every label either model has, in the data schema's order
    f1_a: dict[str, float | None]  # None: model A has no such label (or it was not judged)
    f1_b: dict[str, float | None]
    support: dict[str, int]  # judged positives per label
    shared: list[str]  # labels behind the macro-F1 figures and the interval
    macro_a: float
    macro_b: float
    low: float  # confidence interval of macro_b - macro_a
    high: float
    b_better: float  # share of resamples in which B's macro-F1 beats A's
    resamples: int
    rows: int
    model_a: str = "A"
    model_b: str = "B"

    @property
    def difference(self) -> float:
        """Macro-F1 of B minus macro-F1 of A over the shared labels."""
        return self.macro_b - self.macro_a

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict, including the difference."""
        return {**asdict(self), "difference": self.difference}

    def format(self) -> str:
        """The comparison as a fixed-width table with a one-paragraph summary."""
        out = [f"A = {self.model_a}", f"B = {self.model_b}", ""]
        out.append(f"{'label':<26}{'A F1':>8}{'B F1':>8}{'B - A':>9}{'support':>9}")

        def cell(v: float | None) -> str:
            return f"{v:>8.3f}" if v is not None else f"{'–':>8}"

        for name in self.labels:
            a, b = self.f1_a[name], self.f1_b[name]
            diff = f"{b - a:>+9.3f}" if a is not None and b is not None else f"{'':>9}"
            note = "" if name in self.shared else "   (not in both models' labels, or not judged: left out of macro)"
            out.append(f"{name:<26}{cell(a)}{cell(b)}{diff}{self.support[name]:>9d}{note}")
        pct = int(CONFIDENCE * 100)
        out += [
            "",
            f"macro-F1 over the {len(self.shared)} shared labels: A {self.macro_a:.3f}, B {self.macro_b:.3f}, "
            f"B - A {self.difference:+.3f}, {pct}% CI [{self.low:+.3f}, {self.high:+.3f}]",
            f"(paired bootstrap: {self.resamples} resamples of the {self.rows} rows; "
            f"B ahead in {self.b_better:.0%} of them)",
        ]
        return "\n".join(out)


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from counts, 0 where undefined (sklearn's ``zero_division=0``, as in compute_metrics)."""
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)


def macro_f1_difference(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, known: np.ndarray, axis: int = -1
) -> np.ndarray:
    """Macro-F1 of B minus macro-F1 of A, the rows along ``axis`` and the labels along axis 0.

    Arrays are label-major (labels x ... x rows), 0/1 or bool; ``known`` marks the judged cells.
    Vectorised over any axes between the two, which is how :func:`scipy.stats.bootstrap` calls it
    (labels x resamples x rows).
    """
    y, k = np.asarray(y_true, dtype=bool), np.asarray(known, dtype=bool)
    macro = []
    for pred in (np.asarray(pred_a, dtype=bool), np.asarray(pred_b, dtype=bool)):
        counts = [(c & k).sum(axis=axis) for c in (y & pred, ~y & pred, y & ~pred)]
        macro.append(_f1_from_counts(*counts).mean(axis=0))
    return np.asarray(macro[1] - macro[0])


def bootstrap_difference(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    known: np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Any:
    """Paired percentile bootstrap of the macro-F1 difference (B - A), by :func:`scipy.stats.bootstrap`.

    Rows are resampled with replacement, the same rows for both models (``paired=True``), and the
    difference is recomputed on each resample. Returns scipy's ``BootstrapResult``: its
    ``confidence_interval`` and ``bootstrap_distribution`` (one difference per resample).
    """
    # Imported here: scipy.stats takes most of a second to import, and the CLI imports this module.
    from scipy import stats

    y = np.asarray(y_true).T  # label-major: scipy resamples the last axis
    k = np.ones_like(y) if known is None else np.asarray(known).T
    return stats.bootstrap(
        (y, np.asarray(pred_a).T, np.asarray(pred_b).T, k),
        macro_f1_difference,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        batch=100,  # label x resample x row cells per batch: bounded memory on large files
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


def compare_predictions(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    label_names: list[str],
    known: np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare two models' 0/1 predictions over the same labels and rows (the testable core)."""
    ma = compute_metrics(y_true, pred_a, label_names, known)
    mb = compute_metrics(y_true, pred_b, label_names, known)
    boot = bootstrap_difference(y_true, pred_a, pred_b, known, resamples, seed)
    diffs = boot.bootstrap_distribution
    low, high = boot.confidence_interval
    return Comparison(
        labels=list(label_names),
        f1_a={n: ma["per_label"][n]["f1"] for n in label_names},
        f1_b={n: mb["per_label"][n]["f1"] for n in label_names},
        support={n: ma["per_label"][n]["support"] for n in label_names},
        shared=list(label_names),
        macro_a=ma["macro_f1"],
        macro_b=mb["macro_f1"],
        low=float(low),
        high=float(high),
        b_better=float((diffs > 0).mean()),
        resamples=resamples,
        rows=len(y_true),
    )


def compare_models(
    model_a: str | Path,
    model_b: str | Path,
    data: list[str | Path],
    text_column: str = "text",
    labels_column: str = "labels",
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Score labelled files with two saved models and compare them (see :func:`compare_predictions`)."""
    predictors = {"a": Predictor(model_a), "b": Predictor(model_b)}
    # The newer schema reads data of either version and maps the older model's renamed labels.
    schema = max((p.schema for p in predictors.values()), key=lambda s: s.version)
    posts = load_posts(data, schema, text_column, labels_column)
    names = schema.names
    preds, has = {}, {}
    for key, predictor in predictors.items():
        probs, _ = predictor.predict_proba(posts.texts)
        own = apply_thresholds(probs, predictor.thresholds, predictor.labels)
        pred = np.zeros((len(posts), len(names)), dtype=np.int8)
        has[key] = np.zeros(len(names), dtype=bool)
        for j, label in enumerate(predictor.labels):
            current = schema.current_name(label)
            if current is not None:
                pred[:, names.index(current)] = own[:, j]
                has[key][names.index(current)] = True
        preds[key] = pred
    judged: np.ndarray = np.asarray(posts.mask.any(axis=0))
    shared = [j for j in range(len(names)) if has["a"][j] and has["b"][j] and judged[j]]
    if not shared:
        raise DataError("the two models share no label that the data judge; nothing to compare")
    core = compare_predictions(
        posts.y[:, shared],
        preds["a"][:, shared],
        preds["b"][:, shared],
        [names[j] for j in shared],
        posts.mask[:, shared],
        resamples,
        seed,
    )
    # Labels only one model has still get that model's F1 in the table.
    full = {key: compute_metrics(posts.y, preds[key], names, posts.mask)["per_label"] for key in preds}
    shown = [j for j in range(len(names)) if has["a"][j] or has["b"][j]]
    core.labels = [names[j] for j in shown]
    core.f1_a = {names[j]: full["a"][names[j]]["f1"] if has["a"][j] and judged[j] else None for j in shown}
    core.f1_b = {names[j]: full["b"][names[j]]["f1"] if has["b"][j] and judged[j] else None for j in shown}
    core.support = {names[j]: full["a"][names[j]]["support"] for j in shown}
    core.model_a, core.model_b = _describe(model_a), _describe(model_b)
    return core


def _describe(model: str | Path) -> str:
    """A model reference with its exact store tag when it is one (``givetake:latest`` -> the version)."""
    if Path(model).is_dir():
        return str(model)
    try:
        tag = exact_tag(str(model))
        return tag if tag == str(model) else f"{tag} ({model})"
    except Exception:  # best effort: the models already loaded, a label is not worth failing for
        return str(model)
