"""Scoring in a Unix pipe: JSONL in (``-`` is stdin), JSONL out (``-`` is stdout), one row per input row.

``zcat posts.jsonl.gz | givetake score - -o - | jq``: every input row comes out once, in order, as
it came in plus ``labels``, ``score_<label>`` and ``error``; a row without usable text keeps its
place with empty predictions and the reason in ``error`` (a pipe has no side file to put it in).
Each chunk is flushed as soon as it is scored, so a consumer sees rows while the input still flows.
Nothing is kept to resume from: a pipe cannot be re-read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from itertools import islice
from typing import IO, Any

from givetake.core.classifier import OutputColumns, text_problem
from givetake.core.records import Record
from givetake.serving.archive import check_text_column
from givetake.serving.writers import ScoredRow, added_values


def score_stream(
    records: Iterable[Record],
    out: IO[str],
    predictor: Any,
    text_column: str = "text",
    chunk_size: int = 512,
    on_chunk: Any = None,
) -> tuple[int, int, int, float]:
    """Score ``records`` chunk by chunk into ``out`` as JSON lines; (read, scored, errors, seconds).

    ``predictor`` is a :class:`~givetake.serving.score.Scorer`; ``on_chunk(n)`` is called after each
    chunk (a progress bar). Open ``out`` with ``errors="backslashreplace"``: a lone surrogate (JSON
    input may escape one) is then written back as its JSON escape, not a crash.
    """
    started = time.monotonic()
    cols = OutputColumns(predictor.labels, inline_errors=True)
    read = errors = 0
    checked = False
    it = iter(records)
    while chunk := list(islice(it, chunk_size)):
        rows: list[ScoredRow] = []
        texts: list[str] = []
        for row, rec, problem in chunk:
            if rec is not None and problem is None:
                problem = text_problem(rec, text_column)
            if rec is None:  # nothing of the row to show: say which line it was
                problem = f"line {row}: {problem}"
            rows.append(ScoredRow(row, rec or {}, None, problem))
            if problem is None:
                texts.append(rec[text_column])  # type: ignore[index]
        if not checked:
            check_text_column(chunk, text_column, "stdin")
            checked = True
        predictions = iter(predictor.predict(texts) if texts else [])
        lines = []
        for r in rows:
            if r.error is None:
                r.prediction = next(predictions)
            d = cols.input_part(r.record)
            d.update(added_values(cols, r, csv_style=False))
            lines.append(json.dumps(d, ensure_ascii=False, default=str) + "\n")
        out.write("".join(lines))
        out.flush()
        read += len(chunk)
        errors += sum(r.error is not None for r in rows)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return read, read - errors, errors, time.monotonic() - started
