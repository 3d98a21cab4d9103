"""Model cards: the ``README.md`` of a run, generated from its saved metrics and config.

The card is a Hugging Face model card (:class:`huggingface_hub.ModelCard`): YAML metadata
(``ModelCardData``, with a ``model-index`` holding the validation and evaluation metrics) above a
Markdown body, so ``ModelCard.load(run_dir / "README.md").data.eval_results`` reads the figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from givetake.core.registry import read_metrics
from givetake.labels.schema import load_schema
from givetake.training.quality_claim import quality_lead

TASK = "text-classification"


def metrics_table(per_label: dict[str, dict[str, Any]], macro_f1: float, micro_f1: float) -> str:
    """A Markdown table of per-label precision/recall/F1/support/threshold."""
    rows = ["| label | precision | recall | F1 | support | threshold |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in per_label.items():
        th = m.get("threshold")
        rows.append(
            f"| `{name}` | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} | "
            + (f"{th:.2f} |" if th is not None else "– |")
        )
    rows.append(f"| **macro** | | | **{macro_f1:.3f}** | | |")
    rows.append(f"| micro | | | {micro_f1:.3f} | | |")
    return "\n".join(rows)


def _section(title: str, m: dict[str, Any]) -> list[str]:
    out = [f"## {title}", "", metrics_table(m["per_label"], m["macro_f1"], m["micro_f1"]), ""]
    out.append(
        f"Exact-match ratio {m['exact_match']:.3f}."
        + (
            f" Accuracy on posts with no label {m['accuracy_on_none']:.3f} "
            f"({m['rows_with_no_label']} of {m['rows']} rows)."
            if m.get("accuracy_on_none") is not None
            else ""
        )
    )
    out.append("")
    return out


def _eval_results(dataset_type: str, dataset_name: str, split: str | None, m: dict[str, Any]) -> list[EvalResult]:
    """The ``model-index`` entries of one metrics record: macro/micro F1, exact match, F1 per label."""
    where: dict[str, Any] = {
        "task_type": TASK,
        "dataset_type": dataset_type,
        "dataset_name": dataset_name,
        "dataset_split": split,
    }
    out = [
        EvalResult(
            **where,
            metric_type="f1",
            metric_name="macro-F1",
            metric_config="macro",
            metric_value=round(m["macro_f1"], 4),
        ),
        EvalResult(
            **where,
            metric_type="f1",
            metric_name="micro-F1",
            metric_config="micro",
            metric_value=round(m["micro_f1"], 4),
        ),
    ]
    if m.get("exact_match") is not None:
        out.append(
            EvalResult(
                **where, metric_type="exact_match", metric_name="exact match", metric_value=round(m["exact_match"], 4)
            )
        )
    for name, per in (m.get("per_label") or {}).items():
        if per.get("f1") is not None:
            out.append(
                EvalResult(
                    **where,
                    metric_type="f1",
                    metric_name=f"F1 {name}",
                    metric_config=name,
                    metric_value=round(per["f1"], 4),
                )
            )
    return out


def card_data(run_dir: str | Path) -> ModelCardData:
    """The card's YAML metadata: licence, task, tags, base model and the metrics as ``model-index``."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    results: list[EvalResult] = []
    if metrics.get("validation"):
        results += _eval_results(
            "givetake-validation", "validation split of the training corpus", "validation", metrics["validation"]
        )
    for name, m in (metrics.get("evaluations") or {}).items():
        results += _eval_results(name, name, None, m)
    base = metrics.get("base_model")
    return ModelCardData(
        model_name=f"givetake-{metrics.get('run_id', run_dir.name)}",
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=TASK,
        tags=["givetake", "multi-label-classification", "onnx"],
        # A local directory is not a Hub id: it stays in the body only.
        base_model=base if base and not Path(base).is_absolute() else None,
        metrics=["f1", "exact_match"],
        eval_results=results or None,
    )


def render_card(run_dir: str | Path) -> str:
    """The model card text of a run directory: YAML metadata (:func:`card_data`) and the Markdown body."""
    body = render_body(run_dir)
    return str(ModelCard(f"---\n{card_data(run_dir).to_yaml()}\n---\n\n{body}"))


def render_body(run_dir: str | Path) -> str:
    """The Markdown body of the model card (what a reader sees under the metadata)."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    schema = load_schema(run_dir / "schema.yaml")
    config = (
        json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
        if (run_dir / "run_config.json").is_file()
        else {}
    )
    kind = metrics.get("kind", "transformer")
    lines = [
        f"# givetake model `{metrics.get('run_id', run_dir.name)}`",
        "",
        f"Multi-label classifier of what a social-media post does ({kind}; base model "
        f"`{metrics.get('base_model', '–')}`). Labels (schema version {schema.version}):",
        "",
        "| label | side | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{s.name}` | {s.side} | {s.summary} |" for s in schema.labels]
    lines.append("")
    lines += quality_lead(metrics, config)  # real-post quality first (training/quality_claim.py)
    if metrics.get("warnings"):
        lines += ["## Warnings", "", *[f"- **{w}**" for w in metrics["warnings"]], ""]
    if metrics.get("lexical_weight"):
        w = metrics["lexical_weight"]
        lines += [
            f"Each label's probability is {1 - w:.2f} × the transformer's sigmoid + {w:.2f} × a TF-IDF "
            "word/char n-gram logistic regression trained on the same rows (`lexical.json`, "
            "`lexical.safetensors`).",
            "",
        ]
    data = metrics.get("data", {})
    if data:
        lines += [
            "## Training data",
            "",
            f"Sources: {', '.join(data.get('sources', [])) or '–'}.",
            "",
            "| split | rows | no label | " + " | ".join(f"`{n}`" for n in schema.names) + " |",
            "|---|---:|---:|" + "---:|" * len(schema.names),
        ]
        for split in ("train", "validation"):
            c = data.get(split)
            if c:
                lines.append(
                    f"| {split} | {c['rows']} | {c['none']} | "
                    + " | ".join(str(c.get(n, 0)) for n in schema.names)
                    + " |"
                )
        lines.append("")
    if metrics.get("validation"):
        lines += _section("Validation metrics (held-out split of the training corpus)", metrics["validation"])
        lines += [
            "![confusion matrices](eval/validation/confusion_matrix.png)",
            "![precision-recall](eval/validation/pr_curve.png)",
            "",
        ]
    for name, m in (metrics.get("evaluations") or {}).items():
        lines += _section(f"Evaluation on `{name}`", m)
    training = metrics.get("training", {})
    if training:
        lines += [
            "## Training",
            "",
            f"{training.get('epochs_run', 0):.0f} epochs, {training.get('steps', 0)} steps, "
            f"{training.get('seconds', 0) / 60:.1f} minutes on {training.get('threads', '?')} CPU threads.",
            "",
        ]
    if config:
        lines += ["Resolved configuration (`run_config.json`):", "", "```json", json.dumps(config, indent=2), "```", ""]
    lines += [
        "## Thresholds",
        "",
        "A label is predicted when its sigmoid probability is at or above its threshold "
        "(`thresholds.json`), tuned per label on the validation split to maximise F1 within [0.05, 0.95].",
        "",
        "## Intended use",
        "",
        "Scoring public social-media posts (X/Twitter, LinkedIn, Facebook, Instagram) in English for "
        "what they do: pitch, ask, share, converse, answer customers. Aggregate analysis of feeds and "
        "accounts, triage of brand mentions, and coaching on posting habits.",
        "",
        "## Limits",
        "",
        "- Trained on a hand-written corpus; real feeds differ, so check the evaluation on real posts above.",
        "- Judges the text alone: no thread, author or image. Replies out of context are hard.",
        "- English only; sarcasm, non-standard spelling and code-mixed text lower accuracy.",
        "- Not for decisions about individual people (moderation, hiring, credit).",
        "",
    ]
    return "\n".join(lines)


def write_card(run_dir: str | Path) -> Path:
    """Write the run's model card ``README.md`` and return its path."""
    path = Path(run_dir) / "README.md"
    path.write_text(render_card(run_dir), encoding="utf-8")
    return path
