"""The retraining workflow commands (registered in ``training/cli.py``).

``givetake import`` (labelling-tool exports -> JSONL), ``compare`` (two models, one data
set), ``promote`` (choose the served model), ``label-issues`` (likely mislabelled rows) and
``suggest`` (what to label next).

Imports sit at the top: the training modules keep their heavy libraries (scikit-learn, scipy's
statistics, cleanlab, torch) inside the functions that use them, so importing them is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from givetake.core.predictor import Predictor
from givetake.core.registry import exact_tag
from givetake.labels.schema import load_schema
from givetake.training.compare import compare_models
from givetake.training.data import load_posts
from givetake.training.importers import import_file
from givetake.training.label_issues import cross_val_probs, find_issues, write_issues
from givetake.training.promote import PromotionRefused, live_file, read_live
from givetake.training.promote import promote as run_promote
from givetake.training.suggest import rank_pool, read_pool, write_csv, write_label_studio

SCHEMA_HELP = "Label schema YAML the data was labelled with. Default: labels/schema.yaml."


def import_labels(
    source: Annotated[
        Path, typer.Argument(metavar="EXPORT", show_default=False, help="Label Studio JSON export, or a CSV.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", show_default=False, help="JSONL file to write.")],
    schema: Annotated[Path | None, typer.Option(help=SCHEMA_HELP, show_default=False)] = None,
    format: Annotated[
        str, typer.Option("--format", help="auto (by suffix: .json, .csv), label-studio or csv.")
    ] = "auto",
    text_key: Annotated[
        str, typer.Option(help="Label Studio: the data field with the text; CSV: the text column.")
    ] = "text",
    from_name: Annotated[
        str | None,
        typer.Option(help="Label Studio: only read the choices control with this name.", show_default=False),
    ] = None,
) -> None:
    """Turn a Label Studio export (choices/taxonomy) or a 0/1-column CSV into the project's JSONL.

    Each row records the schema version it was labelled with (schema_version).
    """

    loaded = load_schema(schema)
    summary = import_file(source, output, loaded, format, text_key, from_name)
    for line in summary.skipped:
        typer.echo(f"skipped {line}", err=True)
    counts = {n: sum(n in r["labels"] for r in summary.rows) for n in loaded.names}
    none = sum(not r["labels"] for r in summary.rows)
    typer.echo(
        "labels: " + ", ".join(f"{n} {c}" for n, c in counts.items()) + f", no label {none}"
        f" (schema version {loaded.version})"
    )
    typer.echo(summary.line(output))


def compare(
    model_a: Annotated[str, typer.Argument(metavar="A", help="The current model (a store tag or a run directory).")],
    model_b: Annotated[str, typer.Argument(metavar="B", help="The candidate model.")],
    data: Annotated[list[Path], typer.Option(help="Labelled JSONL/CSV/Parquet file(s); FILE@vN sets the version.")],
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "labels",
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per-label F1 of two models on the same data, and a paired bootstrap CI for the macro-F1 difference."""

    result = compare_models(model_a, model_b, list(data), text_column, labels_column, resamples, seed)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.format())


def promote(
    tag: Annotated[
        str | None,
        typer.Argument(
            help="Store tag to serve (givetake:<run-id>, givetake:latest). Omit it to show the promoted model.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Labelled file(s) to compare the candidate with the current model on.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if macro-F1 is lower (or unchecked).")] = False,
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "labels",
) -> None:
    """Mark a model as the one `givetake serve` serves; refuses one with a lower macro-F1 on --data."""

    if tag is None:
        record = read_live()
        if record is None:
            typer.echo("no model has been promoted; `givetake serve` serves givetake:latest")
        else:
            typer.echo(f"promoted: {record['tag']} (since {record.get('promoted_at')}; record in {live_file()})")
        return
    try:
        _, lines = run_promote(tag, list(data or []), force, text_column, labels_column)
    except PromotionRefused as exc:
        if exc.report:
            typer.echo(exc.report)
        raise
    typer.echo("\n".join(lines))


def label_issues(
    data: Annotated[list[Path], typer.Option(help="Labelled JSONL/CSV/Parquet file(s) or directories to check.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV of the flagged rows, most suspect first.")] = Path(
        "label_issues.csv"
    ),
    schema: Annotated[Path | None, typer.Option(help=SCHEMA_HELP, show_default=False)] = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    labels_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "labels",
    show: Annotated[int, typer.Option(min=0, help="How many of the top rows to print.")] = 10,
) -> None:
    """List the rows most likely mislabelled (cleanlab on cross-validated probabilities), ranked, as CSV."""

    posts = load_posts([str(p) for p in data], load_schema(schema), text_column, labels_column)
    issues = find_issues(posts, cross_val_probs(posts, folds))
    write_issues(issues, output)
    for it in issues[:show]:
        text = it.text if len(it.text) <= 70 else it.text[:67] + "..."
        typer.echo(f"{it.rank:>4}  {it.source}:{it.row:<6} {' '.join(it.changes):<34} {text!r}")
    typer.echo(f"{len(issues)} of {len(posts)} rows flagged ({folds}-fold cross-validation); wrote {output}")


def suggest(
    pool: Annotated[Path, typer.Option(help="Unlabelled posts (CSV/JSONL/Parquet) to choose from.")],
    n: Annotated[int, typer.Option("-n", min=1, help="How many posts to suggest.")] = 200,
    model: Annotated[str, typer.Option(help="Model whose uncertainty ranks the posts.")] = "givetake:latest",
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV of the suggestions.")] = Path("suggestions.csv"),
    label_studio: Annotated[
        Path | None,
        typer.Option(
            help="Label Studio import file; default: the CSV's name with .labelstudio.json.", show_default=False
        ),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Column holding the post text.")] = "text",
    exclude: Annotated[
        list[Path] | None, typer.Option(help="Labelled file(s) whose posts are left out.", show_default=False)
    ] = None,
    max_similarity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Skip posts more similar than this (TF-IDF cosine) to one taken.")
    ] = 0.8,
) -> None:
    """Rank unlabelled posts by the model's uncertainty, with diversity; write CSV and a Label Studio import."""

    texts, ids, skipped = read_pool(pool, text_column, [str(p) for p in exclude or []])
    predictor = Predictor(model)
    probs, _ = predictor.predict_proba(texts)
    picks = rank_pool(texts, probs, predictor.thresholds, predictor.labels, n, max_similarity, ids)
    write_csv(picks, predictor.labels, output)
    ls_path = label_studio or output.with_suffix(".labelstudio.json")
    version = model if Path(model).is_dir() else exact_tag(model)
    config = write_label_studio(picks, predictor.schema, version, ls_path)
    for s in picks[:5]:
        text = s.text if len(s.text) <= 70 else s.text[:67] + "..."
        typer.echo(f"{s.rank:>4}  {s.uncertainty:.3f}  {s.closest_label:<24} {text!r}")
    typer.echo(
        f"ranked {len(texts)} posts ({skipped} skipped: empty, duplicate or already labelled); "
        f"wrote {len(picks)} to {output} and {ls_path} (labelling interface: {config})"
    )
