"""How far a label's counted share lands from the labelled share on real feeds: what corrects an audit.

A feed's count of a label is off by its false positives and false negatives: the labelled share is
``count share + bias``, with ``bias = (false negatives - false positives) / posts``. The bias differs
from feed to feed (a classifier that over-reads LinkedIn posts as helpful shares is fine on airline
tweets), so one number per label does not fix it. The audit models it as a random effect: each
feed's bias is drawn around a mean with a between-feed spread, plus the noise of the feed's own
posts, and it learns both from real labelled posts grouped by source (the standard
DerSimonian-Laird estimate of a random-effects meta-analysis, one source a study).

Where the numbers come from:

- the reference shipped in ``count_bias.json``: measured by ``bench/audit_correction.py`` for the
  default recipe on real posts labelled by the guide (numbers only; the posts stay outside the
  project); it says which model and how many sources and posts;
- a labelled sample of the user's own posts (``givetake evaluate``): its ``(fn - fp) / rows`` is
  that feed's bias, measured with noise; :func:`feed_bias` weighs it against the reference by their
  variances (normal-normal updating), so a big sample wins and a small one nudges.

The validation split is not used for the point estimate: it is written by the same hands as the
training rows and says the counts are unbiased, which real posts contradict (bench/RESULTS.md,
"Feed audit").
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

from givetake.errors import DataError

REFERENCE = "count_bias.json"


@dataclass(frozen=True)
class CountBias:
    """One label's count bias (labelled share minus counted share) over real feeds."""

    mean: float  # the average feed's bias
    spread: float  # between-feed standard deviation of the bias (tau)
    mean_se: float  # standard error of ``mean``
    post_variance: float  # variance of (label - flag) for one post: about FP rate + FN rate
    feeds: int  # how many feeds (sources) it was measured on
    posts: int  # labelled posts behind it

    @property
    def df(self) -> int:
        """Degrees of freedom of a prediction interval for a new feed (Higgins et al. 2009: feeds - 2)."""
        return max(self.feeds - 2, 1)


@dataclass(frozen=True)
class CountBiasReference:
    """Per-label :class:`CountBias`, with what it was measured on (one line for reports)."""

    description: str
    labels: dict[str, CountBias]

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "per_label": {n: asdict(b) for n, b in self.labels.items()}}


def post_variance(fp: int, fn: int, rows: int) -> float:
    """Variance of (label - flag) over ``rows`` posts with ``fp`` and ``fn`` errors, never zero.

    Half an error is added to each kind (Jeffreys): a sample with no error does not prove the model
    never errs, and a zero variance would give a zero-width interval.
    """
    a, b = (fp + 0.5) / (rows + 1), (fn + 0.5) / (rows + 1)
    return a + b - (b - a) ** 2


def random_effects(biases: Sequence[float], variances: Sequence[float]) -> tuple[float, float, float]:
    """DerSimonian-Laird: ``(mean, tau^2, se(mean)^2)`` of per-feed biases with known within-feed variances."""
    b, v = np.asarray(biases, float), np.asarray(variances, float)
    if len(b) == 0:
        raise DataError("no feeds to measure a count bias on")
    w = 1 / v
    fixed = float((w * b).sum() / w.sum())
    q = float((w * (b - fixed) ** 2).sum())
    denom = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (len(b) - 1)) / denom) if denom > 0 else 0.0
    w2 = 1 / (v + tau2)
    return float((w2 * b).sum() / w2.sum()), tau2, float(1 / w2.sum())


def measure_count_bias(
    truth: np.ndarray, flagged: np.ndarray, feeds: Sequence[str], labels: Sequence[str], description: str
) -> CountBiasReference:
    """The count bias of each label over the labelled posts, one feed per distinct value of ``feeds``."""
    t, p = np.asarray(truth).astype(float), np.asarray(flagged).astype(float)
    groups = np.asarray(feeds)
    names = sorted(set(groups.tolist()))
    out = {}
    for j, label in enumerate(labels):
        biases, variances, per_post = [], [], []
        for name in names:
            rows = groups == name
            tj, pj = t[rows, j], p[rows, j]
            fp, fn = int(((tj == 0) & (pj == 1)).sum()), int(((tj == 1) & (pj == 0)).sum())
            pv = post_variance(fp, fn, int(rows.sum()))
            biases.append(float((tj - pj).mean()))
            variances.append(pv / rows.sum())
            per_post.append(pv)
        mean, tau2, se2 = random_effects(biases, variances)
        out[label] = CountBias(
            mean=mean,
            spread=math.sqrt(tau2),
            mean_se=math.sqrt(se2),
            post_variance=float(np.mean(per_post)),
            feeds=len(names),
            posts=len(t),
        )
    return CountBiasReference(description, out)


@functools.cache
def _shipped_text() -> str:
    """The shipped reference, read once per process (the server audits many uploads)."""
    return resources.files("givetake.core").joinpath(REFERENCE).read_text(encoding="utf-8")


def load_reference(text: str | None = None) -> CountBiasReference:
    """The shipped reference (``count_bias.json`` beside this module), or one from ``text``."""
    if text is None:
        text = _shipped_text()
    try:
        data = json.loads(text)
        labels = {n: CountBias(**b) for n, b in data["per_label"].items()}
        return CountBiasReference(str(data["description"]), labels)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{REFERENCE}: not a count-bias reference ({exc})") from None


@dataclass(frozen=True)
class FeedBias:
    """A feed's estimated bias for one label, and how sure: what the audit adds to the count."""

    mean: float
    variance: float  # of the account's bias (not yet the noise of its own posts)
    post_variance: float  # per post, for the noise of a feed of n posts: post_variance / n
    df: float  # of the Student t the interval is drawn from (inf: normal)
    corrected: bool  # False: nothing known about this label's bias on real posts


def feed_bias(prior: CountBias | None, sample: tuple[int, int, int] | None) -> FeedBias:
    """The bias of one label in a feed, from the reference (``prior``) and the user's labelled sample.

    ``sample`` is ``(fp, fn, rows)`` from ``givetake evaluate`` on the user's own posts. With both,
    the sample's bias and the reference are weighed by their variances; with one, it is used alone.
    """
    if sample is not None and sample[2] > 0:
        fp, fn, rows = sample
        pv = post_variance(fp, fn, rows)
        measured, noise = (fn - fp) / rows, pv / rows
        if prior is None:
            return FeedBias(measured, noise, pv, max(rows - 1, 1), True)
        spread2 = prior.spread**2 + prior.mean_se**2
        weight = spread2 / (spread2 + noise)
        mean = prior.mean + weight * (measured - prior.mean)
        return FeedBias(mean, spread2 * noise / (spread2 + noise), pv, prior.df, True)
    if prior is None:
        return FeedBias(0.0, 0.0, 0.0, math.inf, False)
    return FeedBias(prior.mean, prior.spread**2 + prior.mean_se**2, prior.post_variance, prior.df, True)
