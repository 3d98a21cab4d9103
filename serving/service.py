"""The givetake HTTP API: one BentoML service, ``PostClassifier``.

- ``POST /classify`` ``{"texts": [...]}`` -> one prediction per text, in input order. Concurrent
  requests share forward passes on one engine thread per core (``serving.batching.EngineThreads``).
- ``POST /predict`` ``{"inputs": "text" or [...]}`` -> per text, every label with its sigmoid score,
  highest first: Hugging Face's text-classification shape (TEI, ``InferenceClient.text_classification``).
- ``GET /labels`` -> the label schema the model was trained on, with thresholds and the model tag.
- ``POST /audit`` -> upload posts (a tweets.js, Shares.csv, CSV/JSONL/Parquet of one or many accounts):
  is each account giving or taking? The audit's figures as JSON, or its HTML report for
  ``Accept: text/html`` (the code of ``givetake audit``, :mod:`givetake.serving.feed`).
- ``GET /ui`` -> a page for people: paste posts and see their labels, upload an archive and see its audit.
- ``POST /score_archive/submit`` (a ``@bentoml.task``) -> upload a CSV/JSONL/Parquet/tweets.js file,
  poll ``GET /score_archive/status?task_id=...`` (with rows read and scored so far), download
  ``GET /score_archive/get?task_id=...``.
- BentoML's own ``/livez``, ``/readyz``, ``/metrics``, ``/docs.json`` and the docs page at ``/``.

Every answer of the model carries ``X-Givetake-Model``: the tag (or directory) of the model that made it.

The model comes from ``GIVETAKE_MODEL`` (a BentoML tag or a run directory; default
``givetake:latest``) and is loaded once per worker. Start it with ``givetake serve``. With
``GIVETAKE_FOLLOW_LIVE=1`` (``givetake serve`` without ``--model``) each worker watches the promotion
record and swaps a newly promoted model in between forward passes, once it has loaded, passed the
start-up checks and scored the example posts (:meth:`PostClassifier.follow_live`).

This module is imported by the BentoML server: no ``from __future__ import annotations`` here,
because BentoML reads the API signatures' annotations to build request and response models.
"""

import functools
import gc
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from givetake.core.bundle import SCHEMA_ENV, open_model
from givetake.core.predictor import Predictor
from givetake.core.records import input_format
from givetake.core.registry import live_file, live_tag, promotion_info
from givetake.core.resources import available_cores
from givetake.errors import DataError, GivetakeError, ModelLoadError
from givetake.serving import bentoml_patches
from givetake.serving.audit import DEFAULT_RULE, RULES
from givetake.serving.batching import EngineThreads
from givetake.serving.feed import audit_files, model_context
from givetake.serving.guards import JsonErrors, LimitBodySize, LimitConcurrency, RequireApiKey, explain_validation
from givetake.serving.report import render_html
from givetake.serving.score import score_file, side_paths
from givetake.serving.ui import ui_page

MAX_TEXTS = 256
MAX_CHARS = 20_000
WORKERS_ENV = "GIVETAKE_WORKERS"
TRACE_ENV = "GIVETAKE_TRACE"
FOLLOW_ENV = "GIVETAKE_FOLLOW_LIVE"
# The engine asked for (``auto`` or a name) when following: a promoted model need not have the
# engine file the first one had.
SWAP_ENGINE_ENV = "GIVETAKE_SWAP_ENGINE"
MODEL_HEADER = "X-Givetake-Model"
CALL_POSTS_ENV = "GIVETAKE_CALL_POSTS"
MERGE_POSTS_ENV = "GIVETAKE_MERGE_POSTS"
# Posts of several requests merged into one call at most (serving/batching.py says why).
MERGE_POSTS = 16
# How often a following worker looks at the promotion record's modification time (one stat call).
LIVE_POLL_S = 1.0
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
# The server's logger: BentoML's handlers print the "bentoml" tree in every worker.
logger = logging.getLogger("bentoml.givetake")
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


class LabelScore(BaseModel):
    """One label and its score, as Hugging Face's text-classification answers."""

    label: str
    score: float = Field(description="Independent sigmoid probability (not a softmax).")


class PredictParameters(BaseModel):
    """The parameters of Hugging Face's text-classification requests that givetake honours."""

    # Other inference servers' parameters (truncate, raw_scores...) are accepted and ignored.
    model_config = ConfigDict(extra="ignore")
    top_k: int | None = Field(default=None, ge=1, description="Only the k highest-scoring labels.")
    function_to_apply: Literal["sigmoid"] | None = Field(
        default=None, description="givetake's scores are independent sigmoids; only 'sigmoid' is offered."
    )


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


def _posts_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        posts = int(raw) if raw else default
    except ValueError:
        posts = 0
    if not 1 <= posts <= MAX_TEXTS:
        raise ValueError(f"{name}={raw!r} must be a whole number from 1 to {MAX_TEXTS}")
    return posts


def _call_posts() -> int:
    """Posts per forward call at most: ``GIVETAKE_CALL_POSTS``, default 256 (one full request)."""
    return _posts_env(CALL_POSTS_ENV, MAX_TEXTS)


def _merge_posts() -> int:
    """Posts of several requests merged into one call at most: ``GIVETAKE_MERGE_POSTS``, default 16.

    A tuning knob for tail latency under many small requests (serving/batching.py says why 8); a
    single request's posts still go in one call up to ``GIVETAKE_CALL_POSTS``.
    """
    return _posts_env(MERGE_POSTS_ENV, MERGE_POSTS)


def _freeze_garbage() -> None:
    """Collect once, then leave every object alive now out of later garbage collections.

    The model, the libraries and BentoML leave a few million long-lived objects behind. Python's
    full collections walk them all while holding the GIL, and the engine threads need the GIL
    between forward passes: about every two seconds both stalled at once, and those calls took
    three times as long (bench/RESULTS.md, "p99 at 32 clients": p99 170 ms before, 109 ms after,
    88 ms with calls merged up to 16 posts). Objects frozen here are still freed by reference
    counting when dropped (an old model after a swap); only reference cycles among them are not.
    """
    gc.collect()
    gc.freeze()


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
    info = service.label_info
    model = {**info["model"], **promotion_info(info["model"]["tag"]), "follows_live": service.follows_live}
    if service.last_swap is not None:
        model["last_swap"] = service.last_swap
    return JSONResponse({**info, "model": model}, headers={MODEL_HEADER: service.model_name(service.engine.predictor)})


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


# Checked on import, like the worker count: a bad value stops `bentoml serve` once, instead of
# failing every worker BentoML restarts.
_call_posts()
_merge_posts()


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
        self._cores = cores
        # What each predictor is called in X-Givetake-Model (the exact tag, else the directory).
        self._names: weakref.WeakKeyDictionary[Predictor, str] = weakref.WeakKeyDictionary()
        self._names[self.predictor] = _model_tag(self.reference) or str(self.predictor.model_dir)
        self.last_swap: dict[str, Any] | None = None
        self.follows_live = os.environ.get(FOLLOW_ENV, "").strip() == "1"
        self._archive_slot: Any = None
        # Concurrent /classify requests and archive chunks share forward passes (serving/batching.py
        # says why not BentoML's adaptive batching, and why nothing waits for a batch to fill). A
        # call holds up to 256 posts, one full request: the predictor sorts a call's posts by length
        # before padding, so bigger calls pad less (measured with BentoML's batching, 32 clients
        # sending 8 posts each: 118 and 159 posts/s with 256 against 74 and 85 with 32).
        _batch_metrics()  # registered here, once: the engine threads would race to register them
        self.engine = EngineThreads(
            self.predictor, max_posts=_call_posts(), on_batch=_observe_batch, merge_posts=_merge_posts()
        )
        self.label_info: dict[str, Any] = _describe(self.reference, self.predictor)
        if self.follows_live:
            threading.Thread(target=self.follow_live, name="givetake-follow-live", daemon=True).start()
        _freeze_garbage()

    def model_name(self, predictor: Predictor) -> str:
        """What ``X-Givetake-Model`` says for answers of ``predictor``."""
        return self._names.get(predictor) or str(predictor.model_dir)

    def follow_live(self) -> None:
        """Watch the promotion record (its modification time, every ``LIVE_POLL_S``); swap promoted models in.

        Runs on its own thread for the life of the worker. A promoted model other than the one
        served is loaded with the same checks as at start-up (:func:`open_model`, the engine's
        parity record), must have the served model's labels, and must score the example posts with
        finite probabilities; then it is swapped in between forward passes (requests already queued
        finish on the old model). A model that fails is not swapped in: the old one keeps serving,
        and the log and ``GET /labels`` (``model.last_swap``) say why.
        """
        seen: int | None = None
        while True:
            time.sleep(LIVE_POLL_S)
            try:
                stamp: int | None = live_file().stat().st_mtime_ns
            except OSError:
                stamp = None
            if stamp == seen:
                continue
            seen = stamp
            try:
                tag = live_tag()
                if tag is not None and tag != self.label_info["model"]["tag"]:
                    self.swap_to(tag)
            except Exception:  # the watcher must outlive anything a promotion can throw at it
                logger.exception("following promotions: could not act on %s", live_file())

    def swap_to(self, tag: str) -> bool:
        """Load, check and warm the model ``tag``, then serve it; False (old model kept) when it fails a check."""
        started = time.monotonic()
        old = self.engine.predictor
        logger.info("model %s was promoted: loading it (still serving %s)", tag, self.model_name(old))
        try:
            bundle = open_model(tag, os.environ.get(SCHEMA_ENV) or None)
            engine = os.environ.get(SWAP_ENGINE_ENV) or "auto"
            predictor = Predictor(bundle, threads=self._cores, calls=self._cores, engine=engine)
            if predictor.labels != old.labels:
                raise ModelLoadError(
                    f"its labels ({', '.join(predictor.labels)}) are not the served model's "
                    f"({', '.join(old.labels)}); restart the server to change the label set"
                )
            if predictor.calls != old.calls:
                raise ModelLoadError(
                    f"its engine {predictor.engine} runs {predictor.calls} call(s) at a time, the server's "
                    f"engine threads {old.calls}; restart the server to change engines"
                )
            _check_warm_up(predictor)
        except Exception as exc:  # any failure keeps the old model serving
            reason = str(exc) if isinstance(exc, GivetakeError | ValueError) else f"{type(exc).__name__}: {exc}"
            kept = self.model_name(old)
            logger.error("promoted model %s was NOT swapped in; still serving %s: %s", tag, kept, reason)
            self.last_swap = {"tag": tag, "swapped": False, "reason": reason, "at": _now()}
            return False
        self._names[predictor] = tag
        label_info = _describe(tag, predictor)
        gc.unfreeze()  # the old model's cycles become collectable; the new model is frozen below
        self.engine.swap(predictor)
        self.predictor, self.reference, self.label_info = predictor, tag, label_info
        seconds = time.monotonic() - started
        logger.info("now serving %s (was %s); loaded, checked and warmed in %.1f s", tag, self._names.get(old), seconds)
        self.last_swap = {"tag": tag, "swapped": True, "replaced": self._names.get(old), "at": _now()}
        _freeze_garbage()  # one full collection, once per promotion
        return True

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
        context: bentoml.Context,
    ) -> list[Prediction]:
        """Label posts: for each text, the labels at or above threshold, every label's score, truncation."""
        predictor, results = await self.engine.submit_traced(texts)
        context.response.headers[MODEL_HEADER] = self.model_name(predictor)
        # Plain dicts: BentoML validates the reply against list[Prediction] on its way out.
        return results  # type: ignore[return-value]

    @bentoml.api
    async def predict(
        self,
        inputs: Annotated[
            PostText | Annotated[list[PostText], Field(min_length=1, max_length=MAX_TEXTS)],
            Field(
                description=f"One post, or 1 to {MAX_TEXTS} posts, each non-empty and at most {MAX_CHARS} characters.",
                examples=[EXAMPLE_TEXTS[0]],
            ),
        ],
        context: bentoml.Context,
        parameters: PredictParameters | None = None,
    ) -> list[list[LabelScore]]:
        """Hugging Face's text-classification shape: for each text, every label and its sigmoid score, highest first.

        What ``huggingface_hub.InferenceClient("http://HOST:PORT/predict").text_classification(text)``
        and text-embeddings-inference clients send; the same limits and errors as ``/classify``.
        """
        texts = [inputs] if isinstance(inputs, str) else inputs
        predictor, results = await self.engine.submit_traced(texts)
        context.response.headers[MODEL_HEADER] = self.model_name(predictor)
        top_k = parameters.top_k if parameters is not None else None
        answers = [
            [
                {"label": label, "score": score}
                for label, score in sorted(r["scores"].items(), key=lambda item: -item[1])[:top_k]
            ]
            for r in results
        ]
        return answers  # type: ignore[return-value]

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
        progress = _TaskProgress.for_task(getattr(context.request.state, "task_id", None))
        progress.write({"state_file": str(side_paths(output)["state"])})
        if self._archive_slot is None:
            self._archive_slot = anyio.Lock()
        # One archive at a time: a second upload waits (status in_progress) instead of halving
        # the speed of both and of /classify.
        async with self._archive_slot:
            engine_model = self.model_name(self.engine.predictor)
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
                message = str(exc).replace(str(file), _upload_name(file))
                progress.write({"error": message})
                return _bad_request(context, message)
            except Exception as exc:
                progress.write({"error": f"scoring failed: {type(exc).__name__}: {exc}"})
                raise
        progress.write({"rows_read": summary.read, "rows_scored": summary.scored, "rows_errors": summary.errors})
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
                MODEL_HEADER: engine_model,
            },
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _describe(reference: str, predictor: Predictor) -> dict[str, Any]:
    """What ``GET /labels`` says about the model ``reference`` loaded in ``predictor``."""
    schema = predictor.schema
    return {
        "model": {
            "reference": reference,
            "tag": _model_tag(reference),
            "path": str(predictor.model_dir),
            "max_length": predictor.max_length,
            "head_tokens": predictor.head_tokens,
            "engine": predictor.engine,
        },
        "schema": {"name": schema.name, "version": schema.version, "description": schema.description},
        "labels": [
            {
                "name": spec.name,
                "side": spec.side,
                "summary": spec.summary,
                "definition": spec.definition,
                "threshold": round(float(predictor.thresholds[spec.name]), 4),
            }
            for spec in schema.labels
        ],
    }


def _check_warm_up(predictor: Predictor) -> None:
    """Score the example posts (which also warms the engine); raise when an answer is not a probability."""
    for prediction in predictor.predict(EXAMPLE_TEXTS):
        bad = [k for k, v in prediction["scores"].items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
        if bad or list(prediction["scores"]) != predictor.labels:
            raise ModelLoadError(f"scoring the example posts gave no probability for {', '.join(bad) or 'some labels'}")


class _TaskProgress:
    """Where an archive task's progress is kept, beside BentoML's task database (so every worker sees it).

    The file holds the path of ``score_file``'s progress file while the task runs (rows read and
    scored so far are read from there), then the final counts or the reason it failed.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @staticmethod
    def folder() -> Path:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return Path(str(BentoMLContainer.result_store_file.get()) + ".progress")

    @classmethod
    def for_task(cls, task_id: str | None) -> "_TaskProgress":
        # Task ids are BentoML's uuid hex strings; anything else is not used in a path.
        if not task_id or not re.fullmatch(r"[\w-]{1,64}", task_id):
            return cls(None)
        return cls(cls.folder() / f"{task_id}.json")

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:  # progress is a courtesy: never fail the job for it
            logger.warning("cannot record the progress of an archive task: %s", exc)

    def read(self) -> dict[str, Any]:
        """``rows_read``, ``rows_scored``, ``rows_errors`` so far and/or ``error``; empty when unknown."""
        if self.path is None:
            return {}
        try:
            record: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            state_file = record.pop("state_file", None)
            if state_file is not None:
                state = json.loads(Path(state_file).read_text(encoding="utf-8"))
                record = {
                    "rows_read": state["rows_read"],
                    "rows_scored": state["scored"],
                    "rows_errors": state["errors"],
                }
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return record


class ArchiveStatus:
    """ASGI middleware: ``GET /score_archive/status`` adds the job's progress to BentoML's answer.

    While the job runs: ``rows_read``, ``rows_scored`` and ``rows_errors`` so far; when it has
    ended, the final counts, or ``error`` with the reason it failed.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/score_archive/status":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def hold(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    await _send_with_progress(send, start, b"".join(chunks))
            else:
                await send(message)

        await self.app(scope, receive, hold)


async def _send_with_progress(send: Any, start: dict[str, Any], body: bytes) -> None:
    try:
        status = json.loads(body)
        extra = _TaskProgress.for_task(status.get("task_id")).read() if start.get("status") == 200 else {}
    except (ValueError, AttributeError):
        extra = {}
    if extra:
        body = json.dumps({**status, **extra}).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
    await send(start)
    await send({"type": "http.response.body", "body": body})


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
for _guard in (JsonErrors, RequireApiKey, LimitConcurrency, LimitBodySize, ArchiveStatus):
    PostClassifier.add_asgi_middleware(_guard)  # type: ignore[attr-defined]
# BentoML works out a response's media type from the output model's JSON schema, rebuilt on every
# reply unless the type says it; py-spy under 32 clients found that rebuild taking 21% of the server's
# event-loop thread. The reply is always a JSON list of predictions.
for _api in ("classify", "predict"):
    PostClassifier.apis[_api].output_spec.media_type = "application/json"  # type: ignore[attr-defined]
