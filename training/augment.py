"""Variants of training posts with the noise of real feeds (``givetake train --augment 0.3``).

The corpus is written by careful hands; real posts are not: lower-case or shouted, typed fast,
wrapped in emoji and hashtag blocks, opened with an @mention, closed with a link, cut off by a
preview, numbered as parts of a thread. Each variant applies one or two of those to a training
post and keeps its labels (a teacher's scores, when there are some for the variant's text, correct
the cases where the noise changed what the post does, e.g. a cut that removed the question).
Deterministic: the same post, seed and variant number give the same text.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

EMOJI = ["🔥", "🙌", "👇", "😂", "💯", "✨", "🙏", "👀", "😍", "🚀", "✅", "❤️"]
TAGS = ["#mondaymotivation", "#tips", "#news", "#smallbusiness", "#community", "#help", "#sale", "#tbt", "#ai"]
NAMES = ["@user", "@Support", "@team", "@jess_m", "@TheShop", "@dan", "@help_desk"]


def _shout(text: str, rng: random.Random) -> str:
    words = text.split()
    if not words:
        return text
    for i in rng.sample(range(len(words)), k=min(2, len(words))):
        words[i] = words[i].upper()
    return " ".join(words)


def _typos(text: str, rng: random.Random) -> str:
    chars = list(text)
    letters = [i for i in range(len(chars) - 1) if chars[i].isalpha() and chars[i + 1].isalpha()]
    for i in rng.sample(letters, k=min(len(letters), rng.randint(1, 3))):
        if rng.random() < 0.5:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            chars[i] = ""
    return "".join(chars)


def _emoji(text: str, rng: random.Random) -> str:
    return f"{text} {''.join(rng.choices(EMOJI, k=rng.randint(1, 3)))}"


def _hashtags(text: str, rng: random.Random) -> str:
    return f"{text}\n\n{' '.join(rng.sample(TAGS, k=rng.randint(2, 4)))}"


def _mention(text: str, rng: random.Random) -> str:
    return f"{rng.choice(NAMES)} {text}"


def _link(text: str, rng: random.Random) -> str:
    return f"{text} https://t.co/{''.join(rng.choices('abcdefghijkmnpqrstuvwxyz0123456789', k=10))}"


def _cut(text: str, rng: random.Random) -> str:
    if len(text) < 60:
        return text
    return text[: int(len(text) * rng.uniform(0.6, 0.9))].rstrip() + "…"


def _thread(text: str, rng: random.Random) -> str:
    total = rng.randint(2, 6)
    part = rng.randint(1, total)
    return f"{part}/{total} {text}" if rng.random() < 0.5 else f"{text} ({part}/{total})"


NOISE: dict[str, Callable[[str, random.Random], str]] = {
    "lower": lambda t, _: t.lower(),
    "shout": _shout,
    "typos": _typos,
    "emoji": _emoji,
    "hashtags": _hashtags,
    "mention": _mention,
    "link": _link,
    "cut": _cut,
    "thread": _thread,
}


def variant(text: str, seed: int, number: int = 0) -> str:
    """One noisy variant of ``text``: one or two kinds of noise, chosen by ``seed`` and ``number``."""
    digest = hashlib.sha1(f"{seed}:{number}:{text}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    for name in rng.sample(sorted(NOISE), k=rng.randint(1, 2)):
        text = NOISE[name](text, rng)
    return text


def pick(count: int, fraction: float, seed: int) -> list[int]:
    """Which of ``count`` rows get a variant: ``fraction`` of them, at random (fixed by ``seed``)."""
    k = round(count * fraction)
    return sorted(random.Random(seed).sample(range(count), k=min(k, count)))


def variants(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[str]]:
    """The rows picked for a variant and their variants' texts."""
    rows = pick(len(texts), fraction, seed)
    return rows, [variant(texts[i], seed) for i in rows]
