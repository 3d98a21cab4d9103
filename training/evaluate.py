"""Evaluation: metrics for multi-label predictions, written as JSON, text and plots.

One code path scores every model (fine-tuned, baseline, exported): ``evaluate_scores`` takes
the true labels, the probabilities and the thresholds, and ``write_report`` writes
``eval_results.json``, ``report.txt``, ``confusion_matrix.png`` and ``pr_curve.png``.

scikit-learn and matplotlib (seconds to import) are imported inside the functions that use them:
the CLI imports this module for every command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from givetake.core.error_rates import confusion_counts
from givetake.core.predictor import Predictor
from givetake.core.registry import read_metrics, write_metrics
from givetake.core.thresholds import apply_thresholds
from givetake.training.card import write_card
from givetake.training.data import load_posts

EVAL_FILE = "eval_results.json"


def compute_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], known: np.ndarray | None = None
) -> dict[str, Any]:
    """Per-label precision/recall/F1/support, micro/macro F1, exact match, none-accuracy.

    ``accuracy_on_none`` is the share of posts with no true label for which the model also
    predicts no label: the classifier must say "none" for most of a real feed.

    ``known`` (0/1, shape like ``y_true``) leaves out the cells where a label was not judged
    (data labelled before the label existed): each label is scored on its judged rows.

    Each label also gets its confusion counts ``tp``, ``fp``, ``fn``, ``tn``: the feed audit
    corrects its counted shares with the true and false positive rates they give
    (:mod:`givetake.core.error_rates`).
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    metrics = _metrics(y_true, y_pred, label_names, known)
    for name, counts in confusion_counts(y_true, y_pred, label_names, known).items():
        metrics["per_label"][name].update(counts)
    return metrics


def _metrics(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], known: np.ndarray | None = None
) -> dict[str, Any]:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    if known is not None and not np.asarray(known).all():
        return _masked_metrics(y_true, y_pred, label_names, np.asarray(known) > 0)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0, labels=list(range(len(label_names)))
    )
    none_rows = y_true.sum(axis=1) == 0
    return {
        "per_label": {
            name: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j])}
            for j, name in enumerate(label_names)
        },
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "exact_match": float((y_true == y_pred).all(axis=1).mean()) if len(y_true) else 0.0,
        "accuracy_on_none": float((y_pred[none_rows].sum(axis=1) == 0).mean()) if none_rows.any() else None,
        "rows": int(len(y_true)),
        "rows_with_no_label": int(none_rows.sum()),
    }


def _masked_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], known: np.ndarray
) -> dict[str, Any]:
    """:func:`compute_metrics` when some cells are unknown: every figure counts judged cells only."""
    from sklearn.metrics import precision_recall_fscore_support

    per_label = {}
    tp = fp = fn = 0
    for j, name in enumerate(label_names):
        rows = known[:, j]
        t, p = y_true[rows, j], y_pred[rows, j]
        prec, rec, f1 = [0.0], [0.0], [0.0]
        if rows.any():
            prec, rec, f1, _ = precision_recall_fscore_support(t, p, labels=[1], average=None, zero_division=0)
        per_label[name] = {
            "precision": float(prec[0]),
            "recall": float(rec[0]),
            "f1": float(f1[0]),
            "support": int(t.sum()),
            "unknown": int((~rows).sum()),
        }
        tp += int((t & p).sum())
        fp += int((p & (1 - t)).sum())
        fn += int((t & (1 - p)).sum())
    # A label judged on no row at all has no F1 to average (it is not a 0).
    judged_f1 = [per_label[n]["f1"] for j, n in enumerate(label_names) if known[:, j].any()]
    # "No label" among the judged labels: a row counts when none of its judged cells is positive,
    # and the model is right when it predicts none of them either.
    none_rows = (y_true * known).sum(axis=1) == 0
    return {
        "per_label": per_label,
        "micro_f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
        "macro_f1": float(np.mean(judged_f1)) if judged_f1 else 0.0,
        "exact_match": float(((y_true == y_pred) | ~known).all(axis=1).mean()) if len(y_true) else 0.0,
        "accuracy_on_none": float(((y_pred * known)[none_rows].sum(axis=1) == 0).mean()) if none_rows.any() else None,
        "rows": int(len(y_true)),
        "rows_with_no_label": int(none_rows.sum()),
    }


def evaluate_scores(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: dict[str, float],
    label_names: list[str],
    known: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of thresholded probabilities, with the thresholds and macro average precision."""
    from sklearn.metrics import average_precision_score

    metrics = compute_metrics(y_true, apply_thresholds(probs, thresholds, label_names), label_names, known)
    judged = np.ones_like(y_true, dtype=bool) if known is None else np.asarray(known) > 0
    ap = {}
    for j, name in enumerate(label_names):
        t, p = y_true[judged[:, j], j], probs[judged[:, j], j]
        ap[name] = float(average_precision_score(t, p)) if t.any() else None
        metrics["per_label"][name]["average_precision"] = ap[name]
        metrics["per_label"][name]["threshold"] = thresholds[name]
    scored = [v for v in ap.values() if v is not None]
    metrics["macro_average_precision"] = float(np.mean(scored)) if scored else None
    return metrics


def format_report(metrics: dict[str, Any], title: str = "") -> str:
    """A fixed-width text table of the metrics."""
    lines = [title] if title else []
    lines.append(f"{'label':<24}{'prec':>7}{'recall':>8}{'f1':>7}{'support':>9}{'thresh':>8}")
    for name, m in metrics["per_label"].items():
        th = m.get("threshold")
        lines.append(
            f"{name:<24}{m['precision']:>7.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9d}"
            + (f"{th:>8.2f}" if th is not None else "")
        )
    unknown = {n: m["unknown"] for n, m in metrics["per_label"].items() if m.get("unknown")}
    if unknown:
        lines.append(
            "not judged, left out: "
            + ", ".join(f"{n} on {k} of {metrics['rows']} rows" for n, k in unknown.items())
            + " (labelled with a schema version before the label)"
        )
    lines.append("")
    lines.append(
        f"macro-F1 {metrics['macro_f1']:.3f}   micro-F1 {metrics['micro_f1']:.3f}   "
        f"exact match {metrics['exact_match']:.3f}"
    )
    if metrics.get("accuracy_on_none") is not None:
        lines.append(
            f"accuracy on posts with no label {metrics['accuracy_on_none']:.3f} "
            f"({metrics['rows_with_no_label']} of {metrics['rows']} rows)"
        )
    return "\n".join(lines)


def _plot_confusion(
    path: Path, y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], known: np.ndarray | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

    if known is None:
        cms = multilabel_confusion_matrix(y_true, y_pred, labels=list(range(len(label_names))))
    else:
        rows = np.asarray(known) > 0
        cms = np.stack(
            [
                confusion_matrix(y_true[rows[:, j], j], y_pred[rows[:, j], j], labels=[0, 1])
                for j in range(len(label_names))
            ]
        )
    fig, axes = plt.subplots(1, len(label_names), figsize=(3.2 * len(label_names), 3.4))
    for ax, cm, name in zip(np.atleast_1d(axes), cms, label_names):
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks([0, 1], ["pred no", "pred yes"])
        ax.set_yticks([0, 1], ["true no", "true yes"])
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_pr(
    path: Path,
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: dict[str, float],
    label_names: list[str],
    known: np.ndarray | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6.5, 5))
    judged = np.ones_like(y_true, dtype=bool) if known is None else np.asarray(known) > 0
    for j, name in enumerate(label_names):
        t, p = y_true[judged[:, j], j], probs[judged[:, j], j]
        if not t.any():
            continue
        prec, rec, cuts = precision_recall_curve(t, p)
        line = ax.plot(rec, prec, label=name)[0]
        k = int(np.searchsorted(cuts, thresholds[name])) if len(cuts) else 0
        k = min(k, len(cuts) - 1)
        ax.plot(rec[k], prec[k], "o", color=line.get_color())
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall per label (dot: chosen threshold)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out_dir: str | Path,
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: dict[str, float],
    label_names: list[str],
    title: str = "",
    extra: dict[str, Any] | None = None,
    known: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compute metrics and write ``eval_results.json``, ``report.txt`` and the two PNGs.

    ``known`` (0/1, shape like ``y_true``) leaves unjudged cells out of every figure.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true).astype(int)
    if known is not None and np.asarray(known).all():
        known = None
    metrics = evaluate_scores(y_true, probs, thresholds, label_names, known)
    if extra:
        metrics.update(extra)
    (out / EVAL_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (out / "report.txt").write_text(format_report(metrics, title) + "\n", encoding="utf-8")
    _plot_confusion(
        out / "confusion_matrix.png", y_true, apply_thresholds(probs, thresholds, label_names), label_names, known
    )
    _plot_pr(out / "pr_curve.png", y_true, probs, thresholds, label_names, known)
    return metrics


def evaluate_model(
    model: str | Path,
    data: list[Path],
    text_column: str = "text",
    labels_column: str = "labels",
    name: str | None = None,
    out: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Score labelled files with a saved model through the serving predictor and write the report.

    The report goes to ``out`` (default ``<model>/eval/<name>/``). When ``model`` is a run
    directory, the metrics are also recorded under ``evaluations`` in its ``metrics.json`` and
    the model card is regenerated; store models are left untouched.
    """
    predictor = Predictor(model)
    posts = load_posts(data, predictor.schema, text_column, labels_column)
    probs, _ = predictor.predict_proba(posts.texts)
    name = name or "+".join(p.stem for p in data)
    out_dir = out or predictor.model_dir / "eval" / name
    metrics = write_report(
        out_dir,
        posts.y,
        probs,
        predictor.thresholds,
        predictor.labels,
        title=f"{model} on {', '.join(map(str, data))} ({len(posts)} rows)",
        known=posts.known,
    )
    if Path(model).is_dir():
        run_metrics = read_metrics(predictor.model_dir)
        run_metrics.setdefault("evaluations", {})[name] = metrics
        write_metrics(predictor.model_dir, run_metrics)
        write_card(predictor.model_dir)
    return out_dir, metrics
