"""The writers of scored archives: CSV and JSONL appended per chunk, Parquet as one part file per chunk.

Every writer takes :class:`ScoredRow` lists and must give back, through the standard readers
(``csv``, ``json``, ``pyarrow``), exactly the rows and texts it was given: CSV is written RFC 4180
style (``\r\n`` line ends, so a field holding a bare ``\r`` is quoted), JSONL escapes what JSON
must, and text that UTF-8 cannot hold (a lone surrogate from a JSON input) is kept as its escape.
``commit()`` returns what a resume needs to cut the output back to the last commit (a byte offset,
or a count of part files).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from givetake.core.classifier import OutputColumns
from givetake.serving.archive import ScoreError

if TYPE_CHECKING:
    import pyarrow as pa

# RFC 4180 line ends. With "\n" the csv module leaves a field holding a bare "\r" unquoted, and a
# reader splits the row there (one post with "\r\r" in its text became two rows; see docs/archives.md).
CSV_LINE_END = "\r\n"


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


@dataclass
class ScoredRow:
    """One output row: the input record and either a prediction or the reason it has none."""

    row: int
    record: dict[str, Any]
    prediction: dict[str, Any] | None
    error: str | None = None


class TextWriter:
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
        csv.writer(buf, lineterminator=CSV_LINE_END).writerows(rows)
        # backslashreplace: a lone surrogate from a JSON input is written as the text \udXXX, not a crash.
        self.fh.write(buf.getvalue().encode("utf-8", "backslashreplace"))

    def write(self, rows: list[ScoredRow]) -> None:
        if self.kind == "csv":
            assert self.header is not None
            out = []
            for r in rows:
                d = self.cols.input_part(r.record)
                d.update(added_values(self.cols, r, csv_style=True))
                out.append([_cell(d.get(name)) for name in self.header])
            self._write_csv(out)
        else:
            lines = []
            for r in rows:
                d = self.cols.input_part(r.record)
                d.update(added_values(self.cols, r, csv_style=False))
                lines.append(json.dumps(d, ensure_ascii=False, default=str) + "\n")
            # Inside a JSON string, backslashreplace writes a lone surrogate back as its JSON escape.
            self.fh.write("".join(lines).encode("utf-8", "backslashreplace"))

    def commit(self) -> int:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        self.fh.close()


def added_values(cols: OutputColumns, r: ScoredRow, csv_style: bool) -> dict[str, Any]:
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


class ParquetParts:
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

    def _table(self, rows: list[ScoredRow]) -> pa.Table:
        return scored_table(rows, self.cols, self.input_schema)

    def write(self, rows: list[ScoredRow]) -> None:
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


def scored_table(rows: list[ScoredRow], cols: OutputColumns, input_schema: pa.Schema | None = None) -> pa.Table:
    """Scored rows as an Arrow table: the input columns (typed by ``input_schema`` when the input is
    Parquet, else inferred; nested JSON values as JSON text), then ``labels`` and the scores."""
    import pyarrow as pa

    arrays: dict[str, pa.Array] = {}
    if input_schema is not None:
        for f in input_schema:
            arrays[cols.rename(f.name)] = pa.array([r.record.get(f.name) for r in rows], f.type)
    else:
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r.record))
        for name in names:
            values = [_flat(r.record.get(name)) for r in rows]
            try:
                arrays[cols.rename(name)] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):  # mixed types: keep them as text
                arrays[cols.rename(name)] = pa.array(
                    [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                    pa.string(),
                )
    added = [added_values(cols, r, csv_style=False) for r in rows]
    arrays["labels"] = pa.array([a["labels"] for a in added], pa.list_(pa.string()))
    for s in cols.scores:
        arrays[s] = pa.array([a[s] for a in added], pa.float64())
    if "error" in cols.added:
        arrays["error"] = pa.array([a["error"] for a in added], pa.string())
    return pa.table(arrays)


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
