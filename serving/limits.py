"""The server's limits and its API key, read from the environment.

``GIVETAKE_MAX_BODY_MB``, ``GIVETAKE_MAX_UPLOAD_MB`` (archive uploads), ``GIVETAKE_MAX_CONCURRENCY``
(requests in progress per worker) and ``GIVETAKE_API_KEY``; a bad value is a
:class:`~givetake.errors.ConfigError` naming the variable, so ``givetake serve`` stops with one line.
The guards that enforce them are in :mod:`givetake.serving.guards`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from givetake.errors import ConfigError

API_KEY_ENV = "GIVETAKE_API_KEY"
MAX_BODY_ENV = "GIVETAKE_MAX_BODY_MB"
MAX_UPLOAD_ENV = "GIVETAKE_MAX_UPLOAD_MB"
MAX_CONCURRENCY_ENV = "GIVETAKE_MAX_CONCURRENCY"

# Probes and scrapers must work without the key: an orchestrator's health checks and Prometheus
# carry no secrets. /healthz is BentoML's older name for /livez.
# /ui is a static page with no data in it: a browser cannot send the key when it opens a page, so the
# page asks for the key and sends it with every call it makes.
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/ui"})
# The archive task takes a file; its synchronous twin /score_archive accepts the same upload, and so
# does the feed audit.
UPLOAD_PATHS = frozenset({"/score_archive/submit", "/score_archive", "/audit"})
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
