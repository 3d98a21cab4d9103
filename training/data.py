"""Load labelled posts (JSONL, CSV, Parquet) into a ``datasets.Dataset`` and split it.

Labels may come as a list (``["pitch", "ask"]``), as a ``|``- or ``,``-separated string
(``"pitch|ask"``), or as one 0/1 column per label. Every problem is reported with the file,
the row (1-based line for JSONL, data row for CSV/Parquet) and what is wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labels.schema import SEED_DIR, Schema

if TYPE_CHECKING:
    import datasets

SUFFIXES = (".jsonl", ".csv", ".parquet")


class DataError(ValueError):
    """Bad input data; the message names the file, the row and the problem."""


@dataclass
class LabelledPosts:
    """Texts with a multi-hot label matrix whose columns follow ``label_names``."""

    texts: list[str]
    y: np.ndarray  # shape (n, len(label_names)), values 0/1
    label_names: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Iterable[int]) -> LabelledPosts:
        """The rows at ``index``, in that order."""
        idx = list(index)
        return LabelledPosts(
            [self.texts[i] for i in idx], self.y[idx], self.label_names, [self.sources[i] for i in idx]
        )

    def to_dataset(self) -> datasets.Dataset:
        """As a ``datasets.Dataset`` with ``text`` and float multi-hot ``labels`` columns."""
        import datasets

        return datasets.Dataset.from_dict({"text": self.texts, "labels": self.y.astype(np.float32).tolist()})

    def counts(self) -> dict[str, int]:
        """Positives per label, plus ``none`` (rows with no label) and ``rows``."""
        out = {name: int(self.y[:, j].sum()) for j, name in enumerate(self.label_names)}
        out["none"] = int((self.y.sum(axis=1) == 0).sum())
        out["rows"] = len(self)
        return out


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every JSONL/CSV/Parquet file inside named directories."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
            if not found:
                raise DataError(f"{path}: directory holds no .jsonl, .csv or .parquet files")
            out.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .csv or .parquet")
            out.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    return out


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, object, None) per JSON object line, or (line number, None, problem).

    Blank lines are skipped; a line that does not parse, or is not an object, is reported
    with its number instead of stopping the read (callers decide whether that is fatal).
    """
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if isinstance(obj, dict):
                yield lineno, obj, None
            else:
                yield lineno, None, f"a JSON {type(obj).__name__}, not an object"


def _iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, record) pairs; JSONL is parsed here so a bad line is named exactly."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for lineno, obj, problem in iter_jsonl(path):
            if obj is None:
                raise DataError(f"{path}, line {lineno}: bad JSON line ({problem})")
            yield lineno, obj
        return
    import datasets

    datasets.disable_progress_bars()
    try:
        if suffix == ".csv":
            ds = datasets.Dataset.from_csv(str(path), keep_default_na=False)
        else:
            ds = datasets.Dataset.from_parquet(str(path))
    except Exception as exc:  # datasets raises many types for unreadable files
        raise DataError(f"{path}: cannot read file ({exc})") from None
    yield from enumerate(ds, 1)


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


def _is_one(value: Any, where: str, column: str) -> bool:
    if value in (1, "1", True, 1.0, "true", "True"):
        return True
    if value in (0, "0", False, 0.0, "", None, "false", "False"):
        return False
    raise DataError(f"{where}: column '{column}' must be 0 or 1, got {value!r}")


def load_file(
    path: str | Path, schema: Schema, text_column: str = "text", labels_column: str = "labels"
) -> LabelledPosts:
    """Load one file; raise :class:`DataError` for the first bad row."""
    path = Path(path)
    names = schema.names
    index = {n: j for j, n in enumerate(names)}
    texts: list[str] = []
    rows: list[np.ndarray] = []
    mode: str | None = None
    for rowno, rec in _iter_records(path):
        where = f"{path}, {'line' if path.suffix.lower() == '.jsonl' else 'row'} {rowno}"
        if mode is None:
            if labels_column in rec:
                mode = "column"
            elif all(n in rec for n in names):
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
                if label not in index:
                    raise DataError(f"{where}: unknown label {label!r}; known labels: {', '.join(names)}")
                vec[index[label]] = 1
        else:
            for label in names:
                vec[index[label]] = _is_one(rec.get(label), where, label)
        texts.append(text)
        rows.append(vec)
    if not texts:
        raise DataError(f"{path}: no rows")
    return LabelledPosts(texts, np.stack(rows), list(names), [path.name] * len(texts))


def load_posts(
    paths: Iterable[str | Path] | None, schema: Schema, text_column: str = "text", labels_column: str = "labels"
) -> LabelledPosts:
    """Load and concatenate every file under ``paths`` (default: the shipped seed corpus)."""
    files = expand_paths(list(paths) if paths else [SEED_DIR])
    parts = [load_file(p, schema, text_column, labels_column) for p in files]
    return LabelledPosts(
        [t for p in parts for t in p.texts],
        np.concatenate([p.y for p in parts]),
        list(schema.names),
        [s for p in parts for s in p.sources],
    )


def stratified_split(posts: LabelledPosts, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train/validation indices, stratified on each row's label set (label powerset).

    Label sets seen fewer than 4 times are pooled by their rarest label, so rare
    combinations still land on both sides; with a fixed seed the split is reproducible.
    """
    from sklearn.model_selection import train_test_split

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
    idx = np.arange(len(posts))
    try:
        train_idx, val_idx = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strata)
    except ValueError:
        # Too few rows for one validation row per stratum (tiny data sets): plain shuffle.
        train_idx, val_idx = train_test_split(idx, test_size=fraction, random_state=seed)
    return sorted(train_idx.tolist()), sorted(val_idx.tolist())
