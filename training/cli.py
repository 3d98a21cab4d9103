"""The ``givetake`` command line: train, evaluate, baseline, models, serve, score."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from serving.commands import EngineOption, score, serve
from training import workflow
from training.config import (
    CONFIG_CLASSES,
    ConfigError,
    DataConfig,
    TrainConfig,
    build_configs,
    read_config_file,
    typer_options,
)
from training.export import export as export_command

app = typer.Typer(
    name="givetake",
    help="Tell what a social-media post does: pitch, ask, helpful_share, conversation_starter, customer_service_reply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can act on: printed as one line with exit status 2, no traceback."""
    from labels.schema import SchemaError
    from serving.predictor import ModelLoadError
    from training.data import DataError
    from training.export import ExportError
    from training.importers import ImportFailed
    from training.promote import PromotionRefused
    from training.store import ModelNotFound

    return (
        ConfigError,
        DataError,
        SchemaError,
        ModelNotFound,
        ModelLoadError,
        FileExistsError,
        ExportError,
        ImportFailed,
        PromotionRefused,
    )


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


@app.command()
@typer_options(*CONFIG_CLASSES)
def train(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, help="YAML/JSON file of options (flags override it)."),
    **values: Any,
) -> None:
    """Fine-tune a model on labelled posts and save it to models/<run-id>/ (and the BentoML store)."""
    from training.train import train as run_training

    model_cfg, data_cfg, train_cfg = build_configs(_resolve_values(ctx, config, values))
    run_dir = run_training(model_cfg, data_cfg, train_cfg)
    from training.store import read_metrics

    metrics = read_metrics(run_dir)
    typer.echo((run_dir / "eval" / "validation" / "report.txt").read_text(encoding="utf-8"))
    for line in metrics.get("warnings") or []:  # repeated here: the log lines scroll away under progress bars
        typer.echo(f"WARNING: {line}", err=True)
    typer.echo(
        f"saved {run_dir}"
        + (f" and {metrics['bentoml_tag']}" if metrics.get("bentoml_tag") else "")
        + f" in {metrics['training']['seconds'] / 60:.1f} min"
    )


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="A models/<run> directory or a BentoML tag (givetake:latest).")],
    data: Annotated[list[Path], typer.Option(help="Labelled JSONL/CSV/Parquet file(s) to score.")],
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "labels",
    out: Annotated[Path | None, typer.Option(help="Report directory; default <model>/eval/<data-name>/.")] = None,
    engine: EngineOption = None,
) -> None:
    """Score a labelled file with a saved model: metrics, text report and plots."""
    from serving.predictor import ENGINE_ENV
    from training.evaluate import evaluate_model

    if engine:  # the predictor reads its engine from the environment
        os.environ[ENGINE_ENV] = engine

    out_dir, _ = evaluate_model(model, data, text_column, labels_column, out=out)
    typer.echo((out_dir / "report.txt").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out_dir}/eval_results.json, report.txt, confusion_matrix.png, pr_curve.png")


@app.command()
@typer_options(DataConfig)
def baseline(
    ctx: typer.Context,
    eval_data: list[Path] | None = typer.Option(None, "--eval", help="Labelled file(s) to evaluate on too."),
    output_dir: str = typer.Option("models", help="Where the run is saved."),
    seed: int = typer.Option(42, help="Seed of the train/validation split."),
    **values: Any,
) -> None:
    """Train the TF-IDF + logistic-regression yardstick and evaluate it like a model."""
    from training.baseline import run_baseline

    _, data_cfg, _ = build_configs({k: v for k, v in values.items() if v is not None and v != []})
    run_dir, metrics = run_baseline(
        data_cfg, TrainConfig(seed=seed, output_dir=output_dir), [str(p) for p in eval_data or []]
    )
    typer.echo((run_dir / "eval" / "validation" / "report.txt").read_text(encoding="utf-8"))
    for name in metrics["evaluations"]:
        typer.echo((run_dir / "eval" / Path(name).stem / "report.txt").read_text(encoding="utf-8"))
    typer.echo(f"saved {run_dir}")


@app.command()
def models(
    models_dir: Annotated[Path, typer.Option(help="Directory of training runs.")] = Path("models"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List training runs with their validation (and dev) metrics, newest first."""
    from training.store import list_runs

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


app.command()(serve)
app.command()(score)
app.command(name="export")(export_command)
app.command(name="import")(workflow.import_labels)
app.command()(workflow.compare)
app.command()(workflow.promote)
app.command(name="label-issues")(workflow.label_issues)
app.command()(workflow.suggest)


def main() -> None:
    """Console entry point: user errors become one clear line and exit status 2."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except _user_errors() as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
