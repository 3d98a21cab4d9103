"""Streaming readers of posts: CSV, JSONL, Parquet and X/Twitter ``tweets.js`` archives.

One reader for every path that reads posts from a file, training data and archive scoring alike.
Each yields ``(row, record, reason)``: ``record`` is a dict of the row's columns, or None when the
row is unusable, with ``reason`` saying why (callers decide whether that is fatal). Files are read
in blocks, so memory stays flat whatever their size. CSV cells are read as the strings they are:
nothing is re-typed on the way, so an id such as ``00123`` keeps its zeros.

Row numbers: CSV data rows (1 = first row after the header), JSONL line numbers, and the
1-based position in a Parquet file or a tweets.js array.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from givetake.errors import DataError

INPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".js": "tweets"}
DEFAULT_BATCH_SIZE = 512
# A tweet object that does not parse after this many buffered characters is malformed, not merely
# split across reads: give up rather than read the rest of the archive into memory.
_MAX_PENDING_CHARS = 64 * 1024 * 1024
_READ_BLOCK = 1024 * 1024
_YTD_PREFIX = re.compile(r"\s*window\.YTD\.[\w.]+\s*=\s*\[")

Record = tuple[int, "dict[str, Any] | None", "str | None"]  # (row number, record, reason it is unusable)


def input_format(path: Path) -> str:
    """``csv``, ``jsonl``, ``parquet`` or ``tweets`` (an X/Twitter archive ``.js`` file), by suffix."""
    kind = INPUT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unsupported input type {path.suffix or '(no suffix)'!r}; "
            "use .csv, .jsonl, .parquet or an X/Twitter archive's tweets.js"
        )
    return kind


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, object, None) per JSON object line, or (line number, None, problem).

    Blank lines are skipped; a line that does not parse, or is not an object, is reported
    with its number instead of stopping the read (callers decide whether that is fatal).
    """
    with Path(path).open(encoding="utf-8") as fh:
        yield from iter_jsonl_lines(fh)


def iter_jsonl_lines(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """:func:`iter_jsonl` on lines already open (``sys.stdin`` in a pipe)."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if isinstance(obj, dict):
            yield lineno, obj, None
        else:
            yield lineno, None, f"a JSON {type(obj).__name__}, not an object"


def _iter_csv(path: Path) -> Iterator[Record]:
    # Posts can be long and the csv module refuses fields over 128 KiB by default.
    csv.field_size_limit(2**31 - 1)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{path}: duplicate column names in the header: {', '.join(dupes)}")
        row = 0
        for values in reader:
            if not values:  # blank line, not a row
                continue
            row += 1
            if len(values) != len(header):
                yield row, None, f"has {len(values)} fields but the header has {len(header)}"
            else:
                yield row, dict(zip(header, values, strict=True)), None


def _iter_parquet(path: Path, batch_size: int) -> Iterator[Record]:
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec, None


def _iter_tweets(path: Path) -> Iterator[Record]:
    """Stream the objects of ``window.YTD.tweets.part0 = [ {...}, ... ]`` without loading the file.

    Each element is ``{"tweet": {...}}``; the inner object is the record (its keys are the columns).
    """
    decoder = json.JSONDecoder()
    with path.open(encoding="utf-8-sig") as fh:
        buf = fh.read(_READ_BLOCK)
        match = _YTD_PREFIX.match(buf)
        if match is None:
            raise DataError(
                f"{path}: not an X/Twitter archive file; expected it to start with 'window.YTD.tweets.part0 = ['"
            )
        pos, index = match.end(), 0

        def refill() -> bool:
            nonlocal buf, pos
            more = fh.read(_READ_BLOCK)
            buf, pos = buf[pos:] + more, 0
            return bool(more)

        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(buf):
                if not refill():
                    raise DataError(f"{path}: ends after tweet {index} without the closing ']'")
                continue
            if buf[pos] == "]":
                return
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if len(buf) - pos > _MAX_PENDING_CHARS or not refill():
                    raise DataError(f"{path}: tweet {index + 1} is not valid JSON ({exc.msg})") from None
                continue
            index += 1
            pos = end
            if pos > _READ_BLOCK:  # keep the buffer small
                buf, pos = buf[pos:], 0
            inner = obj.get("tweet") if isinstance(obj, dict) else None
            if isinstance(inner, dict):
                yield index, inner, None
            elif isinstance(obj, dict):
                yield index, obj, None
            else:
                yield index, None, f"a JSON {type(obj).__name__}, not a tweet object"


def iter_records(path: Path, kind: str, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Record]:
    """``(row, record, reason)`` for every input row; ``record`` is None when the row is unreadable.

    Row numbers: CSV data rows (1 = first row after the header), JSONL line numbers, and the
    1-based position in a Parquet file or a tweets.js array.
    """
    try:
        if kind == "csv":
            yield from _iter_csv(path)
        elif kind == "jsonl":
            yield from iter_jsonl(path)
        elif kind == "parquet":
            yield from _iter_parquet(path, batch_size)
        elif kind == "tweets":
            yield from _iter_tweets(path)
        else:  # pragma: no cover - guarded by input_format
            raise DataError(f"{path}: unknown input format {kind!r}")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a read block)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:
        if type(exc).__module__.startswith("pyarrow"):
            raise DataError(f"{path}: cannot read Parquet ({exc})") from None
        raise
