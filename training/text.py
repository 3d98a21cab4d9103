"""Text normalisation shared by training and every prediction path (TweetEval convention)."""

from __future__ import annotations

import re

# Handles: Twitter-style @name (letters, digits, underscore). The lookbehind keeps e-mail
# addresses ("me@example.com") intact.
_HANDLE = re.compile(r"(?<![\w@])@\w+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Map ``@handles`` to ``@user`` and URLs to ``http``, and fold runs of whitespace.

    Models learn from what a post does, not whom it names or where it links, and the same
    mapping must hold at training and at prediction time: every path calls this function.
    """
    text = _URL.sub("http", text)
    text = _HANDLE.sub("@user", text)
    return _SPACE.sub(" ", text).strip()
