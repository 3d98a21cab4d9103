"""The model commands: ``givetake train``, ``evaluate``, ``baseline``, ``models`` and ``export``.

The training modules import torch, transformers and datasets (seconds) inside the functions that
use them, so importing the modules here is cheap: ``givetake --help`` and the serving commands
start without those libraries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from givetake.cli.serve import EngineOption
from givetake.core.bundle import ENGINE_FILES
from givetake.core.predictor import ENGINE_ENV
from givetake.core.registry import list_runs, read_metrics, resolve_model
from givetake.labels.schema import load_schema
from givetake.training.augment import variant
from givetake.training.baseline import run_baseline
from givetake.training.config import (
    CONFIG_CLASSES,
    DataConfig,
    TrainConfig,
    build_configs,
    read_config_file,
    typer_options,
)
from givetake.training.data import load_posts
from givetake.training.distill import SHIPPED, read_texts, teacher_targets, write_scores
from givetake.training.evaluate import evaluate_model
from givetake.training.export import export_model, sync_store_copy
from givetake.training.parity import parity_table
from givetake.training.train import train as run_training


def _resolve_values(ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> dict[str, Any]:
    """Merge a config file with command-line flags; flags given explicitly win."""
    merged = read_config_file(config) if config else {}
    for name, value in values.items():
        # typer vendors its own click, so compare the source by name, not by enum identity.
        source = ctx.get_parameter_source(name)
        explicit = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
        if explicit or name not in merged:
            merged[name] = value
    merged = {k: v for k, v in merged.items() if v is not None}
    if "data" in merged and not merged["data"]:
        del merged["data"]
    return merged


@typer_options(*CONFIG_CLASSES)
def train(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, help="YAML/JSON file of options (flags override it)."),
    **values: Any,
) -> None:
    """Fine-tune a model on labelled posts and save it to models/<run-id>/ (and the BentoML store)."""

    model_cfg, data_cfg, train_cfg = build_configs(_resolve_values(ctx, config, values))
    run_dir = run_training(model_cfg, data_cfg, train_cfg)

    metrics = read_metrics(run_dir)
    typer.echo((run_dir / "eval" / "validation" / "report.txt").read_text(encoding="utf-8"))
    for line in metrics.get("warnings") or []:  # repeated here: the log lines scroll away under progress bars
        typer.echo(f"WARNING: {line}", err=True)
    typer.echo(
        f"saved {run_dir}"
        + (f" and {metrics['bentoml_tag']}" if metrics.get("bentoml_tag") else "")
        + f" in {metrics['training']['seconds'] / 60:.1f} min"
    )


def evaluate(
    model: Annotated[str, typer.Option(help="A models/<run> directory or a BentoML tag (givetake:latest).")],
    data: Annotated[list[Path], typer.Option(help="Labelled JSONL/CSV/Parquet file(s) to score.")],
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "labels",
    out: Annotated[Path | None, typer.Option(help="Report directory; default <model>/eval/<data-name>/.")] = None,
    engine: EngineOption = None,
) -> None:
    """Score a labelled file with a saved model: metrics, text report and plots."""

    if engine:  # the predictor reads its engine from the environment
        os.environ[ENGINE_ENV] = engine

    out_dir, _ = evaluate_model(model, data, text_column, labels_column, out=out)
    typer.echo((out_dir / "report.txt").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out_dir}/eval_results.json, report.txt, confusion_matrix.png, pr_curve.png")


@typer_options(DataConfig)
def baseline(
    ctx: typer.Context,
    eval_data: list[Path] | None = typer.Option(None, "--eval", help="Labelled file(s) to evaluate on too."),
    output_dir: str = typer.Option("models", help="Where the run is saved."),
    seed: int = typer.Option(42, help="Seed of the train/validation split."),
    **values: Any,
) -> None:
    """Train the TF-IDF + logistic-regression yardstick and evaluate it like a model."""

    _, data_cfg, _ = build_configs({k: v for k, v in values.items() if v is not None and v != []})
    run_dir, metrics = run_baseline(
        data_cfg, TrainConfig(seed=seed, output_dir=output_dir), [str(p) for p in eval_data or []]
    )
    typer.echo((run_dir / "eval" / "validation" / "report.txt").read_text(encoding="utf-8"))
    for name in metrics["evaluations"]:
        typer.echo((run_dir / "eval" / Path(name).stem / "report.txt").read_text(encoding="utf-8"))
    typer.echo(f"saved {run_dir}")


def teach(
    teacher: Annotated[str, typer.Option(help="The teacher: a models/<run> directory or a BentoML tag.")],
    data: Annotated[
        list[Path] | None, typer.Option(help="Labelled file(s) whose texts it scores; default: the shipped corpus.")
    ] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="The scores file to write.")] = SHIPPED,
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "labels",
    variants_seed: Annotated[
        int | None,
        typer.Option(help="Also score each text's noisy variant for `givetake train --augment` with this --seed."),
    ] = None,
    unlabelled: Annotated[
        list[Path] | None,
        typer.Option(help="Score these unlabelled posts instead (for `givetake train --unlabelled`)."),
    ] = None,
    unlabelled_limit: Annotated[
        int, typer.Option(help="At most this many unlabelled posts (as train samples).")
    ] = 5000,
    seed: Annotated[int, typer.Option(help="The --seed `givetake train` will use (it samples the same posts).")] = 42,
) -> None:
    """Write a teacher's scores for the training texts, for `givetake train --teacher FILE` (distillation)."""

    schema = load_schema(None)
    if unlabelled:
        texts = read_texts(unlabelled, text_column, unlabelled_limit, seed)
        soft, name = teacher_targets(teacher, texts, schema.names)
        rows = write_scores(out, texts, np.nan_to_num(soft, nan=0.0), schema.names, name)
        typer.echo(f"wrote {rows} unlabelled posts' scores from {name} to {out}")
        return
    posts = load_posts([str(p) for p in data] if data else None, schema, text_column, labels_column)
    texts = list(posts.texts)
    if variants_seed is not None:
        texts += [variant(t, variants_seed) for t in posts.texts]
    soft, name = teacher_targets(teacher, texts, schema.names)
    rows = write_scores(out, texts, np.nan_to_num(soft, nan=0.0), schema.names, name)
    typer.echo(f"wrote {rows} texts' scores from {name} to {out}")


def models(
    models_dir: Annotated[Path, typer.Option(help="Directory of training runs.")] = Path("models"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List training runs with their validation (and dev) metrics, newest first."""

    rows = list_runs(models_dir)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no runs in {models_dir}/ yet: run `givetake train`")
        return
    typer.echo(f"{'run':<34}{'kind':<13}{'val macro-F1':>13}{'val micro-F1':>13}")
    for r in rows:
        typer.echo(
            f"{r['run']:<34}{r['kind']:<13}{r.get('validation_macro_f1', float('nan')):>13.3f}"
            f"{r.get('validation_micro_f1', float('nan')):>13.3f}"
        )


def export(
    model: Annotated[
        str, typer.Argument(help="A models/<run> directory or a BentoML store tag such as givetake:latest.")
    ] = "givetake:latest",
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Labelled file(s) for the parity check; default: the run's validation split, recomputed."),
    ] = None,
) -> None:
    """Export a model to ONNX (model.onnx) and int8 ONNX (model.int8.onnx); check both against torch.

    Exits with status 1 when an engine fails the parity check (it is then marked unusable).
    """
    model_dir = resolve_model(model)
    records = export_model(model, data=data)
    size = {e: records[e]["size_mb"] for e in ENGINE_FILES}
    typer.echo(
        f"exported {model_dir / ENGINE_FILES['onnx']} ({size['onnx']:.0f} MB) and {ENGINE_FILES['onnx-int8']} "
        f"({size['onnx-int8']:.0f} MB) in {records['export_seconds']:.1f} s"
    )
    typer.echo(f"parity against torch on the {records['onnx']['data']}, in {records['check_seconds']:.1f} s:")
    typer.echo(parity_table(records))
    if Path(model).is_dir():
        tag = sync_store_copy(model_dir)
        if tag:
            typer.echo(f"copied the ONNX files and parity record to {tag} in the BentoML store")
    if not all(records[e]["usable"] for e in ENGINE_FILES):
        typer.echo("an engine failed the parity check and is marked unusable; `auto` will not pick it", err=True)
        raise typer.Exit(1)
