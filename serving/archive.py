"""What an archive job is: its input files, the output's format, the files kept beside the output.

Cheap checks only (no model, no reading of rows), so ``givetake score`` runs them before loading a model.
"""

from __future__ import annotations

from pathlib import Path

from givetake.core.records import input_format
from givetake.errors import DataError

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class ScoreError(DataError):
    """An archive cannot be scored as asked; the message names the file and what to do."""


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


def parquet_rows(path: Path) -> int | None:
    """The row count in a Parquet file's footer (for a progress bar's total); None when unreadable."""
    import pyarrow.parquet as pq  # lazy: pyarrow adds start-up time to every CLI command

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # the reader reports unreadable files with a better message
        return None
