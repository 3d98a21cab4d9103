"""Offline archive scoring: label every post of a CSV, JSONL, Parquet or X/Twitter ``tweets.js`` file.

The input is read and scored in chunks, so memory stays flat whatever the file size. The output
keeps every input column and adds ``labels`` (a ``|``-joined string in CSV, a list in JSONL and
Parquet) and one ``score_<label>`` column per label. Rows without usable text are written to
``OUTPUT.errors.jsonl`` with their row number and the reason, so rows read = scored + errors.

After each chunk the progress file (:mod:`givetake.serving.resume`) is replaced atomically, so
``resume=True`` carries on from the last commit. The writers are in :mod:`givetake.serving.writers`;
paths and formats in :mod:`givetake.serving.archive`; the Ray Data runner in
:mod:`givetake.serving.ray_runner`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from givetake.core.classifier import OutputColumns, text_problem
from givetake.core.records import Record, iter_records
from givetake.serving.archive import (
    ScoreError,
    check_paths,
    check_text_column,
    output_format,
    output_names,
    parquet_rows,
    side_paths,
)
from givetake.serving.resume import State, check_resume, read_state, write_state
from givetake.serving.writers import ParquetParts, ScoredRow, TextWriter

__all__ = [
    "ScoreError",
    "ScoreSummary",
    "Scorer",
    "check_paths",
    "output_format",
    "score_file",
    "score_files",
    "side_paths",
]

DEFAULT_CHUNK_SIZE = 512


class Scorer(Protocol):
    """What scoring needs from a model: :class:`serving.predictor.Predictor` or the HTTP service."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def model_dir(self) -> Path: ...

    def predict(self, texts: list[str]) -> list[dict[str, Any]]: ...


@dataclass
class ScoreSummary:
    """What a scoring run did; ``read == scored + errors`` always holds."""

    read: int
    scored: int
    errors: int
    output: Path
    errors_path: Path | None
    seconds: float
    resumed_from: int = 0
    files: int | None = None  # several inputs: how many (``output`` is then their folder)

    def line(self) -> str:
        """The closing summary printed by ``givetake score``."""
        rate = (self.read - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0
        text = f"rows read: {self.read}  scored: {self.scored}  errors: {self.errors}"
        if self.resumed_from:
            text += f"  (resumed after row {self.resumed_from})"
        if self.files is not None:
            text += f"\nwrote {self.output} from {self.files} input file{'s' if self.files != 1 else ''}"
            if self.errors and self.errors_path is None:
                text += " (rows without usable text in <output>.errors.jsonl beside each output)"
        else:
            text += f"\nwrote {self.output}"
        if self.errors_path is not None:
            text += f" and {self.errors_path}"
        return text + f" in {self.seconds:.1f} s ({rate:.0f} posts/s)"


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def _csv_header(path: Path, kind: str, cols: OutputColumns, chunk_size: int) -> list[str]:
    """Input columns for CSV output: the CSV header, the Parquet schema, or every key seen in JSON.

    JSON records may differ in their keys, so a JSON input is read once just for its key set
    (cheap next to scoring) to give the CSV one header.
    """
    if kind == "csv":
        csv.field_size_limit(2**31 - 1)
        with path.open(newline="", encoding="utf-8-sig") as fh:
            names = next(csv.reader(fh), [])
    elif kind == "parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    else:
        seen: dict[str, None] = {}
        for _, rec, _ in iter_records(path, kind, chunk_size):
            if rec is not None:
                seen.update(dict.fromkeys(rec))
        names = list(seen)
    return [cols.rename(n) for n in names] + cols.added


def score_file(
    input_path: str | Path,
    output: str | Path,
    predictor: Scorer,
    text_column: str | None = None,
    resume: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    inline_errors: bool = False,
    progress: bool = True,
) -> ScoreSummary:
    """Score every row of ``input_path`` with ``predictor`` and write ``output``.

    ``text_column`` defaults to ``text`` (``full_text`` for tweets.js). With ``inline_errors``
    rows without usable text stay in the output with empty predictions and an ``error`` column
    (used by the HTTP task, which returns one file); otherwise they go to ``OUTPUT.errors.jsonl``.
    Raises :class:`ScoreError` for problems the user must fix (the message says what to do).
    """
    started = time.monotonic()
    src, dst = Path(input_path), Path(output)
    if chunk_size < 1:
        raise ScoreError(f"chunk size must be at least 1, got {chunk_size}")
    in_kind, out_kind = check_paths(src, dst)
    column = text_column or ("full_text" if in_kind == "tweets" else "text")
    paths = side_paths(dst)
    cols = OutputColumns(predictor.labels, inline_errors)
    stat = src.stat()
    fresh = State(
        input=str(src.resolve()),
        input_size=stat.st_size,
        input_mtime_ns=stat.st_mtime_ns,
        output_format=out_kind,
        text_column=column,
        model=str(predictor.model_dir),
        inline_errors=inline_errors,
    )

    if resume and paths["state"].is_file():
        state = read_state(paths["state"])
        check_resume(state, fresh, dst)
    elif resume and dst.exists():
        raise ScoreError(
            f"{dst} has no progress file {paths['state'].name}: that run finished (or was not "
            "started by givetake score); nothing to resume; drop --resume to score again"
        )
    else:
        state = fresh
        for stale in (paths["state"], paths["errors"]):
            stale.unlink(missing_ok=True)
        shutil.rmtree(paths["parts"], ignore_errors=True)
    resumed_from = state.rows_read
    dst.parent.mkdir(parents=True, exist_ok=True)

    input_schema = None
    if in_kind == "parquet":
        import pyarrow.parquet as pq

        try:
            input_schema = pq.read_schema(src)
        except Exception as exc:
            raise ScoreError(f"{src}: cannot read Parquet ({exc})") from None
        if column not in input_schema.names:
            raise ScoreError(
                f"{src}: no column {column!r}; columns are: {', '.join(input_schema.names)}; pass --text-column"
            )
    if out_kind == "csv" and state.columns is None:
        state.columns = _csv_header(src, in_kind, cols, chunk_size)
        if in_kind == "csv" and column not in state.columns:
            raise ScoreError(
                f"{src}: no column {column!r} in the header; columns are: "
                f"{', '.join(state.columns[: -len(cols.added)])}; pass --text-column"
            )

    writer: TextWriter | ParquetParts
    if out_kind == "parquet":
        writer = ParquetParts(paths["parts"], cols, input_schema, state.parts)
    else:
        writer = TextWriter(dst, out_kind, cols, state.columns, state.output_bytes)
    errors_fh = None
    if not inline_errors:
        errors_fh = paths["errors"].open("r+b" if state.errors_bytes else "wb")
        errors_fh.truncate(state.errors_bytes)
        errors_fh.seek(state.errors_bytes)
    if state.rows_read == 0:
        # Commit the empty start (a CSV header) so an interruption even now leaves a resumable run.
        if isinstance(writer, TextWriter):
            state.output_bytes = writer.commit()
        write_state(paths["state"], state)

    from tqdm.auto import tqdm

    total = parquet_rows(src) if in_kind == "parquet" else None
    bar = tqdm(
        total=total,
        initial=state.rows_read,
        unit=" posts",
        desc=f"scoring {src.name}",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    checked_column = state.rows_read > 0
    try:
        records = islice(iter_records(src, in_kind, chunk_size), state.rows_read, None)
        for chunk in _chunks(records, chunk_size):
            rows: list[ScoredRow] = []
            failed: list[dict[str, Any]] = []
            texts: list[str] = []
            for row, rec, problem in chunk:
                if rec is not None and problem is None:
                    problem = text_problem(rec, column)
                if problem is None:
                    assert rec is not None
                    texts.append(rec[column])
                    rows.append(ScoredRow(row, rec, None))
                else:
                    failed.append({"row": row, "reason": problem})
                    if inline_errors:
                        rows.append(ScoredRow(row, rec or {}, None, problem))
            if not checked_column:
                check_text_column(chunk, column, str(src))
                checked_column = True
            predictions = iter(predictor.predict(texts))
            for r in rows:
                if r.error is None:
                    r.prediction = next(predictions)
            writer.write(rows)
            if errors_fh is not None and failed:
                errors_fh.write("".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failed).encode("utf-8"))
            committed = writer.commit()
            if isinstance(writer, ParquetParts):
                state.parts = committed
            else:
                state.output_bytes = committed
            if errors_fh is not None:
                errors_fh.flush()
                os.fsync(errors_fh.fileno())
                state.errors_bytes = errors_fh.tell()
            state.rows_read += len(chunk)
            state.errors += len(failed)
            state.scored += len(chunk) - len(failed)
            write_state(paths["state"], state)
            bar.update(len(chunk))
    except ScoreError:
        if state.rows_read == 0:  # nothing worth resuming: leave no half-made output behind
            writer.close()
            for leftover in (dst, paths["errors"], paths["state"]):
                leftover.unlink(missing_ok=True)
            shutil.rmtree(paths["parts"], ignore_errors=True)
        raise
    finally:
        bar.close()
        writer.close()
        if errors_fh is not None:
            errors_fh.close()

    if isinstance(writer, ParquetParts):
        writer.merge(dst)
    errors_path: Path | None = paths["errors"]
    if state.errors == 0 and not inline_errors:
        paths["errors"].unlink(missing_ok=True)
        errors_path = None
    elif inline_errors:
        errors_path = None
    paths["state"].unlink(missing_ok=True)
    return ScoreSummary(
        read=state.rows_read,
        scored=state.scored,
        errors=state.errors,
        output=dst,
        errors_path=errors_path,
        seconds=time.monotonic() - started,
        resumed_from=resumed_from,
    )


DONE_FILE = ".givetake-done.json"  # several inputs: the ones finished, with their counts (for --resume)


def score_files(
    inputs: list[Path],
    outdir: str | Path,
    predictor: Scorer,
    out_kind: str | None = None,
    text_column: str | None = None,
    resume: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
) -> ScoreSummary:
    """Score several input files into ``outdir``, one output per input (see :func:`output_names`).

    Each file is scored by :func:`score_file`, with its own errors and progress files; a list of
    the finished ones lets ``resume=True`` skip them and resume the one that was interrupted.
    ``out_kind`` (csv, jsonl, parquet) sets every output's format; None keeps each input's.
    """
    started = time.monotonic()
    dst = Path(outdir)
    if dst.exists() and not dst.is_dir():
        raise ScoreError(f"{dst}: several inputs are written to a folder, and this is a file; choose another -o")
    names = output_names(inputs, dst, out_kind)
    for src, out in names.items():
        check_paths(src, out)
    dst.mkdir(parents=True, exist_ok=True)
    done_path = dst / DONE_FILE
    done: dict[str, dict[str, int]] = {}
    if resume and done_path.is_file():
        done = json.loads(done_path.read_text(encoding="utf-8"))
    elif not resume:
        done_path.unlink(missing_ok=True)
    read = scored = errors = resumed_from = 0
    for src, out in names.items():
        key = str(src.resolve())
        if key not in done:
            was_started = side_paths(out)["state"].is_file()
            summary = score_file(
                src,
                out,
                predictor,
                text_column=text_column,
                resume=resume and was_started,
                chunk_size=chunk_size,
                progress=progress,
            )
            done[key] = {"read": summary.read, "scored": summary.scored, "errors": summary.errors}
            resumed_from += summary.resumed_from
            tmp = done_path.with_name(done_path.name + ".tmp")
            tmp.write_text(json.dumps(done), encoding="utf-8")
            os.replace(tmp, done_path)
        else:
            resumed_from += done[key]["read"]
        read += done[key]["read"]
        scored += done[key]["scored"]
        errors += done[key]["errors"]
    done_path.unlink(missing_ok=True)
    return ScoreSummary(
        read=read,
        scored=scored,
        errors=errors,
        output=dst,
        errors_path=None,
        seconds=time.monotonic() - started,
        resumed_from=resumed_from,
        files=len(names),
    )
