"""The ``givetake`` command line: one typer app, a module per command group.

- :mod:`givetake.cli.train`: ``train``, ``evaluate``, ``baseline``, ``teach``, ``models``, ``export``;
- :mod:`givetake.cli.serve`: ``serve``, ``score``;
- :mod:`givetake.cli.labels`: ``import``, ``compare``, ``promote``, ``label-issues``, ``suggest``;
- :mod:`givetake.cli.audit`: ``audit`` (is a feed giving or taking? an HTML report).
- :mod:`givetake.cli.bento`: ``bento``.

Errors a user can act on are :class:`~givetake.errors.GivetakeError`: printed as one line, exit 2.
The library never imports this package.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from givetake.cli import audit, bento, labels, serve, train
from givetake.errors import GivetakeError

app = typer.Typer(
    name="givetake",
    help="Tell what a social-media post does: pitch, ask, helpful_share, conversation_starter, customer_service_reply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command()(train.train)
app.command()(train.evaluate)
app.command()(train.baseline)
app.command()(train.teach)
app.command()(train.models)
app.command()(serve.serve)
app.command()(serve.score)
app.command(name="export")(train.export)
app.command(name="import")(labels.import_labels)
app.command()(labels.compare)
app.command()(labels.promote)
app.command(name="label-issues")(labels.label_issues)
app.command()(labels.suggest)
app.command()(audit.audit)
app.command()(bento.bento)


def main() -> None:
    """Console entry point: user errors become one clear line and exit status 2."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except (GivetakeError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
