"""The givetake HTTP API: one BentoML service, ``PostClassifier``.

- ``POST /classify`` ``{"texts": [...]}`` -> one prediction per text, in input order. Concurrent
  requests share forward passes on one engine thread per core (``serving.batching.EngineThreads``).
- ``GET /labels`` -> the label schema the model was trained on, with thresholds and the model tag.
- ``POST /audit`` -> upload posts (a tweets.js, Shares.csv, CSV/JSONL/Parquet of one or many accounts):
  is each account giving or taking? The audit's figures as JSON, or its HTML report for
  ``Accept: text/html`` (the code of ``givetake audit``, :mod:`givetake.serving.feed`).
- ``GET /ui`` -> a page for people: paste posts and see their labels, upload an archive and see its audit.
- ``POST /score_archive/submit`` (a ``@bentoml.task``) -> upload a CSV/JSONL/Parquet/tweets.js file,
  poll ``GET /score_archive/status?task_id=...``, download ``GET /score_archive/get?task_id=...``.
- BentoML's own ``/livez``, ``/readyz``, ``/metrics``, ``/docs.json`` and the docs page at ``/``.

The model comes from ``GIVETAKE_MODEL`` (a BentoML tag or a run directory; default
``givetake:latest``) and is loaded once per worker. Start it with ``givetake serve``.

This module is imported by the BentoML server: no ``from __future__ import annotations`` here,
because BentoML reads the API signatures' annotations to build request and response models.
"""

import functools
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any

import anyio
import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from givetake.core.bundle import SCHEMA_ENV, open_model
from givetake.core.predictor import Predictor
from givetake.core.records import input_format
from givetake.core.registry import promotion_info
from givetake.core.resources import available_cores
from givetake.errors import DataError
from givetake.serving import bentoml_patches
from givetake.serving.audit import DEFAULT_RULE, RULES
from givetake.serving.batching import EngineThreads
from givetake.serving.feed import audit_files, model_context
from givetake.serving.guards import JsonErrors, LimitBodySize, LimitConcurrency, RequireApiKey, explain_validation
from givetake.serving.report import render_html
from givetake.serving.score import score_file
from givetake.serving.ui import ui_page

MAX_TEXTS = 256
MAX_CHARS = 20_000
WORKERS_ENV = "GIVETAKE_WORKERS"
TRACE_ENV = "GIVETAKE_TRACE"
# Archive chunks queue with /classify requests for the same engines; small chunks let those in between.
ARCHIVE_CHUNK_SIZE = 64
EXAMPLE_TEXTS = [
    "Our spring pottery course opens for booking on Monday: six evenings, all clay included. Grab a spot!",
    "Could you share this? My sister's dog went missing near the canal path last night.",
    "Handy guide from the city council on which bin takes what, saved me a lot of guesswork",
    "What's the one kitchen tool you'd never give up?",
    "@user Sorry your parcel is late! Please DM us the order number and we'll chase it today.",
]
EXAMPLE_INPUT: dict[str, list[str]] = {"texts": EXAMPLE_TEXTS}
_MEDIA_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
}


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace; send the post's text")
    return text


# strict: a number or null is an error to report, not a value to coerce into a string.
PostText = Annotated[str, Field(strict=True, max_length=MAX_CHARS), AfterValidator(_not_blank)]


class Prediction(BaseModel):
    """What the model says about one text."""

    labels: list[str] = Field(description="Labels whose score is at or above their threshold (may be empty).")
    scores: dict[str, float] = Field(description="Independent sigmoid probability for every label (not a softmax).")
    truncated: bool = Field(
        description="True when the text was longer than the model reads: its start and its end were scored, "
        "the middle was not (by the transformer; the TF-IDF half reads it all)."
    )


def _workers() -> int:
    """Server worker processes: ``GIVETAKE_WORKERS`` (set by ``givetake serve --workers``), else 1.

    Each worker is a process with its own event loop, model copy and engine threads, one per core
    of its share; the workers share the listening socket. Measured with bench/http.py (2 cores,
    int8, one post per request, 32 kept-alive connections): one worker with two engine threads
    served 492-502 posts/s, two workers with one each 505 and 527 in two runs, with 730 against 420
    MB. In an earlier version, 2 of 3 runs had one worker accept all 32 connections (whichever wakes
    first takes the whole backlog). So one worker by default; more suit many short-lived
    connections, as behind a load balancer.
    """
    raw = os.environ.get(WORKERS_ENV, "").strip()
    try:
        workers = int(raw) if raw else 1
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"{WORKERS_ENV}={raw!r} must be a whole number of at least 1")
    return workers


def _tracing() -> dict[str, Any]:
    """BentoML's tracing settings: ``/classify`` left out unless ``GIVETAKE_TRACE=1``.

    BentoML wraps every request in OpenTelemetry spans, even when it samples none of them (its
    default sample rate is 0, and it has no exporter until one is configured). With a stub model
    answering at once, building those unused spans took over a third of the server's CPU per
    one-post request: 0.70-0.72 ms against 0.44 ms with ``/classify`` left out (bench/RESULTS.md). Set
    ``GIVETAKE_TRACE=1`` along with BentoML's ``tracing`` settings to trace it.
    """
    raw = os.environ.get(TRACE_ENV, "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"{TRACE_ENV}={raw!r} must be 0 or 1")
    # A regular expression searched for in each request's URL.
    return {} if raw == "1" else {"excluded_urls": r"/classify(\?|$)"}


@functools.cache
def _batch_metrics() -> tuple[Any, Any]:
    """Prometheus histograms of requests and posts per forward call (one set per process)."""
    # Imported on first use: prometheus_client picks its multiprocess mode when first imported,
    # which must come after BentoML has set up the worker's metrics directory.
    from prometheus_client import Histogram

    sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    return (
        Histogram("givetake_batch_requests", "Requests merged into one forward call", buckets=sizes),
        Histogram("givetake_batch_posts", "Posts scored in one forward call", buckets=sizes),
    )


def _observe_batch(requests: int, posts: int) -> None:
    requests_per_call, posts_per_call = _batch_metrics()
    requests_per_call.observe(requests)
    posts_per_call.observe(posts)


def _model_tag(reference: str) -> str | None:
    """The exact store tag (``givetake:latest`` -> ``givetake:<run-id>``); None for a directory."""
    if Path(reference).is_dir():
        return None
    try:
        return str(bentoml.models.get(reference).tag)
    except BentoMLException:
        return reference


async def _labels(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    if service is None:  # pragma: no cover - only before startup finishes
        return JSONResponse({"error": "the service is still starting"}, status_code=503)
    return JSONResponse(service.label_info)


async def _ui(request: Request) -> HTMLResponse:
    return HTMLResponse(ui_page(), headers={"Cache-Control": "no-cache"})


# BentoML APIs are POST-only, so the read-only GET /labels and GET /ui are a small mounted Starlette app.
_get_routes = Starlette(routes=[Route("/labels", _labels, methods=["GET"]), Route("/ui", _ui, methods=["GET"])])


class _QuietValidationErrors(logging.Filter):
    """Log a rejected request as one warning line, not as an ERROR with a server-side traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.msg = "Rejected request on %s [%s]: %s"
            details = [dict(e) for e in exc.errors(include_url=False)]
            record.args = (*(record.args or ()), explain_validation(details))  # type: ignore[misc]
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# BentoML logs every request that fails validation with a full traceback on this logger.
logging.getLogger("bentoml._internal.server.http_app").addFilter(_QuietValidationErrors())


@bentoml.asgi_app(_get_routes, path="/", name="labels")
# No traffic.max_concurrency: BentoML answers it with a 429 that has no Retry-After, from outside the
# service's middleware; serving.security.LimitConcurrency gives a 503 "overloaded" with Retry-After.
@bentoml.service(name="givetake", traffic={"timeout": 120}, workers=_workers(), tracing=_tracing())
class PostClassifier:
    """Labels social-media posts with what they do: pitch, ask, helpful_share, ..."""

    def __init__(self) -> None:
        self.reference = os.environ.get("GIVETAKE_MODEL", "givetake:latest")
        # Refuse pickles, corrupt files and a label set other than GIVETAKE_SCHEMA's before loading.
        bundle = open_model(self.reference, os.environ.get(SCHEMA_ENV) or None)
        # The cores are shared out between the workers, and a worker's cores between its engine
        # threads: one single-threaded ONNX call per core (serving/batching.py says why), so no
        # ONNX Runtime thread waits between operators, spinning or not. torch takes one call at a
        # time on all of the worker's cores.
        cores = max(1, available_cores() // _workers())
        self.predictor = Predictor(bundle, threads=cores, calls=cores)
        self._archive_slot: Any = None
        # Concurrent /classify requests and archive chunks share forward passes (serving/batching.py
        # says why not BentoML's adaptive batching, and why nothing waits for a batch to fill). A
        # call holds up to 256 posts, one full request: the predictor sorts a call's posts by length
        # before padding, so bigger calls pad less (measured with BentoML's batching, 32 clients
        # sending 8 posts each: 118 and 159 posts/s with 256 against 74 and 85 with 32).
        _batch_metrics()  # registered here, once: the engine threads would race to register them
        self.engine = EngineThreads(self.predictor, max_posts=MAX_TEXTS, on_batch=_observe_batch)
        schema = self.predictor.schema
        self.label_info: dict[str, Any] = {
            "model": {
                "reference": self.reference,
                "tag": _model_tag(self.reference),
                "path": str(self.predictor.model_dir),
                "max_length": self.predictor.max_length,
                "head_tokens": self.predictor.head_tokens,
                "engine": self.predictor.engine,
                # Whether this is the model `givetake promote` marked live (read at startup).
                **promotion_info(_model_tag(self.reference)),
            },
            "schema": {"name": schema.name, "version": schema.version, "description": schema.description},
            "labels": [
                {
                    "name": spec.name,
                    "side": spec.side,
                    "summary": spec.summary,
                    "definition": spec.definition,
                    "threshold": round(float(self.predictor.thresholds[spec.name]), 4),
                }
                for spec in schema.labels
            ],
        }

    @bentoml.api
    async def classify(
        self,
        texts: Annotated[
            list[PostText],
            Field(
                min_length=1,
                max_length=MAX_TEXTS,
                description=f"1 to {MAX_TEXTS} posts, each non-empty and at most {MAX_CHARS} characters.",
                examples=[EXAMPLE_TEXTS],
            ),
        ],
    ) -> list[Prediction]:
        """Label posts: for each text, the labels at or above threshold, every label's score, truncation."""
        # Plain dicts: BentoML validates the reply against list[Prediction] on its way out.
        return await self.engine.submit(texts)  # type: ignore[return-value]

    @bentoml.api
    async def audit(
        self,
        file: Annotated[
            Path,
            Field(
                description="Posts: a tweets.js, a LinkedIn Shares.csv, or .csv/.jsonl/.parquet of one or more accounts"
            ),
        ],
        context: bentoml.Context,
        rule: Annotated[str, Field(description=f"Content-mix rule: {', '.join(RULES)}.")] = DEFAULT_RULE,
        author_column: Annotated[
            str, Field(description="Column naming each post's account; empty: found by name.")
        ] = "",
        time_column: Annotated[str, Field(description="Column with each post's time; empty: found by name.")] = "",
        text_column: Annotated[str, Field(description="Column with the post text; empty: found by name.")] = "",
    ) -> dict[str, Any]:
        """Is each account in the upload giving or taking? Shares per label corrected for the model's errors,
        the verdict against the rule, a timeline and examples: JSON, or the HTML report for Accept: text/html."""
        import anyio

        if rule not in RULES:
            return _bad_request(context, f"rule {rule!r}: choose one of {', '.join(RULES)}")
        if self._archive_slot is None:
            self._archive_slot = anyio.Lock()
        name = _upload_name(file)
        # One upload at a time, shared with the archive task: an audit scores a whole archive too.
        async with self._archive_slot:
            try:
                sides, errors, thresholds = model_context(self.predictor)
                report = await anyio.to_thread.run_sync(
                    lambda: audit_files(
                        [file],
                        self.engine,
                        sides,
                        errors,
                        model_name=self.label_info["model"]["tag"] or self.reference,
                        rule=rule,
                        thresholds=thresholds,
                        text_column=text_column or None,
                        author_column=author_column or None,
                        time_column=time_column or None,
                        progress=False,
                        names=[name],
                    )
                )
            except DataError as exc:
                return _bad_request(context, str(exc).replace(str(file), name))
        if "text/html" in context.request.headers.get("accept", ""):
            return HTMLResponse(render_html(report))  # type: ignore[return-value]
        return JSONResponse(report)  # type: ignore[return-value]

    @bentoml.task
    async def score_archive(
        self,
        file: Annotated[Path, Field(description="A .csv, .jsonl, .parquet file or an X/Twitter tweets.js.")],
        context: bentoml.Context,
        text_column: Annotated[
            str, Field(description="Column holding the post text; empty means text (full_text for tweets.js).")
        ] = "",
    ) -> Path:
        """Score an uploaded archive; the result is the same file with labels, score_<label> and error columns.

        Every uploaded row is kept, in order; rows without usable text have empty predictions and
        the reason in ``error``. Submit with POST /score_archive/submit, poll /score_archive/status.
        """
        try:
            kind = input_format(file)
        except DataError as exc:
            return _bad_request(context, str(exc).replace(str(file), _upload_name(file)))
        suffix = ".jsonl" if kind == "tweets" else file.suffix
        output = Path(context.temp_dir) / f"scored{suffix}"
        if self._archive_slot is None:
            self._archive_slot = anyio.Lock()
        # One archive at a time: a second upload waits (status in_progress) instead of halving
        # the speed of both and of /classify.
        async with self._archive_slot:
            try:
                summary = await anyio.to_thread.run_sync(
                    lambda: score_file(
                        file,
                        output,
                        self.engine,
                        text_column=text_column or None,
                        chunk_size=ARCHIVE_CHUNK_SIZE,
                        inline_errors=True,
                        progress=False,
                    )
                )
            except DataError as exc:
                return _bad_request(context, str(exc).replace(str(file), _upload_name(file)))
        # The file's bytes, not the Path: BentoML 1.4 stores a task's result by replaying the
        # response with a minimal ASGI scope, which Starlette's FileResponse rejects (KeyError 'method').
        # BentoML passes a Response through untouched; the Path annotation documents the API.
        return Response(  # type: ignore[return-value]
            output.read_bytes(),
            media_type=_MEDIA_TYPES.get(output.suffix, "application/octet-stream"),
            headers={
                "Content-Disposition": f'attachment; filename="{_upload_stem(file)}.scored{output.suffix}"',
                "X-Givetake-Rows-Read": str(summary.read),
                "X-Givetake-Rows-Scored": str(summary.scored),
                "X-Givetake-Rows-Errors": str(summary.errors),
            },
        )


def _upload_name(file: Path) -> str:
    """The uploaded file's own name: BentoML saves uploads as ``tmp`` + 8 random characters + name."""
    return file.name[11:] or "the upload"


def _upload_stem(file: Path) -> str:
    name = Path(_upload_name(file)).stem
    return re.sub(r"[^\w.-]", "_", name) or "archive"


def _bad_request(context: bentoml.Context, message: str) -> Any:
    """A 400 with a JSON ``error`` (a BentoML exception would wrap it in a list)."""
    # BentoML applies the context's status code to whatever the API returns.
    context.response.status_code = 400
    return JSONResponse({"error": message}, status_code=400)


# bentoml.service returns a Service object; its type stubs say it returns the class.
# Outermost first (BentoML keeps the order): JSON errors (readable 400s among them), API key, overload
# limit, body size limit; and the fixes to BentoML's multipart parsing and request logging.
bentoml_patches.apply()
for _guard in (JsonErrors, RequireApiKey, LimitConcurrency, LimitBodySize):
    PostClassifier.add_asgi_middleware(_guard)  # type: ignore[attr-defined]
# BentoML works out a response's media type from the output model's JSON schema, rebuilt on every
# reply unless the type says it; py-spy under 32 clients found that rebuild taking 21% of the server's
# event-loop thread. The reply is always a JSON list of predictions.
PostClassifier.apis["classify"].output_spec.media_type = "application/json"  # type: ignore[attr-defined]
