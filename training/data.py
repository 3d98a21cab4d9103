"""Load labelled posts (JSONL, CSV, Parquet) into a ``datasets.Dataset`` and split it.

Files are read by the shared streaming reader, :func:`givetake.core.records.iter_records`.

Labels may come as a list (``["pitch", "ask"]``), as a ``|``- or ``,``-separated string
(``"pitch|ask"``), or as one 0/1 column per label. Every problem is reported with the file,
the row (1-based line for JSONL, data row for CSV/Parquet) and what is wrong.

``datasets`` and scikit-learn (each over a second to import) are imported inside
:meth:`LabelledPosts.to_dataset` and :func:`stratified_split`: the CLI imports this module for
every command, and most commands never split or train.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from givetake.core.records import input_format, iter_records
from givetake.errors import DataError
from givetake.labels.schema import SEED_DIR, LabelChangedError, Schema

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("givetake.data")

SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")
# Data that records no schema version was labelled with the first one: the shipped corpus is.
DEFAULT_DATA_VERSION = 1
VERSION_FIELD = "schema_version"
MIN_POSITIVES = 30
_VERSION_SUFFIX = re.compile(r"^(.+)@v(\d+)$")


@dataclass
class LabelledPosts:
    """Texts with a multi-hot label matrix whose columns follow ``label_names``.

    ``known`` marks which cells were judged: a row labelled with a schema version older than
    a label never judged that label, so its 0 there means "unknown", not "no" (see
    :func:`load_file`). Training, threshold tuning and evaluation leave unknown cells out.
    """

    texts: list[str]
    y: np.ndarray  # shape (n, len(label_names)), values 0/1
    label_names: list[str]
    sources: list[str]
    known: np.ndarray | None = None  # shape like y, 1 = judged; None = every cell judged
    ids: list[str] | None = None  # the row's `id` field, or "" (for reports)
    rows: list[int] | None = None  # row number within its source file (for reports)

    def __post_init__(self) -> None:
        if self.known is None:
            self.known = np.ones_like(self.y, dtype=np.int8)
        if self.ids is None:
            self.ids = [""] * len(self.texts)
        if self.rows is None:
            self.rows = [0] * len(self.texts)

    @property
    def mask(self) -> np.ndarray:
        """``known`` as a 0/1 int8 array (never None)."""
        assert self.known is not None
        return self.known

    @property
    def fully_known(self) -> bool:
        """Whether every cell was judged (the common case: all data labelled with the current schema)."""
        return bool(self.mask.all())

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Iterable[int]) -> LabelledPosts:
        """The rows at ``index``, in that order."""
        idx = list(index)
        assert self.ids is not None and self.rows is not None
        return LabelledPosts(
            [self.texts[i] for i in idx],
            self.y[idx],
            self.label_names,
            [self.sources[i] for i in idx],
            self.mask[idx],
            [self.ids[i] for i in idx],
            [self.rows[i] for i in idx],
        )

    def with_variants(self, rows: Sequence[int], texts: Sequence[str]) -> LabelledPosts:
        """These posts followed by ``texts``, variants of ``rows`` that keep their labels."""
        more = self.subset(rows)
        assert self.ids is not None and self.rows is not None and more.ids is not None and more.rows is not None
        return LabelledPosts(
            [*self.texts, *texts],
            np.concatenate([self.y, more.y]),
            self.label_names,
            [*self.sources, *(f"{s}+variant" for s in more.sources)],
            np.concatenate([self.mask, more.mask]),
            [*self.ids, *more.ids],
            [*self.rows, *more.rows],
        )

    def followed_by(self, other: LabelledPosts) -> LabelledPosts:
        """These posts, then ``other``'s (same label columns)."""
        assert self.ids is not None and self.rows is not None and other.ids is not None and other.rows is not None
        if other.label_names != self.label_names:
            raise ValueError(f"label columns differ: {self.label_names} vs {other.label_names}")
        return LabelledPosts(
            [*self.texts, *other.texts],
            np.concatenate([self.y, other.y]),
            self.label_names,
            [*self.sources, *other.sources],
            np.concatenate([self.mask, other.mask]),
            [*self.ids, *other.ids],
            [*self.rows, *other.rows],
        )

    def with_unlabelled(self, texts: Sequence[str]) -> LabelledPosts:
        """These posts followed by ``texts`` with every label unknown (learnt from a teacher alone)."""
        assert self.ids is not None and self.rows is not None
        width = len(self.label_names)
        return LabelledPosts(
            [*self.texts, *texts],
            np.concatenate([self.y, np.zeros((len(texts), width), dtype=self.y.dtype)]),
            self.label_names,
            [*self.sources, *(["unlabelled"] * len(texts))],
            np.concatenate([self.mask, np.zeros((len(texts), width), dtype=self.mask.dtype)]),
            [*self.ids, *([""] * len(texts))],
            [*self.rows, *range(1, len(texts) + 1)],
        )

    def to_dataset(self, soft: np.ndarray | None = None, weights: np.ndarray | None = None) -> datasets.Dataset:
        """As a ``datasets.Dataset`` with ``text`` and float multi-hot ``labels`` columns.

        An unknown cell is written as -1 (the training loss masks it out). ``soft``, a teacher's
        scores (NaN where it has none, also written as -1), is appended to each row's labels, and
        then ``weights``, one loss weight per row, as a last column.
        """
        import datasets

        labels = np.where(self.mask > 0, self.y, -1).astype(np.float32)
        if soft is not None:
            labels = np.concatenate([labels, np.nan_to_num(soft.astype(np.float32), nan=-1.0)], axis=1)
        if weights is not None:
            labels = np.concatenate([labels, np.asarray(weights, dtype=np.float32).reshape(-1, 1)], axis=1)
        return datasets.Dataset.from_dict({"text": self.texts, "labels": labels.tolist()})

    def counts(self) -> dict[str, Any]:
        """Positives per label, plus ``none`` (rows with no label) and ``rows``.

        When some cells are unknown, ``unknown`` holds how many rows each label is unknown for.
        """
        out: dict[str, Any] = {name: int(self.y[:, j].sum()) for j, name in enumerate(self.label_names)}
        out["none"] = int((self.y.sum(axis=1) == 0).sum())
        out["rows"] = len(self)
        if not self.fully_known:
            out["unknown"] = {n: int((self.mask[:, j] == 0).sum()) for j, n in enumerate(self.label_names)}
        return out


def split_version(raw: str | Path) -> tuple[Path, int | None]:
    """``more.csv@v2`` -> (``more.csv``, 2): the schema version a whole source was labelled with.

    A path that exists as given is never split, so a file whose name holds ``@v`` still loads.
    """
    text = str(raw)
    match = _VERSION_SUFFIX.match(text)
    if match and not Path(text).exists():
        return Path(match.group(1)), int(match.group(2))
    return Path(text), None


def expand_sources(paths: Iterable[str | Path]) -> list[tuple[Path, int | None]]:
    """Files named directly, plus every JSONL/CSV/Parquet file inside named directories.

    Each comes with the schema version given by a ``@vN`` suffix on its argument (or None).
    """
    out: list[tuple[Path, int | None]] = []
    for raw in paths:
        path, version = split_version(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
            if not found:
                raise DataError(f"{path}: directory holds no .jsonl, .csv or .parquet files")
            out.extend((p, version) for p in found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .csv or .parquet")
            out.append((path, version))
        else:
            raise DataError(f"{path}: no such file or directory")
    return out


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every JSONL/CSV/Parquet file inside named directories."""
    return [p for p, _ in expand_sources(paths)]


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, record) pairs from one data file, through the shared streaming reader.

    :func:`givetake.core.records.iter_records` reads CSV cells as the strings they are (a 0/1
    label column is ``"0"``/``"1"``), JSONL and Parquet as their JSON/Arrow types, and tweets.js
    archives. A row it cannot use is fatal here: training data must not lose rows silently.
    """
    kind = input_format(path)
    unit = "line" if kind == "jsonl" else "row"
    for rowno, rec, problem in iter_records(path, kind):
        if rec is None:
            if kind == "jsonl":
                raise DataError(f"{path}, line {rowno}: bad JSON line ({problem})")
            raise DataError(f"{path}, {unit} {rowno}: {problem}")
        yield rowno, rec


def parse_labels(value: Any) -> list[str]:
    """Label names from a list, a ``|``/``,``-separated string, or an empty value."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = value.strip("[]")
        if isinstance(value, str):
            sep = "|" if "|" in value else ","
            return [part.strip().strip("'\"") for part in value.split(sep) if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ValueError(f"labels must be a list or a separated string, not {type(value).__name__}")


_ONE = {"1", "1.0", "true", "yes"}
_ZERO = {"0", "0.0", "false", "no", ""}


def _is_one(value: Any, where: str, column: str) -> bool:
    """A 0/1 label cell: a number or bool from JSONL/Parquet, or a string from CSV (``"1"``, ``"true"``...)."""
    if value is None:
        return False
    if isinstance(value, bool | int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        cell = value.strip().lower()
        if cell in _ONE:
            return True
        if cell in _ZERO:
            return False
    raise DataError(f"{where}: column '{column}' must be 0 or 1, got {value!r}")


def _has_label_columns(rec: dict[str, Any], schema: Schema, version: int) -> bool:
    """Whether a record has a 0/1 column (under its current or an old name) for every label of ``version``."""
    have = {schema.current_name(str(c)) for c in rec}
    needed = [spec.name for spec in schema.labels if spec.since <= version]
    return bool(needed) and all(n in have for n in needed)


def _row_version(rec: dict[str, Any], default: int, schema: Schema, where: str) -> int:
    """The schema version a row was labelled with: its own field, else its source's."""
    raw = rec.get(VERSION_FIELD)
    if raw is None or raw == "":
        return default
    try:
        version = int(raw)
        if isinstance(raw, bool) or float(raw) != version:
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{VERSION_FIELD}' must be a whole number, got {raw!r}") from None
    if not 1 <= version <= schema.version:
        raise DataError(
            f"{where}: labelled with schema version {version}, but the schema "
            f"({schema.path or 'given'}) is version {schema.version}"
        )
    return version


def load_file(
    path: str | Path,
    schema: Schema,
    text_column: str = "text",
    labels_column: str = "labels",
    version: int | None = None,
) -> LabelledPosts:
    """Load one file; raise :class:`DataError` for the first bad row.

    Each row was labelled with a schema version: its ``schema_version`` field, else
    ``version`` (the ``@vN`` of the source), else 1. A label the row mentions is a known
    positive. A label it does not mention is a known negative only when the label existed in
    that version (``since`` in the schema); otherwise the cell is unknown. Names the schema
    renamed or removed are read as the new name or dropped for rows labelled before the
    change, and are an error for rows labelled after it.
    """
    path = Path(path)
    names = schema.names
    index = {n: j for j, n in enumerate(names)}
    since = np.array([spec.since for spec in schema.labels])
    default = version if version is not None else DEFAULT_DATA_VERSION
    if not 1 <= default <= schema.version:
        raise DataError(f"{path}: labelled with schema version {default}, but the schema is version {schema.version}")
    texts: list[str] = []
    rows: list[np.ndarray] = []
    known_rows: list[np.ndarray] = []
    ids: list[str] = []
    rownos: list[int] = []
    old_names: Counter[tuple[str, str | None]] = Counter()
    mode: str | None = None
    unit = "line" if input_format(path) == "jsonl" else "row"
    for rowno, rec in read_records(path):
        where = f"{path}, {unit} {rowno}"
        row_version = _row_version(rec, default, schema, where)

        def resolve(label: str, where: str = where, row_version: int = row_version) -> str | None:
            try:
                current = schema.resolve(label, row_version)
            except KeyError:
                raise DataError(f"{where}: unknown label {label!r}; known labels: {', '.join(names)}") from None
            except LabelChangedError as exc:
                raise DataError(f"{where}: {exc}") from None
            if current != label:
                old_names[(label, current)] += 1
            return current

        if mode is None:
            if labels_column in rec:
                mode = "column"
            elif _has_label_columns(rec, schema, row_version):
                mode = "onehot"
            else:
                raise DataError(
                    f"{where}: no '{labels_column}' column and no 0/1 column for every label "
                    f"({', '.join(names)}); columns are: {', '.join(map(str, rec))}"
                )
        text = rec.get(text_column)
        if text_column not in rec:
            raise DataError(f"{where}: missing text column '{text_column}'")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty text in column '{text_column}'")
        vec = np.zeros(len(names), dtype=np.int8)
        if mode == "column":
            try:
                found = parse_labels(rec.get(labels_column))
            except ValueError as exc:
                raise DataError(f"{where}: {exc}") from None
            for label in found:
                current = resolve(label)
                if current is not None:
                    vec[index[current]] = 1
        else:
            for column, value in rec.items():
                if schema.mentions(str(column)):
                    current = resolve(str(column))
                    if current is not None and _is_one(value, where, str(column)):
                        vec[index[current]] = 1
        texts.append(text)
        rows.append(vec)
        # Judged: every label that existed when the row was labelled, and anything it marks.
        known_rows.append(((since <= row_version) | (vec > 0)).astype(np.int8))
        ids.append(str(rec.get("id", "") or ""))
        rownos.append(rowno)
    if not texts:
        raise DataError(f"{path}: no rows")
    for (old, new), n in sorted(old_names.items()):
        log.warning(
            "%s: %d row(s) use the old label name %r, read as %s (the schema %s it; those rows were labelled "
            "before the change)",
            path,
            n,
            old,
            repr(new) if new else "nothing",
            "renamed" if new else "removed",
        )
    return LabelledPosts(
        texts, np.stack(rows), list(names), [path.name] * len(texts), np.stack(known_rows), ids, rownos
    )


def load_posts(
    paths: Iterable[str | Path] | None, schema: Schema, text_column: str = "text", labels_column: str = "labels"
) -> LabelledPosts:
    """Load and concatenate every file under ``paths`` (default: the shipped seed corpus).

    A path may end in ``@vN`` (``more.csv@v2``): the schema version its rows were labelled
    with, for rows that do not record their own ``schema_version``.
    """
    sources = expand_sources(list(paths) if paths else [SEED_DIR])
    parts = [load_file(p, schema, text_column, labels_column, version) for p, version in sources]
    return LabelledPosts(
        [t for p in parts for t in p.texts],
        np.concatenate([p.y for p in parts]),
        list(schema.names),
        [s for p in parts for s in p.sources],
        np.concatenate([p.mask for p in parts]),
        [i for p in parts for i in p.ids or []],
        [r for p in parts for r in p.rows or []],
    )


def label_warnings(posts: LabelledPosts, minimum: int = MIN_POSITIVES) -> list[str]:
    """Problems with labels that have too little judged data to learn or measure.

    A label with fewer than ``minimum`` known positives, or with no known negatives (no row
    was labelled with a schema version that includes it), gets one line each.
    """
    out = []
    for j, name in enumerate(posts.label_names):
        judged = posts.mask[:, j] > 0
        positives = int(posts.y[judged, j].sum())
        negatives = int(judged.sum()) - positives
        if positives < minimum:
            out.append(
                f"label {name!r} has only {positives} known positive(s), fewer than {minimum}: its model, "
                "threshold and F1 are unreliable; label more posts that carry it"
            )
        if negatives == 0:
            out.append(
                f"label {name!r} has no known negatives: no row was labelled with a schema version that "
                f"includes it; record '{VERSION_FIELD}' in the data (or pass --data FILE@vN)"
            )
    return out


def label_strata(posts: LabelledPosts) -> list[str]:
    """One stratum per row for stratified splits: its label set (label powerset).

    Label sets seen fewer than 4 times are pooled by their rarest label, so rare combinations
    still land on both sides of a split.
    """
    keys = ["|".join(n for n, v in zip(posts.label_names, row) if v) or "none" for row in posts.y]
    freq = Counter(keys)
    label_freq = posts.y.sum(axis=0)
    strata = []
    for key, row in zip(keys, posts.y):
        if freq[key] >= 4:
            strata.append(key)
        elif row.any():
            strata.append("rare:" + posts.label_names[int(np.argmin(np.where(row > 0, label_freq, np.inf)))])
        else:
            strata.append("none")
    pooled = Counter(strata)
    strata = [s if pooled[s] >= 2 else "rest" for s in strata]
    if Counter(strata)["rest"] == 1:
        strata = [("none" if s == "rest" else s) for s in strata]
    return strata


def stratified_split(posts: LabelledPosts, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train/validation indices, stratified on each row's label set (:func:`label_strata`).

    With a fixed seed the split is reproducible.
    """
    from sklearn.model_selection import train_test_split

    strata = label_strata(posts)
    idx = np.arange(len(posts))
    try:
        train_idx, val_idx = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strata)
    except ValueError:
        # Too few rows for one validation row per stratum (tiny data sets): plain shuffle.
        train_idx, val_idx = train_test_split(idx, test_size=fraction, random_state=seed)
    return sorted(train_idx.tolist()), sorted(val_idx.tolist())
