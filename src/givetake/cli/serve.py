"""The ``givetake serve`` and ``givetake score`` commands (registered in ``training/cli.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from givetake.core.bundle import SCHEMA_ENV, open_model
from givetake.core.predictor import Predictor
from givetake.core.registry import default_model
from givetake.core.resources import available_cores
from givetake.serving.batching import EngineThreads
from givetake.serving.limits import check_settings
from givetake.serving.score import check_paths, score_file, side_paths

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "givetake.serving.service:PostClassifier"
MODEL_HELP = "A models/<run> directory or a BentoML store tag such as givetake:latest."
SCHEMA_HELP = (
    "The label schema in use (a schema.yaml); a model trained on other labels is refused. "
    "Default: GIVETAKE_SCHEMA, else no check."
)
# The choices and variable of serving.predictor.ENGINE_CHOICES / ENGINE_ENV (not imported: this module stays light).
EngineOption = Annotated[
    str | None,
    typer.Option(
        envvar="GIVETAKE_ENGINE",
        show_default=False,
        help="Inference engine: auto (onnx-int8 when exported and checked, else onnx, else torch), torch, onnx "
        "or onnx-int8. Default: auto.",
    ),
]


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help=MODEL_HELP + " Default: the promoted model (givetake promote), else givetake:latest; without "
            "--model (or with givetake:live) a model promoted later is swapped in without a restart, while "
            "--model TAG pins TAG.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 to accept other machines.")] = "127.0.0.1",
    schema: Annotated[Path | None, typer.Option(help=SCHEMA_HELP, show_default=False)] = None,
    engine: EngineOption = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="GIVETAKE_WORKERS",
            help="Server processes, each with its own copy of the model (about 330 MB) and a share of the "
            "cores. More than 1 helps with many short-lived connections; a few long-lived ones can all land "
            "on one worker (see serving/service.py).",
        ),
    ] = 1,
    trace: Annotated[
        bool,
        typer.Option(
            envvar="GIVETAKE_TRACE",
            help="Trace POST /classify with OpenTelemetry too, for a tracing exporter set up in BentoML's "
            "configuration. Off by default: building spans took over a third of the server's CPU per small request.",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (POST /classify, GET /labels, archive scoring task) with BentoML.

    Set GIVETAKE_API_KEY to require 'Authorization: Bearer <key>' (see SECURITY.md).
    """

    # Without --model the server follows promotions (serving/service.py swaps them in); a tag pins.
    follow = model is None or model == "givetake:live"
    # The promoted model's exact tag: it survives later trainings.
    model = default_model() if follow or model is None else model

    # Check the model and settings here so a typo or a corrupt file fails with one line: a worker
    # that fails at startup is restarted by BentoML over and over instead of stopping the server.
    check_settings()
    schema_file = schema or _env_path(SCHEMA_ENV)
    bundle = open_model(model, schema_file)
    model_dir = bundle.path
    chosen = bundle.engine(engine)  # a missing or unchecked ONNX file fails here, in one line
    reference = str(Path(model).resolve()) if Path(model).is_dir() else model
    env = {**os.environ, "GIVETAKE_MODEL": reference, "GIVETAKE_ENGINE": chosen, "GIVETAKE_WORKERS": str(workers)}
    env["GIVETAKE_TRACE"] = "1" if trace else "0"
    env["GIVETAKE_FOLLOW_LIVE"] = "1" if follow else "0"
    env["GIVETAKE_SWAP_ENGINE"] = engine or "auto"
    if schema_file is not None:
        env[SCHEMA_ENV] = str(schema_file.resolve())
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(ROOT),
    ]
    typer.echo(
        f"serving {model} ({model_dir}) on {chosen} with {workers} worker{'s' if workers > 1 else ''} "
        f"at http://{host}:{port} (docs at /, Ctrl-C stops)"
        + ("; a model promoted meanwhile is swapped in" if follow else f"; pinned to {model}"),
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child process: signals (Ctrl-C, SIGTERM from a supervisor) reach BentoML directly,
    # so stopping `givetake serve` can never leave an orphaned server holding the port.
    os.execve(sys.executable, cmd, env)


def score(
    input_file: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            show_default=False,
            help="Posts to score: .csv, .jsonl, .parquet, or an X/Twitter archive's tweets.js.",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="Scored file; its suffix (.csv, .jsonl, .parquet) picks the format, none means the input's.",
        ),
    ],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "givetake:latest",
    text_column: Annotated[
        str | None,
        typer.Option(help="Column holding the post text (default: text; full_text for tweets.js).", show_default=False),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of the same command where it stopped.")
    ] = False,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows read, scored and committed at a time.")] = 512,
    batch_size: Annotated[int, typer.Option(min=1, help="Posts per forward pass.")] = 32,
    schema: Annotated[Path | None, typer.Option(help=SCHEMA_HELP, show_default=False)] = None,
    engine: EngineOption = None,
) -> None:
    """Score an archive of posts offline (no server): adds labels and score_<label> columns.

    Rows without usable text go to OUTPUT.errors.jsonl with their row number and the reason.
    """
    check_paths(input_file, output)  # before the model loads: a typo should fail in a second
    bundle = open_model(model, schema or _env_path(SCHEMA_ENV))  # resolved and checked once
    # One single-threaded engine thread per core, each chunk split between them (serving/batching.py).
    predictor = Predictor(bundle, batch_size=batch_size, engine=engine, calls=available_cores())
    engines = EngineThreads(predictor, max_posts=chunk_size)
    try:
        summary = score_file(input_file, output, engines, text_column=text_column, resume=resume, chunk_size=chunk_size)
    except KeyboardInterrupt:
        done = 0
        with contextlib.suppress(OSError, ValueError, KeyError):
            done = json.loads(side_paths(output)["state"].read_text(encoding="utf-8"))["rows_read"]
        typer.echo(f"interrupted after {done} rows; run the same command with --resume to continue", err=True)
        raise typer.Exit(130) from None
    finally:
        engines.close()
    typer.echo(summary.line())


def _env_path(name: str) -> Path | None:
    """The path in environment variable ``name``; None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None
