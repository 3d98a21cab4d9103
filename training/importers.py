"""Turn exports of labelling tools into the project's JSONL (``givetake import``).

Two sources:

- a Label Studio JSON export (the "JSON" export: a list of tasks, each with ``data`` and
  ``annotations[].result[]``); labels come from results of type ``choices`` or ``taxonomy``
  (a taxonomy path's last element is the label), the text from ``data.<text_key>``;
- a CSV with a text column and one 0/1 column per label of the schema.

Each output line is ``{"id", "text", "labels", "schema_version"}``: the rows were labelled
with the schema given (default ``labels/schema.yaml``), so its version is recorded and a
label the row does not carry is a known negative when training (see ``training/data.py``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from givetake.errors import GivetakeError
from givetake.labels.schema import LabelChangedError, Schema

NO_LABEL = "none"  # a choice that says "none of the labels" (when no label has that name)


class ImportFailed(GivetakeError, ValueError):
    """An export cannot be imported; the message names the file, the task or row, and the problem."""


@dataclass
class ImportSummary:
    """What an import read and wrote."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per task left out, with the reason

    def line(self, output: Path) -> str:
        """One line for the terminal."""
        return f"wrote {len(self.rows)} rows to {output}" + (
            f"; skipped {len(self.skipped)} task(s) with no usable annotation" if self.skipped else ""
        )


def _choice_to_label(choice: str, schema: Schema, where: str) -> str | None:
    """A Label Studio choice as a label name (None for the "none" choice)."""
    raw = choice.strip()
    name = raw.lower().replace(" ", "_").replace("-", "_")
    if name == NO_LABEL and NO_LABEL not in schema.names:
        return None
    try:
        current = schema.resolve(name, schema.version)
    except KeyError:
        raise ImportFailed(
            f"{where}: unknown choice {raw!r}; the schema's labels are {', '.join(schema.names)} "
            f"(or '{NO_LABEL}' for none)"
        ) from None
    except LabelChangedError as exc:
        raise ImportFailed(f"{where}: {exc}") from None
    return current


def _latest(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recent annotation that was not cancelled (by updated_at, created_at, then id)."""
    usable = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not usable:
        return None
    return max(
        enumerate(usable),
        key=lambda ia: (str(ia[1].get("updated_at") or ""), str(ia[1].get("created_at") or ""), ia[0]),
    )[1]


def import_label_studio(
    path: str | Path, schema: Schema, text_key: str = "text", from_name: str | None = None
) -> ImportSummary:
    """Rows from a Label Studio JSON export; tasks without a usable annotation are skipped.

    ``from_name`` keeps only the results of that control (``<Choices name="...">``), for
    projects whose interface has other choice controls too.
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFailed(f"{path}: cannot read a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise ImportFailed(f"{path}: a Label Studio JSON export is a list of tasks, not a {type(tasks).__name__}")
    summary = ImportSummary()
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise ImportFailed(f"{path}: item {i} is not a task object")
        task_id = task.get("id", i + 1)
        where = f"{path}, task {task_id}"
        data = task.get("data") or {}
        text = data.get(text_key) if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip():
            keys = ", ".join(map(str, data)) if isinstance(data, dict) else "none"
            raise ImportFailed(f"{where}: no text in data.{text_key} (data keys: {keys}); pass --text-key")
        annotation = _latest(task.get("annotations") or [])
        if annotation is None:
            summary.skipped.append(f"{where}: no annotation that was not cancelled")
            continue
        labels: list[str] = []
        for res in annotation.get("result") or []:
            if not isinstance(res, dict) or (from_name and res.get("from_name") != from_name):
                continue
            kind, value = res.get("type"), res.get("value") or {}
            if kind == "choices":
                picked = [str(c) for c in value.get("choices") or []]
            elif kind == "taxonomy":
                picked = [str(p[-1]) for p in value.get("taxonomy") or [] if isinstance(p, list) and p]
            else:
                continue
            for choice in picked:
                label = _choice_to_label(choice, schema, where)
                if label is not None and label not in labels:
                    labels.append(label)
        summary.rows.append(
            {
                "id": str(task_id),
                "text": text,
                "labels": _in_schema_order(labels, schema),
                "schema_version": schema.version,
            }
        )
    if not summary.rows:
        raise ImportFailed(f"{path}: no task has a usable annotation")
    return summary


def _in_schema_order(labels: list[str], schema: Schema) -> list[str]:
    return [n for n in schema.names if n in labels]


_ONES = {"1", "1.0", "true", "yes"}
_ZEROS = {"0", "0.0", "false", "no"}


def import_csv(path: str | Path, schema: Schema, text_column: str = "text", id_column: str = "id") -> ImportSummary:
    """Rows from a CSV with a text column and one 0/1 column per label (strictly 0 or 1)."""
    path = Path(path)
    summary = ImportSummary()
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            missing = [n for n in schema.names if n not in columns]
            if text_column not in columns:
                raise ImportFailed(f"{path}: no text column {text_column!r}; columns are {', '.join(columns)}")
            if missing:
                hint = "".join(
                    f"; column {c!r} is an old name of {schema.current_name(c)!r}"
                    for c in columns
                    if c not in schema.names and schema.current_name(c)
                )
                raise ImportFailed(f"{path}: no 0/1 column for label(s) {', '.join(missing)}{hint}")
            for rowno, rec in enumerate(reader, 1):
                where = f"{path}, row {rowno}"
                text = rec.get(text_column)
                if not text or not text.strip():
                    raise ImportFailed(f"{where}: empty text in column {text_column!r}")
                labels = []
                for name in schema.names:
                    value = (rec.get(name) or "").strip().lower()
                    if value in _ONES:
                        labels.append(name)
                    elif value not in _ZEROS:
                        raise ImportFailed(f"{where}: column {name!r} must be 0 or 1, got {rec.get(name)!r}")
                row_id = (rec.get(id_column) or "").strip() or str(rowno)
                summary.rows.append({"id": row_id, "text": text, "labels": labels, "schema_version": schema.version})
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFailed(f"{path}: not a readable CSV file ({exc})") from None
    if not summary.rows:
        raise ImportFailed(f"{path}: no rows")
    return summary


def write_jsonl(rows: list[dict[str, Any]], output: str | Path) -> None:
    """Write rows as JSONL (UTF-8, one object a line)."""
    with Path(output).open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def import_file(
    path: str | Path,
    output: str | Path,
    schema: Schema,
    kind: str = "auto",
    text_key: str = "text",
    from_name: str | None = None,
) -> ImportSummary:
    """Import a Label Studio export (``.json``) or a 0/1-column CSV (``.csv``) and write JSONL."""
    path = Path(path)
    if kind == "auto":
        kind = {".json": "label-studio", ".csv": "csv"}.get(path.suffix.lower(), "")
        if not kind:
            raise ImportFailed(
                f"{path}: cannot tell the format from {path.suffix!r}; pass --format label-studio or csv"
            )
    if kind == "label-studio":
        summary = import_label_studio(path, schema, text_key, from_name)
    elif kind == "csv":
        summary = import_csv(path, schema, text_column=text_key)
    else:
        raise ImportFailed(f"unknown format {kind!r}; use label-studio or csv")
    write_jsonl(summary.rows, output)
    return summary
