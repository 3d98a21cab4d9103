"""What the givetake server refuses: callers without the API key, oversized bodies, more work than
it can queue; and every refusal as a readable JSON error.

ASGI middleware, registered on the BentoML service by ``serving/service.py`` (outermost first):

- :class:`JsonErrors`: every error reply is a JSON object with an ``error`` message (Starlette's
  own 404/405 replies are plain text), and every 503 carries ``Retry-After``;
- :class:`RequireApiKey`: with ``GIVETAKE_API_KEY`` set, every path but ``/livez``, ``/readyz``,
  ``/healthz``, ``/metrics`` and the static page ``/ui`` needs ``Authorization: Bearer <key>`` (401 otherwise);
- :class:`LimitConcurrency`: at most ``GIVETAKE_MAX_CONCURRENCY`` requests in progress per worker;
  the next one gets an immediate 503 ``overloaded`` with ``Retry-After``;
- :class:`LimitBodySize`: a body over ``GIVETAKE_MAX_BODY_MB`` (``GIVETAKE_MAX_UPLOAD_MB`` for
  archive uploads) is refused with 413, from ``Content-Length`` before it is read, or as soon as
  the streamed bytes pass the limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from givetake.serving.limits import (
    MAX_BODY_ENV,
    MAX_UPLOAD_ENV,
    OPEN_PATHS,
    RETRY_AFTER_S,
    UPLOAD_PATHS,
    api_key_from_env,
    limits_from_env,
)

logger = logging.getLogger("givetake.security")


# ------------------------------------------------------------------------------------------ responses


def _json(status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON error reply (Starlette sets ``content-type`` and ``content-length``)."""
    return JSONResponse(payload, status_code=status, headers=headers)


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
                await self._replace(scope, receive, send, held, b"".join(chunks))

        await self.app(scope, receive, rewrite)

    @staticmethod
    async def _replace(scope: Scope, receive: Receive, send: Send, start: Message, original: bytes) -> None:
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
            start = {**start, "headers": list(start.get("headers", []))}
            MutableHeaders(scope=start)["content-length"] = str(len(original))
        if status != 503 and isinstance(payload, dict) and isinstance(payload.get("error"), str):
            await send(start)  # already what a client expects
            await send({"type": "http.response.body", "body": original})
            return
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        for dropped in ("content-length", "content-type", "retry-after"):
            del headers[dropped]
        if status == 503:
            headers["retry-after"] = str(RETRY_AFTER_S)
        if scope.get("method") == "HEAD":
            empty = Response(status_code=status, headers=headers)
            del empty.headers["content-length"]  # a HEAD reply says nothing about a body it does not have
            await empty(scope, receive, send)
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
        await _json(status, payload, headers)(scope, receive, send)


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
        value = Headers(scope=scope).get("authorization", "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        return hmac.compare_digest(hashlib.sha256(token.strip().encode("latin-1")).digest(), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allows(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await WebSocketClose(code=1008)(scope, receive, send)
            return
        sent = "authorization" in Headers(scope=scope)
        error = (
            "invalid API key" if sent else "this server needs an API key: send the header 'Authorization: Bearer <key>'"
        )
        challenge = 'Bearer realm="givetake", error="invalid_token"' if sent else 'Bearer realm="givetake"'
        await _json(401, {"error": error}, {"www-authenticate": challenge})(scope, receive, send)


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
            await _json(
                503,
                {"error": f"overloaded: {self.in_flight} requests in progress; retry after {RETRY_AFTER_S} s"},
                {"retry-after": str(RETRY_AFTER_S)},
            )(scope, receive, send)
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
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _json(400, {"error": f"Content-Length {declared!r} is not a number"})(scope, receive, send)
                return
            if size > limit:
                await _json(413, too_large)(scope, receive, send)
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
            await _json(413, too_large)(scope, receive, send)
