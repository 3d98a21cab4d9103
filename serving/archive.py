"""What an archive job is: its input files, the output's format, the files kept beside the output.

Cheap checks only (no model, no reading of rows), so ``givetake score`` runs them before loading a model.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from givetake.core.records import INPUT_FORMATS, Record, input_format
from givetake.errors import DataError

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
# The files givetake score keeps beside an output (see side_paths): never read back as inputs.
SIDE_SUFFIXES = (".errors.jsonl", ".progress.json")


class ScoreError(DataError):
    """An archive cannot be scored as asked; the message names the file and what to do."""


def check_text_column(chunk: Sequence[Record], column: str, where: str) -> None:
    """Refuse the first ``chunk`` of (row, record, problem) when no parsed record has ``column``.

    The message names ``where`` (the file, or stdin) and the fields the records have.
    """
    parsed = [rec for _, rec, _ in chunk if rec is not None]
    if parsed and not any(column in rec for rec in parsed):
        keys = list(dict.fromkeys(k for rec in parsed for k in rec))
        raise ScoreError(
            f"{where}: no row in the first {len(chunk)} has a {column!r} field; fields are: "
            f"{', '.join(map(str, keys[:20]))}; pass --text-column"
        )


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


STDIO = "-"
_GLOB_CHARS = set("*?[")


def expand_inputs(specs: list[str]) -> list[Path]:
    """The input files named by ``specs``: files, directories (every readable file under them, sorted)
    and glob patterns (``'posts/*.jsonl'``, ``'**/*.csv'``; quoted, so the shell leaves them to us).

    Each file once, in the order given; a spec that names nothing is a :class:`ScoreError`.
    """
    files: dict[Path, None] = {}
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in INPUT_FORMATS
                and not p.name.startswith(".")
                and not p.name.endswith(SIDE_SUFFIXES)
            )
            if not found:
                raise ScoreError(f"{path}: no .csv, .jsonl, .parquet or tweets.js files in this directory")
        elif not path.exists() and _GLOB_CHARS & set(spec):
            found = sorted(
                Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file() and not p.endswith(SIDE_SUFFIXES)
            )
            if not found:
                raise ScoreError(f"{spec}: the pattern matches no file")
        elif path.is_file():
            found = [path]
        else:
            raise ScoreError(f"{path}: no such file")
        for p in found:
            input_format(p)  # an unsupported suffix fails here, naming the file
            files.setdefault(p, None)
    return list(files)


def output_names(files: list[Path], outdir: Path, out_kind: str | None) -> dict[Path, Path]:
    """Where each of several inputs is written under ``outdir``: its path below the inputs' common
    folder, with the output format's suffix (``out_kind``; None keeps each input's format)."""
    base = Path(os.path.commonpath([p.resolve().parent for p in files]))
    names: dict[Path, Path] = {}
    for p in files:
        in_kind = input_format(p)
        kind = out_kind or ("jsonl" if in_kind == "tweets" else in_kind)
        rel = p.resolve().relative_to(base).with_suffix(SUFFIXES[kind])
        names[p] = outdir / rel
    return names
