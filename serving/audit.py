"""Feed audit arithmetic: is an account giving or taking?

Given each post's predicted labels, this works out per account: the share of posts with each
label, counted and then corrected for the model's known errors, with an interval; the give/take
balance; the verdict against a content-mix rule (80/20, thirds, 5-3-2); a timeline of the take
share; how often the account answers customers; and the examples that take most and give best.
Everything comes back as plain JSON-ready dicts (``report.json``); :mod:`givetake.serving.report`
draws them.

Correction: a feed's count of a label is off by its false negatives minus its false positives,
and by how much differs from feed to feed. :mod:`givetake.core.count_bias` measures that bias on
real labelled posts, source by source, as a mean and a between-feed spread (a random-effects
model); the audit adds the mean to the count and, when the user has labelled a sample of their own
posts (``givetake evaluate``), moves it toward that sample's own bias, as far as the sample's size
warrants. Why not adjusted classify-and-count with the validation split's TPR/FPR, the first
design: on the real gold dev set it was no closer than the raw count (the validation split says
the model barely errs), and with rates from a small labelled sample it was farther (dividing by
TPR - FPR amplifies their noise). bench/RESULTS.md ("Feed audit") has the comparison.

Interval: a prediction interval for this feed: the uncertainty of the feed's bias (the spread
between feeds, or what a labelled sample leaves of it) plus the noise of the feed's own posts
(per-post error variance / posts), drawn from a Student t with the reference's feeds - 2 degrees of
freedom; the 2.5th and 97.5th percentiles of the draws are the 95% interval, so a short feed gets a
wide one. A label the reference does not know (a new label) with no labelled sample is reported as
counted, with a binomial interval. tests/test_audit.py checks the coverage in a simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from givetake.core.count_bias import CountBiasReference, FeedBias, feed_bias, load_reference
from givetake.core.error_rates import VALIDATION, ErrorRates

LEVEL = 0.95
# Bootstrap draws per share; a timeline point, one of many, gets fewer. 2000 put the 2.5th and 97.5th
# percentiles within about half a point of their limit; an audit of 2000 accounts stays well under a minute.
DRAWS = 2000
PERIOD_DRAWS = 500
EXAMPLES = 5
# A timeline point needs this many posts; fewer would draw an interval from 0 to 1.
MIN_PERIOD_POSTS = 3


# ----------------------------------------------------------------------------------------- shares


def feed_biases(
    labels: Sequence[str], errors: ErrorRates | None, reference: CountBiasReference | None
) -> dict[str, FeedBias]:
    """Each label's estimated bias in a feed: the reference, updated with the user's labelled sample.

    ``errors`` from the validation split are not a sample of the user's posts and are not used.
    """
    sample = errors if errors is not None and errors.source != VALIDATION else None
    out = {}
    for name in labels:
        prior = reference.labels.get(name) if reference else None
        e = sample.labels.get(name) if sample else None
        out[name] = feed_bias(prior, (e.fp, e.fn, e.tp + e.fp + e.fn + e.tn) if e else None)
    return out


def corrected_share(count: int, n: int, bias: FeedBias | None) -> float:
    """The share behind ``count`` flagged posts of ``n``: the count plus the feed's estimated bias."""
    raw = count / n if n else float("nan")
    if bias is None or not bias.corrected or not n:
        return raw
    return float(min(max(raw + bias.mean, 0.0), 1.0))


def share_draws(count: int, n: int, bias: FeedBias | None, rng: np.random.Generator, draws: int = DRAWS) -> np.ndarray:
    """Draws of the feed's share, for intervals (binomial draws of the count when ``bias`` knows nothing)."""
    if bias is None or not bias.corrected or not n:
        return rng.beta(count + 0.5, n - count + 0.5, draws)
    sd = math.sqrt(bias.variance + bias.post_variance / n)
    noise = rng.standard_t(bias.df, draws) if math.isfinite(bias.df) else rng.standard_normal(draws)
    return np.clip(count / n + bias.mean + sd * noise, 0.0, 1.0)


def interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap draws."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Bucket:
    """Labels counted together: a post's share of a bucket is the sum of its labels' shares."""

    name: str
    title: str  # as a sentence says it: "pitch or ask"
    labels: tuple[str, ...]


def buckets(labels: Sequence[str], sides: dict[str, str]) -> dict[str, Bucket]:
    """The buckets the rules speak of, from the label schema's give/take sides."""
    take = tuple(n for n in labels if sides.get(n) == "take")
    give = tuple(n for n in labels if sides.get(n) == "give")
    out = {
        "take": Bucket("take", " or ".join(take) or "take", take),
        "give": Bucket("give", "give", give),
    }
    if "helpful_share" in labels:
        out["share"] = Bucket("share", "shares others' content or help", ("helpful_share",))
    conversation = tuple(n for n in ("conversation_starter", "customer_service_reply") if n in labels)
    if conversation:
        out["conversation"] = Bucket("conversation", "converses or answers", conversation)
    return out


# ------------------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Target:
    """One part of a rule: a bucket's share at most (``max``) or at least (``min``) ``value``."""

    bucket: str
    op: str
    value: float
    says: str  # the rule's own words for it


@dataclass(frozen=True)
class Rule:
    """A content-mix rule; its first target is the take limit that answers "giving or taking?"."""

    name: str
    title: str
    summary: str
    targets: tuple[Target, ...]


RULES: dict[str, Rule] = {
    "80-20": Rule(
        "80-20",
        "the 80/20 rule",
        "at most one post in five takes (promotes or asks); the other four give",
        (Target("take", "max", 0.20, "at most one post in five takes"),),
    ),
    "thirds": Rule(
        "thirds",
        "the rule of thirds",
        "a third promotion, a third others' content, a third conversation",
        (
            Target("take", "max", 1 / 3, "at most a third promotes"),
            Target("share", "min", 1 / 3, "a third shares others' content"),
            Target("conversation", "min", 1 / 3, "a third is conversation"),
        ),
    ),
    "5-3-2": Rule(
        "5-3-2",
        "the 5-3-2 rule",
        "of ten posts, five share others' content, three are your own, two are personal",
        (
            Target("take", "max", 0.30, "at most three in ten are your own"),
            Target("share", "min", 0.50, "five in ten share others' content"),
            Target("conversation", "min", 0.20, "two in ten are personal, conversation"),
        ),
    ),
}
DEFAULT_RULE = "80-20"


def pct(x: float) -> str:
    """A share as a whole percentage ("0.5%" below 1%)."""
    if x != x:  # nan
        return "n/a"
    return f"{x * 100:.1f}%" if 0 < x < 0.01 else f"{x * 100:.0f}%"


def verdict(take: dict[str, Any], rule: Rule, take_title: str) -> dict[str, Any]:
    """Giving, taking or borderline against the rule's take limit, and the sentence that says it.

    Taking when the whole interval is over the limit, giving when it is all within, borderline
    when the limit lies inside the interval (the posts cannot tell which side the account is on).
    """
    limit = rule.targets[0].value
    share, low, high = take["share"], take["low"], take["high"]
    span = f"{pct(share)} of posts {take_title} (95% interval {pct(low)}-{pct(high)})"
    if low > limit:
        status = "taking"
        times = share / limit if limit else float("inf")
        sentence = f"Taking. {span}, over the {pct(limit)} {rule.title} allows"
        sentence += f": {times:.1f} times the limit." if times >= 1.5 else "."
    elif high <= limit:
        status = "giving"
        sentence = f"Giving. {span}, within the {pct(limit)} {rule.title} allows."
    else:
        status = "borderline"
        side = "over" if share > limit else "within"
        sentence = (
            f"Borderline. {span}: {rule.title}'s limit of {pct(limit)} lies inside the interval; "
            f"the best estimate is {side} it."
        )
    return {"status": status, "sentence": sentence, "limit": limit}


def check_targets(rule: Rule, bucket_shares: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of the rule with the account's share and whether it is met."""
    out = []
    for t in rule.targets:
        got = bucket_shares.get(t.bucket)
        if got is None:
            continue
        share = got["share"]
        met = share <= t.value if t.op == "max" else share >= t.value
        clear = got["high"] <= t.value if t.op == "max" else got["low"] >= t.value
        missed_clearly = got["low"] > t.value if t.op == "max" else got["high"] < t.value
        out.append(
            {
                "bucket": t.bucket,
                "op": t.op,
                "target": t.value,
                "says": t.says,
                "share": share,
                "low": got["low"],
                "high": got["high"],
                "met": bool(met),
                "certain": bool(clear or missed_clearly),
            }
        )
    return out


# -------------------------------------------------------------------------------------- accounts


@dataclass
class AccountPosts:
    """One account's scored posts: predictions (n x labels, 0/1) and scores, in the same order."""

    name: str
    texts: list[str]
    times: list[datetime | None]
    predicted: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def label_shares(
    predicted: np.ndarray,
    labels: Sequence[str],
    biases: dict[str, FeedBias] | None,
    rng: np.random.Generator,
    draws: int = DRAWS,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Per label: count, raw share, corrected share and interval; and the draws behind the interval."""
    n = len(predicted)
    out, all_draws = {}, {}
    for j, name in enumerate(labels):
        count = int(predicted[:, j].sum()) if n else 0
        b = biases.get(name) if biases else None
        d = share_draws(count, n, b, rng, draws)
        low, high = interval(d)
        out[name] = {
            "count": count,
            "posts": n,
            "raw": count / n if n else float("nan"),
            "share": corrected_share(count, n, b),
            "low": low,
            "high": high,
            "corrected": bool(b and b.corrected),
            "bias": b.mean if b and b.corrected else None,
        }
        all_draws[name] = d
    return out, all_draws


def bucket_shares(
    shares: dict[str, dict[str, Any]], draws: dict[str, np.ndarray], groups: dict[str, Bucket]
) -> dict[str, dict[str, Any]]:
    """Each bucket's share: the sum of its labels' shares (capped at 1), interval from summed draws."""
    out = {}
    for name, b in groups.items():
        if not b.labels:
            continue
        total = np.minimum(sum(draws[n] for n in b.labels), 1.0)
        low, high = interval(np.asarray(total))
        out[name] = {
            "labels": list(b.labels),
            "title": b.title,
            "raw": min(sum(shares[n]["raw"] for n in b.labels), 1.0),
            "share": min(sum(shares[n]["share"] for n in b.labels), 1.0),
            "low": low,
            "high": high,
        }
    return out


def balance(draws: dict[str, np.ndarray], groups: dict[str, Bucket], shares: dict[str, dict[str, Any]]) -> dict:
    """What part of what the feed does gives: give / (give + take), with its interval."""
    give, take = groups["give"].labels, groups["take"].labels
    g = sum(shares[n]["share"] for n in give)
    t = sum(shares[n]["share"] for n in take)
    gd = sum((draws[n] for n in give), np.zeros(1))
    td = sum((draws[n] for n in take), np.zeros(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_draws = np.where(gd + td > 0, gd / (gd + td), 0.5)
    low, high = interval(np.asarray(ratio_draws))
    return {
        "give": float(g),
        "take": float(t),
        "give_part": float(g / (g + t)) if g + t > 0 else None,
        "low": low,
        "high": high,
    }


def period_start(t: datetime, unit: str) -> datetime:
    """The start of ``t``'s week (Monday) or month, in UTC."""
    t = t.astimezone(UTC)
    day = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if unit == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def timeline_unit(times: Sequence[datetime]) -> str:
    """Weeks for a feed of up to about four months, months beyond."""
    span = max(times) - min(times)
    return "week" if span <= timedelta(days=120) else "month"


def timeline(
    posts: AccountPosts,
    labels: Sequence[str],
    take_labels: Sequence[str],
    biases: dict[str, FeedBias] | None,
    rng: np.random.Generator,
) -> dict[str, Any] | None:
    """Take share per week or month, corrected, with counts; None when no post has a time."""
    dated = [(t, i) for i, t in enumerate(posts.times) if t is not None]
    if not dated:
        return None
    unit = timeline_unit([t for t, _ in dated])
    groups: dict[datetime, list[int]] = {}
    for t, i in dated:
        groups.setdefault(period_start(t, unit), []).append(i)
    idx = [labels.index(n) for n in take_labels]
    points = []
    for start in sorted(groups):
        rows = groups[start]
        pred = posts.predicted[rows]
        shares, draws = label_shares(pred[:, idx], list(take_labels), biases, rng, draws=PERIOD_DRAWS)
        total = np.minimum(sum(draws[n] for n in take_labels), 1.0)
        low, high = interval(np.asarray(total))
        points.append(
            {
                "start": start.date().isoformat(),
                "posts": len(rows),
                "take_count": int(pred[:, idx].any(axis=1).sum()),
                "raw": min(sum(shares[n]["raw"] for n in take_labels), 1.0),
                "share": min(sum(shares[n]["share"] for n in take_labels), 1.0),
                "low": low,
                "high": high,
                "enough": len(rows) >= MIN_PERIOD_POSTS,
            }
        )
    return {"unit": unit, "undated": len(posts) - len(dated), "points": points}


def examples(
    posts: AccountPosts, labels: Sequence[str], side_labels: Sequence[str], exclude: Sequence[str], k: int = EXAMPLES
) -> list[dict[str, Any]]:
    """The ``k`` posts with the highest score on ``side_labels`` among those predicted one of them
    (and, for giving examples, none of ``exclude``)."""
    idx = [labels.index(n) for n in side_labels]
    ex = [labels.index(n) for n in exclude]
    if not idx or not len(posts):
        return []
    hit: np.ndarray = np.asarray(posts.predicted[:, idx].any(axis=1))
    if ex:
        hit &= ~np.asarray(posts.predicted[:, ex].any(axis=1))
    top = posts.scores[:, idx].max(axis=1)
    order = [int(i) for i in np.argsort(-top, kind="stable") if hit[i]][:k]
    return [
        {
            "text": posts.texts[i],
            "time": t.isoformat() if (t := posts.times[i]) else None,
            "labels": [labels[int(j)] for j in np.flatnonzero(posts.predicted[i])],
            "scores": {labels[j]: round(float(posts.scores[i, j]), 3) for j in range(len(labels))},
        }
        for i in order
    ]


def audit_account(
    posts: AccountPosts,
    labels: Sequence[str],
    sides: dict[str, str],
    biases: dict[str, FeedBias] | None,
    rule: Rule,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of one account's audit, JSON-ready."""
    rng = np.random.default_rng(seed)
    groups = buckets(labels, sides)
    shares, draws = label_shares(posts.predicted, labels, biases, rng)
    grouped = bucket_shares(shares, draws, groups)
    times = [t for t in posts.times if t is not None]
    take_labels = list(groups["take"].labels)
    give_labels = list(groups["give"].labels)
    result: dict[str, Any] = {
        "account": posts.name,
        "posts": len(posts),
        "period": {
            "start": min(times).isoformat() if times else None,
            "end": max(times).isoformat() if times else None,
            "dated": len(times),
        },
        "labels": shares,
        # Raw: posts with no label at all neither give nor take (news, chatter); not corrected.
        "unlabelled": float((posts.predicted.sum(axis=1) == 0).mean()) if len(posts) else float("nan"),
        "buckets": grouped,
        "balance": balance(draws, groups, shares),
        "verdict": verdict(grouped["take"], rule, groups["take"].title),
        "targets": check_targets(rule, grouped),
        "timeline": timeline(posts, labels, take_labels, biases, rng),
        "examples": {
            "take": examples(posts, labels, take_labels, []),
            "give": examples(posts, labels, give_labels, take_labels),
        },
    }
    if "customer_service_reply" in shares:
        csr = shares["customer_service_reply"]
        result["customers"] = {
            "share": csr["share"],
            "low": csr["low"],
            "high": csr["high"],
            "count": csr["count"],
            "sentence": (
                f"Answers customers in {pct(csr['share'])} of posts "
                f"(interval {pct(csr['low'])}-{pct(csr['high'])}; {csr['count']} posts flagged)."
            ),
        }
    return result


def correction_sentence(errors: ErrorRates | None, reference: CountBiasReference, biases: dict[str, FeedBias]) -> str:
    """One sentence on what corrected the counts, for the report and the CLI."""
    known = [n for n, b in biases.items() if b.corrected]
    if not known:
        return "none: the counts are shown as counted (no count bias known for these labels)"
    said = f"count bias on real posts ({reference.description})"
    if errors is not None and errors.source != VALIDATION:
        said += f", updated with {errors.description}"
    missing = [n for n in biases if n not in known]
    if missing:
        said += f"; not corrected: {', '.join(missing)}"
    return said


def audit(
    accounts: Sequence[AccountPosts],
    labels: Sequence[str],
    sides: dict[str, str],
    errors: ErrorRates | None,
    rule_name: str = DEFAULT_RULE,
    seed: int = 0,
    reference: CountBiasReference | None = None,
) -> dict[str, Any]:
    """The audit of every account, ranked from most giving to most taking, plus the rule used.

    ``reference`` is the count bias on real posts (default: the one shipped, :mod:`givetake.core.count_bias`);
    ``errors`` from ``givetake evaluate`` on the user's own posts refine it, the validation split's do not.
    """
    rule = RULES[rule_name]
    if reference is None:
        reference = load_reference()
    biases = feed_biases(labels, errors, reference)
    results = [audit_account(a, labels, sides, biases, rule, seed + i) for i, a in enumerate(accounts)]
    ranking = sorted(
        results, key=lambda r: (r["buckets"]["take"]["share"], -r["posts"], r["account"])
    )  # most giving first
    return {
        "rule": {
            "name": rule.name,
            "title": rule.title,
            "summary": rule.summary,
            "targets": [{"bucket": t.bucket, "op": t.op, "value": t.value, "says": t.says} for t in rule.targets],
        },
        "labels": list(labels),
        "sides": {n: sides.get(n) for n in labels},
        "error_rates": errors.to_dict() if errors else None,
        "count_bias": reference.to_dict(),
        "correction": correction_sentence(errors, reference, biases),
        "level": LEVEL,
        "accounts": results,
        "ranking": [
            {
                "account": r["account"],
                "posts": r["posts"],
                "take": r["buckets"]["take"]["share"],
                "low": r["buckets"]["take"]["low"],
                "high": r["buckets"]["take"]["high"],
                "status": r["verdict"]["status"],
            }
            for r in ranking
        ],
    }


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
