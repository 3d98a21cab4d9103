"""Read the posts of one or many accounts for an audit, and score those not scored yet.

Inputs: an X/Twitter archive (``tweets.js``), a LinkedIn export (``Shares.csv``), or CSV, JSONL or
Parquet with one or many accounts, possibly already scored by ``givetake score`` (then its
``score_<label>`` columns and ``labels`` are used as they are). The text, author and time columns
are found by name (the options override): a file without an author column is one account, named
after the file.
"""

from __future__ import annotations

import email.utils
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from givetake.core.classifier import text_problem
from givetake.core.error_rates import AUTO, ErrorRates, load_error_rates
from givetake.core.records import input_format, iter_records
from givetake.errors import DataError
from givetake.serving.audit import DEFAULT_RULE, RULES, AccountPosts, audit, finite
from givetake.serving.report import render_html

TEXT_COLUMNS = ("text", "full_text", "ShareCommentary", "content", "post", "body", "message", "tweet")
AUTHOR_COLUMNS = ("author", "username", "screen_name", "user", "account", "author_id", "handle", "user_name")
TIME_COLUMNS = ("created_at", "date", "Date", "time", "timestamp", "tweet_created", "created", "posted_at", "datetime")
SCORE_CHUNK = 256
_TWITTER_TIME = "%a %b %d %H:%M:%S %z %Y"


class Scorer(Protocol):
    """What the audit needs from a model: a Predictor, or the server's engine threads."""

    @property
    def labels(self) -> list[str]: ...

    def predict(self, texts: list[str]) -> list[dict[str, Any]]: ...


@dataclass
class ReadSummary:
    """What was read: rows, rows without usable text (skipped), already scored, scored now."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    prescored: int = 0
    scored: int = 0
    undated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "rows": self.rows,
            "skipped": self.skipped,
            "skipped_examples": self.skipped_examples,
            "already_scored": self.prescored,
            "scored_now": self.scored,
            "undated": self.undated,
        }


def parse_time(value: Any) -> datetime | None:
    """A post's time in UTC from ISO text, X's ``Wed Oct 10 20:19:24 +0000 2018``, e-mail style
    dates, epoch seconds or milliseconds, or a datetime; None when it is none of these."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:
            return None
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        raw = value.strip()
        if raw.lstrip("-").replace(".", "", 1).isdigit():
            return parse_time(float(raw))
        try:
            t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            try:
                t = datetime.strptime(raw, _TWITTER_TIME)
            except ValueError:
                try:
                    t = email.utils.parsedate_to_datetime(raw)
                except (TypeError, ValueError, IndexError):
                    return None
    else:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _pick(names: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path) -> str | None:
    if wanted:
        if wanted not in names:
            raise DataError(f"{path}: no {what} column {wanted!r}; columns are: {', '.join(map(str, names[:30]))}")
        return wanted
    return next((c for c in candidates if c in names), None)


def _predicted_labels(rec: dict[str, Any], labels: list[str], thresholds: dict[str, float] | None) -> list[int] | None:
    """0/1 per label from a scored row's ``labels`` (list or ``a|b``), else its scores against thresholds."""
    got = rec.get("labels")
    if isinstance(got, str) and (got == "" or "|" in got or got in labels):
        names = set(got.split("|")) - {""}
    elif isinstance(got, (list, tuple)) and all(isinstance(x, str) for x in got):
        names = set(got)
    elif thresholds is not None:
        return [int(float(rec[f"score_{n}"]) >= thresholds[n]) for n in labels]
    else:
        return None
    return [int(n in names) for n in labels]


def read_posts(
    paths: Sequence[str | Path],
    scorer: Scorer,
    thresholds: dict[str, float] | None = None,
    text_column: str | None = None,
    author_column: str | None = None,
    time_column: str | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> tuple[list[AccountPosts], ReadSummary]:
    """Every account's posts from ``paths``, scored (posts already scored keep their scores).

    ``names`` are the files' names as the user knows them (the server saves uploads under others):
    they name a file's account when it has no author column, and they stand for the paths in messages.
    """
    labels = list(scorer.labels)
    summary = ReadSummary()
    accounts: dict[str, dict[str, list[Any]]] = {}
    pending: list[tuple[str, int, str]] = []  # (account, index, text) still to score
    for k, p in enumerate(map(Path, paths)):
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        kind = input_format(p)
        shown = names[k] if names else p.name
        summary.files.append(shown)
        columns: list[str] | None = None
        text_col = author_col = time_col = None
        scored_cols = False
        default_account = p.parent.parent.name if p.name == "tweets.js" and p.parent.name == "data" else shown
        for row, rec, problem in iter_records(p, kind):
            summary.rows += 1
            if rec is None:
                summary.skipped += 1
                if len(summary.skipped_examples) < 5:
                    summary.skipped_examples.append(f"{shown} row {row}: {problem}")
                continue
            if columns is None:  # columns are chosen on the first row of each file
                columns = list(rec)
                text_col = _pick(columns, text_column, TEXT_COLUMNS, "text", p)
                if text_col is None:
                    raise DataError(
                        f"{p}: no text column ({', '.join(TEXT_COLUMNS[:4])}...); columns are: "
                        f"{', '.join(map(str, columns[:30]))}; pass --text-column"
                    )
                author_col = _pick(columns, author_column, AUTHOR_COLUMNS, "author", p)
                time_col = _pick(columns, time_column, TIME_COLUMNS, "time", p)
                scored_cols = all(f"score_{n}" in columns for n in labels)
            assert text_col is not None
            problem = text_problem(rec, text_col)
            if problem is not None:
                summary.skipped += 1
                if len(summary.skipped_examples) < 5:
                    summary.skipped_examples.append(f"{shown} row {row}: {problem}")
                continue
            name = str(rec.get(author_col) or "(no author)") if author_col else default_account
            acc = accounts.setdefault(name, {"texts": [], "times": [], "pred": [], "scores": []})
            acc["texts"].append(rec[text_col])
            t = parse_time(rec.get(time_col)) if time_col else None
            summary.undated += t is None
            acc["times"].append(t)
            pred, scores = None, []
            if scored_cols:
                try:
                    scores = [float(rec[f"score_{n}"]) for n in labels]
                    pred = _predicted_labels(rec, labels, thresholds)
                except (TypeError, ValueError):
                    pred = None
            if pred is None:
                acc["pred"].append(None)
                acc["scores"].append(None)
                pending.append((name, len(acc["texts"]) - 1, rec[text_col]))
            else:
                summary.prescored += 1
                acc["pred"].append(pred)
                acc["scores"].append(scores)
    if not accounts:
        raise DataError(f"{', '.join(map(str, paths))}: no post with usable text")
    _score(pending, accounts, scorer, labels, progress)
    summary.scored = len(pending)
    out = [
        AccountPosts(
            name=name,
            texts=a["texts"],
            times=a["times"],
            predicted=np.asarray(a["pred"], dtype=np.int8).reshape(-1, len(labels)),
            scores=np.asarray(a["scores"], dtype=np.float64).reshape(-1, len(labels)),
        )
        for name, a in accounts.items()
    ]
    return out, summary


def _score(
    pending: list[tuple[str, int, str]],
    accounts: dict[str, dict[str, list[Any]]],
    scorer: Scorer,
    labels: list[str],
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=len(pending), unit=" posts", desc="scoring", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(pending), SCORE_CHUNK):
            chunk = pending[start : start + SCORE_CHUNK]
            for (name, i, _), pred in zip(chunk, scorer.predict([t for _, _, t in chunk])):
                acc = accounts[name]
                acc["pred"][i] = [int(n in pred["labels"]) for n in labels]
                acc["scores"][i] = [float(pred["scores"][n]) for n in labels]
            bar.update(len(chunk))


def dumps(obj: Any) -> str:
    """Strict JSON (NaN as null)."""
    return json.dumps(finite(obj), indent=2, ensure_ascii=False)


def audit_files(
    paths: Sequence[str | Path],
    scorer: Scorer,
    sides: dict[str, str],
    errors: ErrorRates | None,
    model_name: str,
    rule: str = DEFAULT_RULE,
    thresholds: dict[str, float] | None = None,
    text_column: str | None = None,
    author_column: str | None = None,
    time_column: str | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Read, score and audit ``paths``: the report's figures as one JSON-ready dict (``report.json``)."""
    if rule not in RULES:
        raise DataError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    accounts, summary = read_posts(
        paths, scorer, thresholds, text_column, author_column, time_column, progress=progress, names=names
    )
    report = audit(accounts, scorer.labels, sides, errors, rule)
    report["model"] = {"name": model_name}
    report["input"] = summary.to_dict()
    report["made"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return finite(report)


def model_context(predictor: Any, error_source: str = AUTO) -> tuple[dict[str, str], ErrorRates, dict[str, float]]:
    """A loaded predictor's label sides, error rates (from ``error_source``) and thresholds."""
    sides = {spec.name: spec.side for spec in predictor.schema.labels}
    errors = load_error_rates(predictor.model_dir, list(predictor.labels), error_source)
    return sides, errors, dict(predictor.thresholds)


def write_report(report: dict[str, Any], output: Path) -> tuple[Path, Path]:
    """Write the HTML report to ``output`` and its figures to ``report.json`` beside it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    json_path = output.with_name("report.json") if output.name != "report.json" else output.with_suffix(".data.json")
    output.write_text(render_html(report), encoding="utf-8")
    json_path.write_text(dumps(report) + "\n", encoding="utf-8")
    return output, json_path
