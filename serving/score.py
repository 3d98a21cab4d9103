"""Offline archive scoring: label every post of a CSV, JSONL, Parquet or X/Twitter ``tweets.js`` file.

The input is read and scored in chunks, so memory stays flat whatever the file size. The output
keeps every input column and adds ``labels`` (a ``|``-joined string in CSV, a list in JSONL and
Parquet) and one ``score_<label>`` column per label. Rows without usable text are written to
``OUTPUT.errors.jsonl`` with their row number and the reason, so rows read = scored + errors.

After each chunk a small progress file (``OUTPUT.progress.json``) is replaced atomically; it
records how many input rows are done and how many bytes of output belong to them, so
``resume=True`` truncates anything written after the last commit and carries on from there.
Parquet cannot be appended to, so Parquet output is written as one part file per chunk under
``OUTPUT.parts/`` and merged into ``OUTPUT`` at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from givetake.core.classifier import OutputColumns, text_problem
from givetake.core.records import Record, input_format, iter_records
from givetake.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
DEFAULT_CHUNK_SIZE = 512
STATE_VERSION = 1


class ScoreError(DataError):
    """An archive cannot be scored as asked; the message names the file and what to do."""


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

    def line(self) -> str:
        """The closing summary printed by ``givetake score``."""
        rate = (self.read - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0
        text = f"rows read: {self.read}  scored: {self.scored}  errors: {self.errors}"
        if self.resumed_from:
            text += f"  (resumed after row {self.resumed_from})"
        text += f"\nwrote {self.output}"
        if self.errors_path is not None:
            text += f" and {self.errors_path}"
        return text + f" in {self.seconds:.1f} s ({rate:.0f} posts/s)"


@dataclass
class _State:
    """The progress file: enough to check a resume is safe and to cut the output back."""

    input: str
    input_size: int
    input_mtime_ns: int
    output_format: str
    text_column: str
    model: str
    inline_errors: bool
    columns: list[str] | None = None
    rows_read: int = 0
    scored: int = 0
    errors: int = 0
    output_bytes: int = 0
    errors_bytes: int = 0
    parts: int = 0
    version: int = STATE_VERSION


# ---------------------------------------------------------------------------------------------- paths


def output_format(output: Path, in_format: str) -> str:
    """The output's format from its suffix; without a suffix, the input's (JSONL for tweets.js)."""
    if not output.suffix:
        return "jsonl" if in_format == "tweets" else in_format
    kind = OUTPUT_FORMATS.get(output.suffix.lower())
    if kind is None:
        raise ScoreError(f"{output}: cannot write {output.suffix!r} files; name the output .csv, .jsonl or .parquet")
    return kind


def check_paths(src: Path, dst: Path) -> tuple[str, str]:
    """The input and output formats, after checking the input exists and the output is another file.

    Cheap, so ``givetake score`` runs it before loading a model.
    """
    if not src.is_file():
        raise ScoreError(f"{src}: no such file")
    if dst.exists() and src.resolve() == dst.resolve():
        raise ScoreError(f"{dst}: the output would overwrite the input; choose another output file")
    in_kind = input_format(src)
    return in_kind, output_format(dst, in_kind)


def side_paths(output: Path) -> dict[str, Path]:
    """The files kept beside ``output``: errors, progress state and Parquet parts."""
    return {
        "errors": output.with_name(output.name + ".errors.jsonl"),
        "state": output.with_name(output.name + ".progress.json"),
        "parts": output.with_name(output.name + ".parts"),
    }


def _parquet_rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # the reader reports unreadable files with a better message
        return None


# --------------------------------------------------------------------------------------------- values


def _cell(value: Any) -> str:
    """A CSV cell: nested values as JSON, missing values empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _flat(value: Any) -> Any:
    """A Parquet value when the input is not Parquet: lists of scalars stay lists, deeper nesting
    becomes a JSON string (JSON records vary too much from row to row for Arrow structs)."""
    if isinstance(value, dict) or (
        isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value)
    ):
        value = json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, str) and not value.isascii():
        # A lone surrogate (JSON input may escape one) cannot go into Arrow: keep it as the text \udXXX.
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


# -------------------------------------------------------------------------------------------- writers


@dataclass
class _Scored:
    """One output row: the input record and either a prediction or the reason it has none."""

    row: int
    record: dict[str, Any]
    prediction: dict[str, Any] | None
    error: str | None = None


class _TextWriter:
    """CSV or JSONL output appended per chunk; byte offsets let a resume cut it back."""

    def __init__(self, path: Path, kind: str, cols: OutputColumns, header: list[str] | None, offset: int) -> None:
        self.kind, self.cols, self.header = kind, cols, header
        mode = "r+b" if offset else "wb"
        if offset and not path.exists():
            raise ScoreError(
                f"{path} is missing but the progress file says it holds {offset} bytes; score again without --resume"
            )
        self.fh = path.open(mode)
        if offset:
            if self.fh.seek(0, os.SEEK_END) < offset:
                raise ScoreError(f"{path} is shorter than its progress file records; score again without --resume")
            self.fh.truncate(offset)
            self.fh.seek(offset)
        elif kind == "csv" and header is not None:
            self._write_csv([header])

    def _write_csv(self, rows: list[list[str]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        # backslashreplace: a lone surrogate from a JSON input is written as the text \udXXX, not a crash.
        self.fh.write(buf.getvalue().encode("utf-8", "backslashreplace"))

    def write(self, rows: list[_Scored]) -> None:
        if self.kind == "csv":
            assert self.header is not None
            out = []
            for r in rows:
                d = self.cols.input_part(r.record)
                d.update(_added_values(self.cols, r, csv_style=True))
                out.append([_cell(d.get(name)) for name in self.header])
            self._write_csv(out)
        else:
            lines = []
            for r in rows:
                d = self.cols.input_part(r.record)
                d.update(_added_values(self.cols, r, csv_style=False))
                lines.append(json.dumps(d, ensure_ascii=False, default=str) + "\n")
            # Inside a JSON string, backslashreplace writes a lone surrogate back as its JSON escape.
            self.fh.write("".join(lines).encode("utf-8", "backslashreplace"))

    def commit(self) -> int:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        self.fh.close()


def _added_values(cols: OutputColumns, r: _Scored, csv_style: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.prediction is None:
        out["labels"] = "" if csv_style else []
        out.update({s: None for s in cols.scores})
    else:
        labels = r.prediction["labels"]
        out["labels"] = "|".join(labels) if csv_style else list(labels)
        out.update({s: r.prediction["scores"][n] for s, n in zip(cols.scores, cols.labels, strict=True)})
    if "error" in cols.added:
        out["error"] = r.error or ("" if csv_style else None)
    return out


class _ParquetParts:
    """Parquet output as one part file per chunk, merged into the output when the run ends."""

    def __init__(self, parts_dir: Path, cols: OutputColumns, input_schema: pa.Schema | None, committed: int) -> None:
        self.dir, self.cols, self.input_schema = parts_dir, cols, input_schema
        self.count = committed
        parts_dir.mkdir(parents=True, exist_ok=True)
        for stale in parts_dir.iterdir():  # written after the last commit, or temporary
            if not stale.name.endswith(".parquet") or self._index(stale) >= committed:
                stale.unlink()

    @staticmethod
    def _index(path: Path) -> int:
        try:
            return int(path.stem.split("-")[1])
        except (IndexError, ValueError):
            return sys.maxsize

    def _table(self, rows: list[_Scored]) -> pa.Table:
        import pyarrow as pa

        arrays: dict[str, pa.Array] = {}
        if self.input_schema is not None:
            for f in self.input_schema:
                arrays[self.cols.rename(f.name)] = pa.array([r.record.get(f.name) for r in rows], f.type)
        else:
            names: dict[str, None] = {}
            for r in rows:
                names.update(dict.fromkeys(r.record))
            for name in names:
                values = [_flat(r.record.get(name)) for r in rows]
                try:
                    arrays[self.cols.rename(name)] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):  # mixed types: keep them as text
                    arrays[self.cols.rename(name)] = pa.array(
                        [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                        pa.string(),
                    )
        added = [_added_values(self.cols, r, csv_style=False) for r in rows]
        arrays["labels"] = pa.array([a["labels"] for a in added], pa.list_(pa.string()))
        for s in self.cols.scores:
            arrays[s] = pa.array([a[s] for a in added], pa.float64())
        if "error" in self.cols.added:
            arrays["error"] = pa.array([a["error"] for a in added], pa.string())
        return pa.table(arrays)

    def write(self, rows: list[_Scored]) -> None:
        import pyarrow.parquet as pq

        if not rows:
            return
        final = self.dir / f"part-{self.count:06d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(self._table(rows), tmp)
        os.replace(tmp, final)
        self.count += 1

    def commit(self) -> int:
        return self.count

    def merge(self, output: Path) -> None:
        """Concatenate the parts, one at a time, into ``output`` (atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.dir.glob("part-*.parquet"), key=self._index)
        schema = _unify([pq.read_schema(p) for p in parts], self.cols) if parts else self._empty_schema()
        tmp = output.with_name(output.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                table = pq.read_table(part)
                for f in schema:
                    if f.name not in table.column_names:
                        table = table.append_column(f.name, pa.nulls(len(table), f.type))
                writer.write_table(table.select(schema.names).cast(schema))
        os.replace(tmp, output)
        shutil.rmtree(self.dir)

    def _empty_schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [f.with_name(self.cols.rename(f.name)) for f in self.input_schema or []]
        fields.append(pa.field("labels", pa.list_(pa.string())))
        fields += [pa.field(s, pa.float64()) for s in self.cols.scores]
        if "error" in self.cols.added:
            fields.append(pa.field("error", pa.string()))
        return pa.schema(fields)

    def close(self) -> None:
        pass


def _unify(schemas: list[pa.Schema], cols: OutputColumns) -> pa.Schema:
    """One schema for all parts: input columns in order of appearance, then the added ones."""
    import pyarrow as pa

    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for f in schema:
            types.setdefault(f.name, []).append(f.type)
    fields = []
    for name, seen in types.items():
        distinct = {t for t in seen if t != pa.null()}
        if not distinct:
            typ = pa.string()
        elif len(distinct) == 1:
            typ = distinct.pop()
        else:
            try:
                typ = (
                    pa.unify_schemas([pa.schema([(name, t)]) for t in distinct], promote_options="permissive")
                    .field(name)
                    .type
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                typ = pa.string()
        fields.append(pa.field(name, typ))
    added = set(cols.added)
    return pa.schema([f for f in fields if f.name not in added] + [f for f in fields if f.name in added])


# ---------------------------------------------------------------------------------------------- state


def _write_state(path: Path, state: _State) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(asdict(state), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_state(path: Path) -> _State:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"version {data.get('version')}")
        return _State(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ScoreError(f"{path}: unreadable progress file ({exc}); score again without --resume") from None


def _check_resume(state: _State, fresh: _State, output: Path) -> None:
    problems = []
    if (state.input, state.input_size, state.input_mtime_ns) != (fresh.input, fresh.input_size, fresh.input_mtime_ns):
        problems.append(f"the input changed (the interrupted run read {state.input}, {state.input_size} bytes)")
    if state.model != fresh.model:
        problems.append(f"it used the model {state.model}, not {fresh.model} (pass --model {state.model})")
    if state.text_column != fresh.text_column:
        problems.append(f"it read the text column {state.text_column!r} (pass --text-column {state.text_column})")
    if (state.output_format, state.inline_errors) != (fresh.output_format, fresh.inline_errors):
        problems.append("it wrote another output format")
    if problems:
        raise ScoreError(f"cannot resume {output}: " + "; ".join(problems) + "; or score again without --resume")


# ----------------------------------------------------------------------------------------------- main


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
    fresh = _State(
        input=str(src.resolve()),
        input_size=stat.st_size,
        input_mtime_ns=stat.st_mtime_ns,
        output_format=out_kind,
        text_column=column,
        model=str(predictor.model_dir),
        inline_errors=inline_errors,
    )

    if resume and paths["state"].is_file():
        state = _read_state(paths["state"])
        _check_resume(state, fresh, dst)
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

    writer: _TextWriter | _ParquetParts
    if out_kind == "parquet":
        writer = _ParquetParts(paths["parts"], cols, input_schema, state.parts)
    else:
        writer = _TextWriter(dst, out_kind, cols, state.columns, state.output_bytes)
    errors_fh = None
    if not inline_errors:
        errors_fh = paths["errors"].open("r+b" if state.errors_bytes else "wb")
        errors_fh.truncate(state.errors_bytes)
        errors_fh.seek(state.errors_bytes)
    if state.rows_read == 0:
        # Commit the empty start (a CSV header) so an interruption even now leaves a resumable run.
        if isinstance(writer, _TextWriter):
            state.output_bytes = writer.commit()
        _write_state(paths["state"], state)

    from tqdm.auto import tqdm

    total = _parquet_rows(src) if in_kind == "parquet" else None
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
            rows: list[_Scored] = []
            failed: list[dict[str, Any]] = []
            texts: list[str] = []
            for row, rec, problem in chunk:
                if rec is not None and problem is None:
                    problem = text_problem(rec, column)
                if problem is None:
                    assert rec is not None
                    texts.append(rec[column])
                    rows.append(_Scored(row, rec, None))
                else:
                    failed.append({"row": row, "reason": problem})
                    if inline_errors:
                        rows.append(_Scored(row, rec or {}, None, problem))
            if not checked_column:
                parsed = [rec for _, rec, _ in chunk if rec is not None]
                if parsed and not any(column in rec for rec in parsed):
                    keys = list(dict.fromkeys(k for rec in parsed for k in rec))
                    raise ScoreError(
                        f"{src}: no row in the first {len(chunk)} has a {column!r} field; fields are: "
                        f"{', '.join(map(str, keys[:20]))}; pass --text-column"
                    )
                checked_column = True
            predictions = iter(predictor.predict(texts))
            for r in rows:
                if r.error is None:
                    r.prediction = next(predictions)
            writer.write(rows)
            if errors_fh is not None and failed:
                errors_fh.write("".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failed).encode("utf-8"))
            committed = writer.commit()
            if isinstance(writer, _ParquetParts):
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
            _write_state(paths["state"], state)
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

    if isinstance(writer, _ParquetParts):
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
