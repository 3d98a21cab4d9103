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

from givetake.errors import GivetakeError

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"
SEED_DIR = Path(__file__).resolve().parent / "seed"
SIDES = ("give", "take")
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_SOURCE = re.compile(r"^00[0-4]$")


class SchemaError(GivetakeError, ValueError):
    """The schema file is malformed; the message names the file and the field."""


class LabelChangedError(GivetakeError, ValueError):
    """Data uses a label name the schema renamed or removed (see ``Schema.resolve``)."""


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
    # The schema version that introduced the label: data labelled with an earlier version
    # never judged it, so a row of such data that does not mention it is unknown, not negative.
    since: int = 1


@dataclass(frozen=True)
class LabelChange:
    """A label name that left the schema: renamed to ``new``, or removed (``new`` is None)."""

    old: str
    new: str | None
    version: int  # the schema version that made the change


@dataclass(frozen=True)
class Schema:
    """The label set a corpus is labelled with and a model is trained on."""

    version: int
    labels: list[LabelSpec]
    name: str = "givetake"
    description: str = ""
    path: str | None = field(default=None, compare=False)
    changes: list[LabelChange] = field(default_factory=list)

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

    def resolve(self, name: str, version: int) -> str | None:
        """The current name of a label written in data labelled with schema ``version``.

        A current name is returned as is. A renamed label is read as its new name and a
        removed one as None (dropped), but only for data labelled before the change: data
        that says it was labelled with the new schema yet uses the old name raises
        :class:`LabelChangedError`. An unknown name raises KeyError.
        """
        if name in self.names:
            return name
        change = self._change(name)
        if change is None:
            raise KeyError(name)
        if version >= change.version:
            if change.new is None:
                raise LabelChangedError(
                    f"label {name!r} was removed in schema version {change.version}, and this row is labelled "
                    f"with version {version}; drop it from the row"
                )
            raise LabelChangedError(
                f"label {name!r} was renamed to {self._final(name)!r} in schema version "
                f"{change.version}, and this row is labelled with version {version}; write the new name"
            )
        return self._final(name)

    def _change(self, name: str) -> LabelChange | None:
        return next((c for c in self.changes if c.old == name), None)

    def _final(self, name: str) -> str | None:
        """Where a chain of renames ends (None when it ends in a removal)."""
        change = self._change(name)
        while change is not None and change.new is not None:
            name = change.new
            change = self._change(name)
        return None if change is not None else name

    def mentions(self, name: str) -> bool:
        """Whether ``name`` is a label of this schema, now or before a rename or removal."""
        return name in self.names or self._change(name) is not None

    def current_name(self, name: str) -> str | None:
        """The current name of a current or renamed label, whatever the data's version; else None."""
        return self._final(name) if self.mentions(name) else None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with the same shape as the YAML file."""
        out: dict[str, Any] = {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            # `since` is written only where it is not the default, so version-1 schemas keep their shape.
            "labels": [{k: v for k, v in asdict(spec).items() if k != "since" or v != 1} for spec in self.labels],
        }
        renamed = [{"from": c.old, "to": c.new, "version": c.version} for c in self.changes if c.new is not None]
        removed = [{"name": c.old, "version": c.version} for c in self.changes if c.new is None]
        if renamed:
            out["renamed"] = renamed
        if removed:
            out["removed"] = removed
        return out

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
        since = raw.get("since", 1)
        if not isinstance(since, int) or isinstance(since, bool) or not 1 <= since <= version:
            raise _fail(at, "since", f"must be a schema version from 1 to {version} (the version that added the label)")
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
                since=since,
            )
        )
    return Schema(
        version=version,
        labels=specs,
        name=str(data.get("name") or "givetake"),
        description=" ".join(str(data.get("description") or "").split()),
        changes=_parse_changes(data, where, version, seen),
    )


def _change_version(raw: dict[str, Any], at: str, version: int) -> int:
    value = raw.get("version")
    if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= version:
        raise _fail(at, "version", f"must be the schema version of the change, from 2 to {version}")
    return value


def _parse_changes(data: dict[str, Any], where: str, version: int, current: set[str]) -> list[LabelChange]:
    """``renamed: [{from, to, version}]`` and ``removed: [{name, version}]``, validated."""
    changes: list[LabelChange] = []
    for key in ("renamed", "removed"):
        entries = data.get(key) or []
        if not isinstance(entries, list):
            raise _fail(where, key, "must be a list of mappings")
        for i, raw in enumerate(entries):
            at = f"{where}: {key}[{i}]"
            if not isinstance(raw, dict):
                raise SchemaError(f"{at}: must be a mapping")
            old = _str(raw, "from" if key == "renamed" else "name", at)
            new = _str(raw, "to", at) if key == "renamed" else None
            if old in current:
                raise SchemaError(f"{at}: {old!r} is still a label of the schema; a {key} label must be gone")
            if any(c.old == old for c in changes):
                raise SchemaError(f"{at}: {old!r} is renamed or removed more than once")
            changes.append(LabelChange(old, new, _change_version(raw, at, version)))
    # A rename must end at a current label or a removal, through later renames if any.
    olds = {c.old: c for c in changes}
    for c in changes:
        seen, target = {c.old}, c.new
        while target is not None and target not in current:
            if target not in olds or target in seen:
                raise SchemaError(f"{where}: renamed: {c.old!r} -> {target!r}, which is not a label of the schema")
            seen.add(target)
            target = olds[target].new
    return changes


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
    return Schema(schema.version, schema.labels, schema.name, schema.description, str(path), schema.changes)
