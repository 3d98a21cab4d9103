"""The ``givetake audit`` command: is this account giving or taking? One HTML report with charts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from givetake.core.bundle import SCHEMA_ENV, open_model
from givetake.core.error_rates import AUTO
from givetake.core.predictor import Predictor
from givetake.core.registry import default_model
from givetake.core.resources import available_cores
from givetake.errors import DataError
from givetake.serving.audit import DEFAULT_RULE, RULES
from givetake.serving.batching import EngineThreads
from givetake.serving.feed import audit_files, model_context, write_report


def audit(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...",
            show_default=False,
            help="Posts: an X archive's tweets.js, a LinkedIn Shares.csv, or .csv/.jsonl/.parquet with one or many "
            "accounts (already scored files keep their scores).",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML report; report.json with every figure goes beside it.")
    ] = Path("report.html"),
    rule: Annotated[str, typer.Option(help=f"Content-mix rule to judge against: {', '.join(RULES)}.")] = DEFAULT_RULE,
    author_column: Annotated[
        str | None,
        typer.Option(
            help="Column naming each post's account (default: author, username, ...; none: one account).",
            show_default=False,
        ),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(help="Column with each post's time (default: created_at, date, ...).", show_default=False),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            help="Column with the post text (default: text, full_text, ShareCommentary, content, ...).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A models/<run> directory or a BentoML tag. Default: the promoted model, else givetake:latest.",
            show_default=False,
        ),
    ] = None,
    error_rates: Annotated[
        str,
        typer.Option(
            help="Where the model's error rates come from: auto (the latest `givetake evaluate` record, "
            "else the validation split), validation, or an evaluation's name."
        ),
    ] = AUTO,
) -> None:
    """Audit a feed: the share of each label, corrected for the model's errors, against a content-mix rule.

    Writes one self-contained HTML page (charts inline, opens offline) and report.json beside it.
    """
    if rule not in RULES:
        raise DataError(f"--rule {rule!r}: choose one of {', '.join(RULES)}")
    for p in inputs:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    if output.suffix.lower() not in (".html", ".htm"):
        raise DataError(f"--output {output}: name the report .html")
    reference = model or default_model()
    bundle = open_model(reference, _env(SCHEMA_ENV))
    predictor = Predictor(bundle, calls=available_cores())
    sides, errors, thresholds = model_context(predictor, error_rates)
    engines = EngineThreads(predictor, max_posts=256)
    try:
        report = audit_files(
            inputs,
            engines,
            sides,
            errors,
            model_name=reference,
            rule=rule,
            thresholds=thresholds,
            text_column=text_column,
            author_column=author_column,
            time_column=time_column,
        )
    finally:
        engines.close()
    html_path, json_path = write_report(report, output)
    for acc in report["accounts"][:10]:
        typer.echo(f"{acc['account']}: {acc['verdict']['sentence']}")
    if len(report["accounts"]) > 10:
        typer.echo(f"... and {len(report['accounts']) - 10} more accounts")
    typer.echo(f"correction: {report['correction']}")
    typer.echo(f"wrote {html_path} and {json_path}")


def _env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None
