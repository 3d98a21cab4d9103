"""The progress file of a scoring run: what is committed, and whether a resume is safe.

After each chunk :func:`write_state` replaces ``OUTPUT.progress.json`` atomically; it records how
many input rows are done and how much output (bytes, or Parquet part files) belongs to them, so a
resume cuts anything written after the last commit and carries on from there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from givetake.serving.archive import ScoreError

STATE_VERSION = 1


@dataclass
class State:
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


def write_state(path: Path, state: State) -> None:
    """Replace the progress file atomically (a crash leaves the old one or the new one, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(asdict(state), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_state(path: Path) -> State:
    """The progress file at ``path``; a :class:`ScoreError` when it is unreadable or of another version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"version {data.get('version')}")
        return State(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ScoreError(f"{path}: unreadable progress file ({exc}); score again without --resume") from None


def check_resume(state: State, fresh: State, output: Path) -> None:
    """Refuse, in one line, a resume with another input, model, text column or output format."""
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
