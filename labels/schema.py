"""Load and validate the label schema (``labels/schema.yaml``).

The schema is the only place label names are written down. Training reads it from here;
every saved model carries a copy (``schema.yaml`` in the run directory) which serving reads.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"
SEED_DIR = Path(__file__).resolve().parent / "seed"
SIDES = ("give", "take")
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_SOURCE = re.compile(r"^00[0-4]$")


class SchemaError(ValueError):
    """The schema file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class LabelSpec:
    """One label: its name, which side of give/take it is on, and how to judge it."""

    name: str
    side: str
    summary: str
    definition: str
    rules: list[str]
    yes_examples: list[str]
    no_examples: list[str]
    sources: list[str]


@dataclass(frozen=True)
class Schema:
    """The label set a corpus is labelled with and a model is trained on."""

    version: int
    labels: list[LabelSpec]
    name: str = "givetake"
    description: str = ""
    path: str | None = field(default=None, compare=False)

    @property
    def names(self) -> list[str]:
        """Label names in schema order (the order of model outputs)."""
        return [spec.name for spec in self.labels]

    def get(self, name: str) -> LabelSpec:
        """The spec of the label called ``name`` (KeyError if absent)."""
        for spec in self.labels:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with the same shape as the YAML file."""
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "labels": [asdict(spec) for spec in self.labels],
        }

    def save(self, path: str | Path) -> None:
        """Write the schema as YAML (used to store a copy next to a model's weights)."""
        Path(path).write_text(
            yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100),
            encoding="utf-8",
        )


def _fail(where: str, field_name: str, problem: str) -> SchemaError:
    return SchemaError(f"{where}: field '{field_name}' {problem}")


def _str_list(raw: dict[str, Any], key: str, where: str, minimum: int) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(where, key, "must be a list of non-empty strings")
    if len(value) < minimum:
        raise _fail(where, key, f"needs at least {minimum} entries, has {len(value)}")
    return [v.strip() for v in value]


def _str(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, key, "is missing or empty")
    return value.strip()


def parse_schema(data: Any, where: str = "schema") -> Schema:
    """Validate a schema given as parsed YAML; raise :class:`SchemaError` naming the field."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: the top level must be a mapping with 'version' and 'labels'")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(where, "version", "must be a positive integer")
    raw_labels = data.get("labels")
    if not isinstance(raw_labels, list) or not raw_labels:
        raise _fail(where, "labels", "must be a non-empty list")
    specs: list[LabelSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_labels):
        at = f"{where}: labels[{i}]"
        if not isinstance(raw, dict):
            raise SchemaError(f"{at}: must be a mapping")
        name = _str(raw, "name", at)
        at = f"{where}: label '{name}'"
        if not _SNAKE.match(name):
            raise _fail(at, "name", "must be snake_case (lowercase letters, digits, underscores)")
        if name in seen:
            raise _fail(at, "name", "is used by more than one label")
        seen.add(name)
        side = _str(raw, "side", at)
        if side not in SIDES:
            raise _fail(at, "side", f"must be one of {', '.join(SIDES)}, not {side!r}")
        sources = [str(s) for s in raw.get("sources") or []]
        if not sources or not all(_SOURCE.match(s) for s in sources):
            raise _fail(at, "sources", "must list seed essay ids from 000 to 004")
        specs.append(
            LabelSpec(
                name=name,
                side=side,
                summary=_str(raw, "summary", at),
                definition=" ".join(_str(raw, "definition", at).split()),
                rules=_str_list(raw, "rules", at, 1),
                yes_examples=_str_list(raw, "yes_examples", at, 3),
                no_examples=_str_list(raw, "no_examples", at, 3),
                sources=sources,
            )
        )
    return Schema(
        version=version,
        labels=specs,
        name=str(data.get("name") or "givetake"),
        description=" ".join(str(data.get("description") or "").split()),
    )


def load_schema(path: str | Path | None = None) -> Schema:
    """Load and validate a schema file (default: the project's ``labels/schema.yaml``)."""
    path = Path(path) if path is not None else SCHEMA_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the schema file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path}: not valid YAML: {exc}") from exc
    schema = parse_schema(data, where=str(path))
    return Schema(schema.version, schema.labels, schema.name, schema.description, str(path))
