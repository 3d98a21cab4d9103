"""What the givetake server refuses: callers without the API key, oversized bodies, more work than
it can queue, and model directories it cannot trust.

ASGI middleware, registered on the BentoML service by :func:`add_security_middleware` (outermost
first):

- :class:`JsonErrors`: every error reply is a JSON object with an ``error`` message (Starlette's
  own 404/405 replies are plain text), and every 503 carries ``Retry-After``;
- :class:`RequireApiKey`: with ``GIVETAKE_API_KEY`` set, every path but ``/livez``, ``/readyz``,
  ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer <key>`` (401 otherwise);
- :class:`LimitConcurrency`: at most ``GIVETAKE_MAX_CONCURRENCY`` requests in progress per worker;
  the next one gets an immediate 503 ``overloaded`` with ``Retry-After``;
- :class:`LimitBodySize`: a body over ``GIVETAKE_MAX_BODY_MB`` (``GIVETAKE_MAX_UPLOAD_MB`` for
  archive uploads) is refused with 413, from ``Content-Length`` before it is read, or as soon as
  the streamed bytes pass the limit.

:func:`check_model` runs before a model is loaded (``givetake serve``, ``givetake score`` and each
server worker): it refuses pickle files, unreadable JSON or safetensors files, and a model whose
labels differ from the schema the caller says is in use (``--schema`` / ``GIVETAKE_SCHEMA``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from training.config import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_ENV = "GIVETAKE_API_KEY"
MAX_BODY_ENV = "GIVETAKE_MAX_BODY_MB"
MAX_UPLOAD_ENV = "GIVETAKE_MAX_UPLOAD_MB"
MAX_CONCURRENCY_ENV = "GIVETAKE_MAX_CONCURRENCY"
SCHEMA_ENV = "GIVETAKE_SCHEMA"

# Probes and scrapers must work without the key: an orchestrator's health checks and Prometheus
# carry no secrets. /healthz is BentoML's older name for /livez.
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
# The archive task takes a file; its synchronous twin /score_archive accepts the same upload.
UPLOAD_PATHS = frozenset({"/score_archive/submit", "/score_archive"})
# The largest valid /classify body is 256 texts of 20,000 characters: 5 MB as ASCII, 20 MB as
# 4-byte UTF-8, 29.3 MiB when a client escapes every character as \uXXXX (Python's json default).
DEFAULT_MAX_BODY_MB = 32.0
# BentoML keeps an uploaded archive and its scored copy in its task database for 24 hours; bigger
# archives belong to `givetake score`, which streams.
DEFAULT_MAX_UPLOAD_MB = 64.0
# In-flight requests per worker. Batching (serving/batching.py) merges queued requests into shared forward
# passes, and on CPU throughput stops growing long before 32 requests of a few posts each are
# queued: more only lengthens the wait. A request beyond that is told to come back (503 +
# Retry-After) instead of queueing toward the 120 s timeout, and the bodies held in flight stay
# under 32 x 32 MiB.
DEFAULT_MAX_CONCURRENCY = 32
RETRY_AFTER_S = 1
# Weights and tokenizers must be safetensors/JSON: these suffixes are (or may be) pickles, which
# run code when loaded.
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib")

logger = logging.getLogger("givetake.security")


# ------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Limits:
    """The request limits in force (bytes, requests)."""

    body_bytes: int
    upload_bytes: int
    max_concurrency: int


def _number(name: str, default: float, integer: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if integer else ''}number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def limits_from_env() -> Limits:
    """The limits from ``GIVETAKE_MAX_BODY_MB``, ``GIVETAKE_MAX_UPLOAD_MB`` and ``GIVETAKE_MAX_CONCURRENCY``."""
    return Limits(
        body_bytes=int(_number(MAX_BODY_ENV, DEFAULT_MAX_BODY_MB) * 2**20),
        upload_bytes=int(_number(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB) * 2**20),
        max_concurrency=int(_number(MAX_CONCURRENCY_ENV, DEFAULT_MAX_CONCURRENCY, integer=True)),
    )


def api_key_from_env() -> str | None:
    """``GIVETAKE_API_KEY``, or None when unset; set but blank is an error, not "no key"."""
    key = os.environ.get(API_KEY_ENV)
    if key is None:
        return None
    if not key.strip():
        # An empty expansion (GIVETAKE_API_KEY=$UNSET_VAR) must not silently open the server.
        raise ConfigError(f"{API_KEY_ENV} is set but empty; set it to a secret, or unset it to run without a key")
    return key.strip()


def check_settings() -> None:
    """Fail with one line on a bad limit or API key setting (``givetake serve`` runs it before starting)."""
    limits_from_env()
    api_key_from_env()


# ------------------------------------------------------------------------------------------ responses


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope | Message, name: bytes) -> bytes | None:
    """The first header ``name`` (lower-case) of a request scope or a response start message."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def explain_validation(detail: list[dict[str, Any]]) -> str:
    """One line per validation problem, naming where it is: ``texts[3]: String should have ...``."""
    parts = []
    for err in detail:
        loc = [p for p in err.get("loc", []) if p not in ("body", "root")]
        where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if not where or err.get("type") == "missing":
            msg += ' (send a JSON object such as {"texts": ["a post", "another post"]})'
        parts.append(f"{where or 'request body'}: {msg}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------- middleware


class JsonErrors:
    """Every error reply as a JSON object with an ``error`` message, and ``Retry-After`` on every 503.

    The service's own errors are such objects already; this covers Starlette's plain-text 404
    and 405 (``GET /nope``, ``GET /classify``), BentoML's ``[{"error": ...}]`` for a bad upload,
    and BentoML's 503 for a cancelled batch, whose text blames an unexpected server error.
    BentoML's 400 for a request that fails validation, ``{"error": "1 validation error for
    Input", "detail": [...]}``, gets an ``error`` a person can act on (``texts[2]: text is empty
    or only whitespace; ...``) and loses pydantic's documentation links.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message  # error bodies are small: hold the reply until its body is complete
                return
            if held is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._replace(scope, send, held, b"".join(chunks))

        await self.app(scope, receive, rewrite)

    @staticmethod
    async def _replace(scope: Scope, send: Send, start: Message, original: bytes) -> None:
        status = int(start["status"])
        try:
            payload = json.loads(original) if original else None
        except ValueError:
            payload = None
        if status == 400 and isinstance(payload, dict) and isinstance(payload.get("detail"), list):
            details = [d for d in payload["detail"] if isinstance(d, dict)]
            payload = {
                **payload,
                "error": explain_validation(details),
                "detail": [{k: v for k, v in d.items() if k != "url"} for d in details],
            }
            original = json.dumps(payload).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            start = {**start, "headers": [*headers, (b"content-length", str(len(original)).encode())]}
        if status != 503 and isinstance(payload, dict) and isinstance(payload.get("error"), str):
            await send(start)  # already what a client expects
            await send({"type": "http.response.body", "body": original})
            return
        dropped = (b"content-length", b"content-type", b"retry-after")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]
        if status == 503:
            headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        what = f"{scope.get('method', '')} {scope.get('path', '')}".strip()
        if status == 503:
            if not (isinstance(payload, dict) and "overloaded" in str(payload.get("error"))):
                payload = {"error": f"{what}: overloaded; retry after {RETRY_AFTER_S} s"}
        elif isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict) and "error" in payload[0]:
            payload = {"error": str(payload[0]["error"])}
        else:
            text = original.decode("utf-8", "replace").strip()
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
            payload = {"error": f"{what}: {phrase.lower()}" + (f" ({text:.200})" if text and text != phrase else "")}
        await _send_json(send, status, payload, headers)


class RequireApiKey:
    """``Authorization: Bearer <key>`` on every path but the probes, when ``GIVETAKE_API_KEY`` is set.

    The key is compared as SHA-256 digests with :func:`hmac.compare_digest`, so the time taken
    says nothing about how much of a guess was right, nor about the key's length.
    """

    def __init__(self, app: ASGIApp, key: str | None = None) -> None:
        self.app = app
        # Read when the app is built (in each worker), so the key never sits in the service module.
        key = key if key is not None else api_key_from_env()
        self._digest = hashlib.sha256(key.encode()).digest() if key else None

    def allows(self, scope: Scope) -> bool:
        """Whether the request may pass: no key configured, an open path, or the right bearer token."""
        if self._digest is None or scope.get("path") in OPEN_PATHS:
            return True
        value = _header(scope, b"authorization") or b""
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            token = b""
        return hmac.compare_digest(hashlib.sha256(token.strip()).digest(), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allows(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        sent = _header(scope, b"authorization") is not None
        error = (
            "invalid API key" if sent else "this server needs an API key: send the header 'Authorization: Bearer <key>'"
        )
        challenge = b'Bearer realm="givetake", error="invalid_token"' if sent else b'Bearer realm="givetake"'
        await _send_json(send, 401, {"error": error}, [(b"www-authenticate", challenge)])


class LimitConcurrency:
    """At most ``max_concurrency`` requests in progress; the next gets 503 ``overloaded`` + ``Retry-After``.

    BentoML's own ``traffic.max_concurrency`` answers 429 without ``Retry-After``, from a
    middleware that sits outside the service's own, so it cannot be reworded here: the limit is
    kept here instead. The probes and /metrics are never refused.
    """

    def __init__(self, app: ASGIApp, max_concurrency: int | None = None) -> None:
        self.app = app
        self.max_concurrency = max_concurrency or limits_from_env().max_concurrency
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency:
            await _send_json(
                send,
                503,
                {"error": f"overloaded: {self.in_flight} requests in progress; retry after {RETRY_AFTER_S} s"},
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        # One event loop per worker and no await between the check and the increment: no race.
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BodyTooLarge(Exception):
    """Raised into the app when a streamed body passes its limit; the client gets a 413."""


class LimitBodySize:
    """Refuse bodies over the limit with 413: at once from ``Content-Length``, or while streaming."""

    def __init__(self, app: ASGIApp, body_bytes: int | None = None, upload_bytes: int | None = None) -> None:
        self.app = app
        limits = limits_from_env()
        self.body_bytes = body_bytes or limits.body_bytes
        self.upload_bytes = upload_bytes or limits.upload_bytes

    def limit_for(self, path: str) -> int:
        """The body limit of ``path`` in bytes."""
        return self.upload_bytes if path in UPLOAD_PATHS else self.body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limit_for(path)
        env = MAX_UPLOAD_ENV if path in UPLOAD_PATHS else MAX_BODY_ENV
        too_large = {
            "error": f"request body is larger than the {limit / 2**20:.3g} MiB allowed on {path} "
            f"(the server's {env}); send fewer or shorter posts"
        }
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, {"error": f"Content-Length {declared.decode('latin-1')!r} is not a number"})
                return
            if size > limit:
                await _send_json(send, 413, too_large)
                return
        received = 0
        overflow = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflow = True
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:  # whatever the app makes of the exception, the client gets the 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, counted_receive, guarded_send)
        if overflow and not started:
            logger.warning("Refused request on %s: body over %d bytes", scope.get("path"), limit)
            await _send_json(send, 413, too_large)


class _QuietRefusals(logging.Filter):
    """One warning line, not an ERROR with a traceback, for requests refused for what the client sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bentoml.exceptions import BadInput

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BodyTooLarge):
            return False  # LimitBodySize logs its own line
        if isinstance(exc, BadInput):
            record.msg = "Rejected request on %s [%s]: %s"
            record.args = (*(record.args or ()), str(exc))  # type: ignore[misc]
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# BentoML logs every exception an API raises, with a traceback, on this logger.
logging.getLogger("bentoml._internal.server.http_app").addFilter(_QuietRefusals())


def _harden_multipart() -> None:
    """Two fixes to BentoML 1.4's multipart parsing (the archive upload), applied once per process.

    - A ``file`` field sent as text instead of a file part is taken by BentoML as a URL that the
      server downloads, whole and into memory: with uvloop installed it fetches any public
      address (private ones are blocked), a request forgery and a way around the upload limit;
      without uvloop the request ends in a 500. Refused: the file must be uploaded.
    - A malformed multipart body makes Starlette raise an HTTPException that BentoML turns into a
      500 "unexpected error"; it becomes a 400 naming the problem.
    """
    from _bentoml_impl.serde import MultipartSerde
    from bentoml.exceptions import BadInput
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    if getattr(MultipartSerde, "_givetake_hardened", False):
        return
    parse_request = MultipartSerde.parse_request

    async def ensure_file(obj: Any) -> Any:
        if isinstance(obj, UploadFile):
            return obj
        raise BadInput("file: upload the file itself as a multipart file part; this server does not fetch URLs")

    async def checked_parse_request(self: Any, request: Any, cls: Any) -> Any:
        try:
            return await parse_request(self, request, cls)
        except HTTPException as exc:
            raise BadInput(f"request body: {exc.detail}") from None

    MultipartSerde.ensure_file = staticmethod(ensure_file)  # type: ignore[assignment,method-assign]
    MultipartSerde.parse_request = checked_parse_request  # type: ignore[method-assign]
    MultipartSerde._givetake_hardened = True  # type: ignore[attr-defined]


def secure_service(service: Any) -> None:
    """Register the middleware on a BentoML service (outermost first: BentoML keeps the order),
    and close the holes in BentoML's multipart parsing (see :func:`_harden_multipart`)."""
    _harden_multipart()
    service.add_asgi_middleware(JsonErrors)
    service.add_asgi_middleware(RequireApiKey)
    service.add_asgi_middleware(LimitConcurrency)
    service.add_asgi_middleware(LimitBodySize)


# ------------------------------------------------------------------------------------------- model


def _label_names(path: Path) -> list[str]:
    from labels.schema import SchemaError, load_schema
    from serving.predictor import ModelLoadError

    try:
        return load_schema(path).names
    except SchemaError as exc:
        raise ModelLoadError(str(exc)) from None


def check_model(model: str | Path, schema: str | Path | None = None) -> Path:
    """The model's directory, after refusing what cannot be loaded safely or does not fit.

    Refused, each with a message naming the file: a directory that is missing or lacks a
    required file; any pickle file (``*.bin``, ``*.pkl``, ...); a JSON file or safetensors file
    that does not parse (a truncated download, a half-copied directory); ``config.json`` labels
    that differ from the model's ``schema.yaml``; and, when ``schema`` is given, a model whose
    labels differ from that schema's. Cheap (no weights are read), so it runs before every load.
    """
    from safetensors import safe_open

    from serving.predictor import ModelLoadError
    from training.store import resolve_model
    from training.thresholds import load_thresholds

    model_dir = resolve_model(model)
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{model_dir} holds pickle files ({', '.join(pickles)}), which run code when loaded; "
            "only safetensors weights are loaded: remove them or re-save the model with safetensors"
        )
    parsed: dict[str, Any] = {}
    for path in sorted(model_dir.glob("*.json")):
        try:
            parsed[path.name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelLoadError(f"{path}: corrupt JSON ({exc}); copy or train the model again") from None
    for path in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="numpy"):
                pass  # opening parses the header and checks the file covers every tensor
        except Exception as exc:  # safetensors raises its own SafetensorError, not an OSError
            raise ModelLoadError(f"{path}: corrupt safetensors file ({exc}); copy or train the model again") from None
    labels = _label_names(model_dir / "schema.yaml")
    config = parsed.get("config.json")
    id2label = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(str(i) for i in range(len(labels))):
        raise ModelLoadError(
            f"{model_dir / 'config.json'}: id2label does not list the {len(labels)} labels of its schema.yaml"
        )
    config_labels = [id2label[str(i)] for i in range(len(labels))]
    if config_labels != labels:
        raise ModelLoadError(f"{model_dir}: config.json labels {config_labels} differ from its schema.yaml {labels}")
    try:
        load_thresholds(model_dir, labels)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    if schema is not None:
        wanted = _label_names(Path(schema))
        if wanted != labels:
            raise ModelLoadError(
                f"{model_dir} was trained on the labels {labels}, but the schema in use ({schema}) has "
                f"{wanted}: serve a model trained on that schema, or drop --schema/{SCHEMA_ENV}"
            )
    return model_dir
