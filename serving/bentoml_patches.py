"""Patches of BentoML internals, each written for and checked against one BentoML minor version.

They touch private parts of BentoML (``_bentoml_impl.serde.MultipartSerde`` and the HTTP app's
logger), so :func:`apply` refuses to run on a BentoML other than the one they were written for:
a new BentoML must be checked by hand (``tests/test_access.py`` covers what they do) before
``WRITTEN_FOR`` is moved. For that reason the private module is imported only after that
check, inside :func:`_harden_multipart`: on another BentoML it may not exist, and the refusal must
be the readable one.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml
from bentoml.exceptions import BadInput
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from givetake.serving.guards import BodyTooLarge

WRITTEN_FOR = "1.4."


class _QuietRefusals(logging.Filter):
    """One warning line, not an ERROR with a traceback, for requests refused for what the client sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BodyTooLarge):
            return False  # LimitBodySize logs its own line
        if isinstance(exc, BadInput):
            record.msg = "Rejected request on %s [%s]: %s"
            record.args = (*(record.args or ()), str(exc))  # type: ignore[misc]
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _harden_multipart() -> None:
    """Two fixes to BentoML 1.4's multipart parsing (the archive upload), applied once per process.

    - A ``file`` field sent as text instead of a file part is taken by BentoML as a URL that the
      server downloads, whole and into memory: with uvloop installed it fetches any public
      address (private ones are blocked), a request forgery and a way around the upload limit;
      without uvloop the request ends in a 500. Refused: the file must be uploaded.
    - A malformed multipart body makes Starlette raise an HTTPException that BentoML turns into a
      500 "unexpected error"; it becomes a 400 naming the problem.
    """
    from _bentoml_impl.serde import MultipartSerde  # private: only after apply()'s version check

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


def apply() -> None:
    """Apply every patch once per process; fail loudly on a BentoML they were not written for."""
    if not bentoml.__version__.startswith(WRITTEN_FOR):
        raise RuntimeError(
            f"givetake's BentoML patches were written for BentoML {WRITTEN_FOR}x, not {bentoml.__version__}: "
            "check serving/bentoml_patches.py against it, then update WRITTEN_FOR"
        )
    _harden_multipart()
    # BentoML logs every exception an API raises, with a traceback, on this logger.
    http_log = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, _QuietRefusals) for f in http_log.filters):
        http_log.addFilter(_QuietRefusals())
