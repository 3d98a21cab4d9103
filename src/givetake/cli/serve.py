"""The ``givetake serve`` and ``givetake score`` commands (registered in ``training/cli.py``)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm.auto import tqdm

from givetake.core.bundle import SCHEMA_ENV, open_model
from givetake.core.predictor import Predictor
from givetake.core.records import input_format, iter_jsonl_lines, iter_records
from givetake.core.registry import default_model
from givetake.core.resources import available_cores
from givetake.serving.archive import STDIO, SUFFIXES, ScoreError, check_paths, expand_inputs
from givetake.serving.batching import EngineThreads
from givetake.serving.limits import check_settings
from givetake.serving.pipes import score_stream
from givetake.serving.ray_runner import score_with_ray
from givetake.serving.score import score_file, score_files, side_paths

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
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            show_default=False,
            help="Posts to score: .csv, .jsonl, .parquet files or X/Twitter tweets.js; folders (every such file "
            "under them); quoted glob patterns ('posts/**/*.jsonl'); or - for JSONL on stdin.",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="One input: the scored file, its suffix (.csv, .jsonl, .parquet) picks the format, none means the "
            "input's. Several inputs, a folder or a glob: a folder, one output per input. --engine ray: a folder of "
            "Parquet partitions. -: JSONL on stdout.",
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
    engine: Annotated[
        str | None,
        typer.Option(
            envvar="GIVETAKE_ENGINE",
            show_default=False,
            help="Inference engine: auto (onnx-int8 when exported and checked, else onnx, else torch), torch, onnx "
            "or onnx-int8; or ray: the same scoring as a Ray Data pipeline (scoring actors on the auto engine, "
            "Parquet partitions in the -o folder; pip install 'givetake[ray]'). Default: auto.",
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Several inputs: write every output as csv, jsonl or parquet (default: each input's format).",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the cluster to join (ray://host:10001, or auto for the cluster `ray start` made "
            "here); default: a local Ray on this machine's cores.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--engine ray: scoring actors, each one CPU with its own copy of the model (default: one per CPU).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score archives of posts offline (no server): adds labels and score_<label> columns.

    Rows without usable text go to OUTPUT.errors.jsonl with their row number and the reason (with -o -,
    they stay in the stream with the reason in an error field). See docs/archives.md.
    """
    if output_format is not None and output_format not in SUFFIXES:
        raise ScoreError(f"--format {output_format!r}: choose csv, jsonl or parquet")
    if engine is not None and engine.strip().lower() == "ray":
        if STDIO in inputs or output == STDIO:
            raise ScoreError("--engine ray reads files and writes a folder of Parquet partitions; it cannot use -")
        files = expand_inputs(inputs)
        try:
            summary = score_with_ray(
                files,
                Path(output),
                model,
                text_column=text_column,
                resume=resume,
                address=address,
                workers=workers,
                chunk_size=chunk_size,
                batch_size=batch_size,
            )
        except KeyboardInterrupt:
            typer.echo("interrupted; run the same command with --resume to continue", err=True)
            raise typer.Exit(130) from None
        typer.echo(summary.line())
        return
    if address is not None or workers is not None:
        raise ScoreError("--address and --workers are options of --engine ray")
    if STDIO in inputs or output == STDIO:
        _score_pipe(inputs, output, model, schema, engine, text_column, resume, chunk_size, batch_size)
        return
    files = expand_inputs(inputs)
    several = len(inputs) > 1 or Path(inputs[0]).is_dir() or not Path(inputs[0]).exists()
    if not several:
        check_paths(files[0], Path(output))  # before the model loads: a typo should fail in a second
    bundle = open_model(model, schema or _env_path(SCHEMA_ENV))  # resolved and checked once
    # One single-threaded engine thread per core, each chunk split between them (serving/batching.py).
    predictor = Predictor(bundle, batch_size=batch_size, engine=engine, calls=available_cores())
    engines = EngineThreads(predictor, max_posts=chunk_size)
    try:
        if several:
            summary = score_files(
                files,
                Path(output),
                engines,
                out_kind=output_format,
                text_column=text_column,
                resume=resume,
                chunk_size=chunk_size,
            )
        else:
            summary = score_file(
                files[0], Path(output), engines, text_column=text_column, resume=resume, chunk_size=chunk_size
            )
    except KeyboardInterrupt:
        done = ""
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads(side_paths(Path(output))["state"].read_text(encoding="utf-8"))
            done = f" after {state['rows_read']} rows"
        typer.echo(f"interrupted{done}; run the same command with --resume to continue", err=True)
        raise typer.Exit(130) from None
    finally:
        engines.close()
    typer.echo(summary.line())


def _score_pipe(
    inputs: list[str],
    output: str,
    model: str,
    schema: Path | None,
    engine: str | None,
    text_column: str | None,
    resume: bool,
    chunk_size: int,
    batch_size: int,
) -> None:
    """``givetake score - -o -`` and its halves: JSONL in or out through a pipe (serving/pipes.py)."""
    if resume:
        raise ScoreError("--resume needs files: a pipe cannot be read again; score a file to resume")
    if len(inputs) > 1:
        raise ScoreError("- (stdin) or -o - takes one input; name a folder or a glob to score several files")
    column = text_column or "text"
    if inputs[0] == STDIO:
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        records = iter_jsonl_lines(stdin)
    else:
        src = Path(inputs[0])
        kind = check_paths(src, Path(output))[0] if output != STDIO else input_format(src)
        if not src.is_file():
            raise ScoreError(f"{src}: no such file")
        column = text_column or ("full_text" if kind == "tweets" else "text")
        records = iter_records(src, kind, chunk_size)
    if output == STDIO:
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="backslashreplace", newline="\n")
    else:
        if Path(output).suffix.lower() not in (".jsonl", ".ndjson"):
            raise ScoreError(f"{output}: from stdin givetake score writes JSONL; name the output .jsonl or use -o -")
        out = Path(output).open("w", encoding="utf-8", errors="backslashreplace", newline="\n")  # noqa: SIM115 - closed below
    bundle = open_model(model, schema or _env_path(SCHEMA_ENV))
    predictor = Predictor(bundle, batch_size=batch_size, engine=engine, calls=available_cores())
    engines = EngineThreads(predictor, max_posts=chunk_size)
    bar = tqdm(unit=" posts", desc="scoring", file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True)
    try:
        read, scored, errors, seconds = score_stream(records, out, engines, column, chunk_size, on_chunk=bar.update)
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stops Python's flush-at-exit error
        return
    finally:
        bar.close()
        engines.close()
        if output != STDIO:
            out.close()
    rate = read / seconds if seconds > 0 else 0.0
    typer.echo(
        f"rows read: {read}  scored: {scored}  errors: {errors}  in {seconds:.1f} s ({rate:.0f} posts/s)", err=True
    )


def _env_path(name: str) -> Path | None:
    """The path in environment variable ``name``; None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None
