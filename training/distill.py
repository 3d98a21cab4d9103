"""A teacher's scores for the training rows: what a student learns besides the labels (distillation).

Two uses, one mechanism (``givetake train --teacher T``):

- a stronger, slower model (all-mpnet-base-v2 fine-tuned on the same corpus) teaches the fast
  default one. Its scores over the shipped corpus are numbers the project ships
  (``labels/teacher_scores.jsonl``, written by ``givetake teach``), so ``make serve`` trains the
  student without the teacher installed;
- the live model teaches a retrained one the labels it already knows, so that a new label (and its
  new head) does not cost the old ones (``--init-from givetake:live --teacher givetake:live``).

A scores file is JSON lines: a header ``{"teacher": ..., "labels": [...]}``, then one
``{"key": ..., "scores": [...]}`` per text, ``key`` being :func:`text_key` of the text (the texts
themselves stay in the corpus). A label the teacher lacks, or a row it has no score for, is
learnt from the labels alone (NaN in :func:`teacher_targets`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from givetake.core.predictor import Predictor
from givetake.core.records import input_format, iter_records
from givetake.core.text import normalize
from givetake.errors import DataError
from givetake.labels.schema import SEED_DIR

SHIPPED = SEED_DIR.parent / "teacher_scores.jsonl"
CHUNK = 256  # texts per call of a model teacher (a progress step)


def text_key(text: str) -> str:
    """A short stable key of a text (normalised as every prediction path reads it)."""
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()[:16]


def write_scores(path: Path, texts: Sequence[str], probs: np.ndarray, labels: Sequence[str], teacher: str) -> int:
    """Write a teacher's scores for ``texts`` to ``path``; return the rows written (duplicates once)."""
    seen: set[str] = set()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"teacher": teacher, "labels": list(labels)}) + "\n")
        for text, row in zip(texts, probs, strict=True):
            key = text_key(text)
            if key in seen:
                continue
            seen.add(key)
            fh.write(json.dumps({"key": key, "scores": [round(float(p), 4) for p in row]}) + "\n")
    return len(seen)


def read_scores(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and ``{key: scores}`` of a scores file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0])
        scores = {}
        for line in lines[1:]:
            if line.strip():
                row = json.loads(line)
                scores[str(row["key"])] = np.asarray(row["scores"], dtype=np.float32)
    except (OSError, IndexError) as exc:
        raise DataError(f"cannot read teacher scores {path}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a teacher-scores file ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("labels"), list):
        raise DataError(f"{path}: the first line must be a header with the teacher's labels")
    width = len(header["labels"])
    if any(len(v) != width for v in scores.values()):
        raise DataError(f"{path}: every row must have {width} scores, one per label of the header")
    return header, scores


def read_texts(paths: Sequence[str | Path], text_column: str, limit: int, seed: int) -> list[str]:
    """Posts of unlabelled files (CSV, JSONL, Parquet, tweets.js), deduplicated; a random ``limit`` of them.

    A row without text in ``text_column`` (or ``full_text``, as X archives name it) is skipped.
    """
    seen: dict[str, str] = {}
    unreadable: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise DataError(f"unlabelled posts: {path} is not a file")
        for row, record, reason in iter_records(path, input_format(path)):
            if record is None:
                unreadable.append(f"{path.name} row {row}: {reason}")
                continue
            value = record.get(text_column) or record.get("full_text")
            if isinstance(value, str) and value.strip():
                seen.setdefault(text_key(value), value)
    texts = list(seen.values())
    if not texts:
        why = f"; {len(unreadable)} unreadable rows, e.g. {unreadable[0]}" if unreadable else ""
        raise DataError(f"no posts with text in {', '.join(map(str, paths))} (column {text_column!r}){why}")
    if len(texts) > limit:
        texts = random.Random(seed).sample(texts, limit)
    return texts


def teacher_targets(
    teacher: str, texts: Sequence[str], labels: Sequence[str], progress: bool = True
) -> tuple[np.ndarray, str]:
    """The teacher's scores for ``texts`` in the order of ``labels`` (NaN where it has none), and its name.

    ``teacher`` is a scores file (``.jsonl``) or a givetake model (a run directory or a BentoML tag),
    which is then loaded and run on ``texts``.
    """
    out = np.full((len(texts), len(labels)), np.nan, dtype=np.float32)
    path = Path(teacher)
    if path.suffix == ".jsonl" or path.is_file():
        header, scores = read_scores(path)
        columns = {n: i for i, n in enumerate(header["labels"])}
        for row, text in enumerate(texts):
            found = scores.get(text_key(text))
            if found is not None:
                for j, name in enumerate(labels):
                    if name in columns:
                        out[row, j] = found[columns[name]]
        return out, str(header.get("teacher") or path.name)
    predictor = Predictor(teacher)
    pairs = [(j, predictor.labels.index(n)) for j, n in enumerate(labels) if n in predictor.labels]
    with tqdm(total=len(texts), desc=f"teacher {Path(teacher).name}", unit=" posts", disable=not progress) as bar:
        for start in range(0, len(texts), CHUNK):
            # The transformer half: the student's own lexical half is trained beside it, and blending
            # the teacher's lexical half in as well counted the words twice (bench/RESULTS.md).
            probs, _ = predictor.predict_proba(list(texts[start : start + CHUNK]), lexical=False)
            for j, k in pairs:
                out[start : start + CHUNK, j] = probs[:, k]
            bar.update(len(probs))
    return out, teacher
