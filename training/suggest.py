"""Pick the unlabelled posts worth labelling next (``givetake suggest --pool FILE -n 200``).

Uncertainty: for each post and label, how close the probability is to that label's
threshold, scaled so 1 is exactly at the threshold and 0 is at 0 or 1 (on the threshold's
side); a post scores its closest label. Diversity: posts are taken greedily from the most
uncertain down, skipping any whose TF-IDF cosine similarity to a post already taken is above
``max_similarity``, so a batch is not twenty copies of the same borderline promo.

The picks are written as CSV and as a Label Studio import file whose tasks carry the
model's labels as pre-annotations, plus the matching labelling interface
(``<output>.label_config.xml``); export the finished project and ``givetake import`` it.

scikit-learn (over a second to import) is imported inside :func:`select_diverse`: the CLI imports
this module for every command.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from givetake.core.text import normalize
from givetake.errors import DataError
from givetake.labels.schema import Schema
from givetake.training.data import expand_paths, read_records
from givetake.training.importers import NO_LABEL

MAX_SIMILARITY = 0.8


@dataclass
class Suggestion:
    """One post to label next."""

    rank: int
    id: str
    text: str
    uncertainty: float
    closest_label: str  # the label whose probability is nearest its threshold
    predicted: list[str]
    scores: dict[str, float]


def uncertainty(
    probs: np.ndarray, thresholds: dict[str, float], label_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per post: the uncertainty in [0, 1] of its most uncertain label, and that label's index."""
    cut = np.array([thresholds[n] for n in label_names], dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    room = np.where(probs >= cut, 1 - cut, cut)  # distance from the threshold to the extreme on that side
    closeness = 1 - np.abs(probs - cut) / np.maximum(room, 1e-9)
    return closeness.max(axis=1), closeness.argmax(axis=1)


def select_diverse(texts: list[str], order: np.ndarray, n: int, max_similarity: float = MAX_SIMILARITY) -> list[int]:
    """Up to ``n`` indices taken in ``order``, skipping near-duplicates of those already taken."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not texts or n <= 0:
        return []
    vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform([normalize(t) for t in texts])
    chosen: list[int] = []
    for i in order:
        if chosen and (vectors[chosen] @ vectors[int(i)].T).max() > max_similarity + 1e-6:  # float slack at 1.0
            continue
        chosen.append(int(i))
        if len(chosen) == n:
            break
    return chosen


def rank_pool(
    texts: list[str],
    probs: np.ndarray,
    thresholds: dict[str, float],
    label_names: list[str],
    n: int,
    max_similarity: float = MAX_SIMILARITY,
    ids: list[str] | None = None,
) -> list[Suggestion]:
    """The ``n`` most uncertain, mutually dissimilar posts, most uncertain first."""
    score, closest = uncertainty(probs, thresholds, label_names)
    order = np.argsort(-score, kind="stable")
    chosen = select_diverse(texts, order, n, max_similarity)
    cut = np.array([thresholds[name] for name in label_names])
    return [
        Suggestion(
            rank=rank,
            id=ids[i] if ids else str(i + 1),
            text=texts[i],
            uncertainty=round(float(score[i]), 4),
            closest_label=label_names[int(closest[i])],
            predicted=[name for name, on in zip(label_names, probs[i] >= cut) if on],
            scores={name: round(float(p), 4) for name, p in zip(label_names, probs[i])},
        )
        for rank, i in enumerate(chosen, 1)
    ]


def read_pool(
    path: str | Path, text_column: str = "text", exclude: list[str | Path] | None = None
) -> tuple[list[str], list[str], int]:
    """Texts and ids of a pool file (CSV/JSONL/Parquet, or a tweets.js archive with ``text_column='full_text'``);
    posts in ``exclude`` files are left out.

    Returns the texts, their ids (the ``id`` field, else the row number) and how many rows were
    skipped (no text, a duplicate, or already labelled).
    """
    seen: set[str] = set()
    for labelled in expand_paths(exclude or []):
        for _, rec in read_records(labelled):
            if isinstance(rec.get(text_column), str):
                seen.add(normalize(rec[text_column]).lower())
    texts: list[str] = []
    ids: list[str] = []
    skipped = 0
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    for rowno, rec in read_records(path):
        if text_column not in rec and not texts and not skipped:
            raise DataError(f"{path}: no text column {text_column!r}; columns are {', '.join(map(str, rec))}")
        text = rec.get(text_column)
        if not isinstance(text, str) or not text.strip() or normalize(text).lower() in seen:
            skipped += 1
            continue
        key = normalize(text).lower()
        seen.add(key)
        texts.append(text)
        raw_id = rec.get("id")
        ids.append(str(rowno) if raw_id is None or raw_id == "" else str(raw_id))  # an id of 0 is an id
    if not texts:
        raise DataError(f"{path}: no posts to rank (every row was empty, a duplicate or already labelled)")
    return texts, ids, skipped


def write_csv(suggestions: list[Suggestion], label_names: list[str], output: str | Path) -> None:
    """The suggestions as CSV: rank, id, text, uncertainty, closest label, predicted labels, scores."""
    with Path(output).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["rank", "id", "text", "uncertainty", "closest_label", "predicted_labels"]
            + [f"score_{n}" for n in label_names]
        )
        for s in suggestions:
            writer.writerow(
                [s.rank, s.id, s.text, s.uncertainty, s.closest_label, "|".join(s.predicted)]
                + [s.scores[n] for n in label_names]
            )


def label_studio_tasks(suggestions: list[Suggestion], model_version: str) -> list[dict[str, Any]]:
    """Label Studio import tasks with the model's labels as pre-annotations ("predictions")."""
    return [
        {
            "data": {"text": s.text, "id": s.id, "rank": s.rank},
            "predictions": [
                {
                    "model_version": model_version,
                    "score": s.uncertainty,
                    "result": [
                        {
                            "from_name": "labels",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": s.predicted or [NO_LABEL]},
                        }
                    ],
                }
            ],
        }
        for s in suggestions
    ]


def label_studio_config(schema: Schema) -> str:
    """The Label Studio labelling interface for the schema: one multiple-choice control, plus "none"."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(spec.name)} hint={quoteattr(spec.summary)}/>" for spec in schema.labels
    )
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        '  <Choices name="labels" toName="text" choice="multiple" showInLine="false">\n'
        f"{choices}\n"
        f'    <Choice value="{NO_LABEL}" hint="the post does none of these"/>\n'
        "  </Choices>\n"
        "</View>\n"
    )


def write_label_studio(suggestions: list[Suggestion], schema: Schema, model_version: str, output: str | Path) -> Path:
    """Write the import file and ``<output>.label_config.xml`` beside it; return the config's path."""
    output = Path(output)
    output.write_text(
        json.dumps(label_studio_tasks(suggestions, model_version), ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )
    config = output.with_name(output.stem + ".label_config.xml")
    config.write_text(label_studio_config(schema), encoding="utf-8")
    return config
