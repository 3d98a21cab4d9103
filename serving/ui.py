"""The page for people at ``GET /ui``: plain HTML and JavaScript shipped with the package, no build step.

It pastes posts to ``POST /classify`` and shows each one's labels with score bars, and uploads an
archive to ``POST /audit`` and shows its report. With ``GIVETAKE_API_KEY`` set on the server, the
page's key field is sent as ``Authorization: Bearer <key>`` (the page itself needs no key).
"""

from __future__ import annotations

import functools
from importlib.resources import files


@functools.cache
def ui_page() -> str:
    """The page's HTML (``ui.html`` beside this module)."""
    return files("givetake.serving").joinpath("ui.html").read_text(encoding="utf-8")
