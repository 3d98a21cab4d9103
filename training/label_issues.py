"""Find labelled rows that are probably mislabelled (``givetake label-issues --data FILE``).

Confident learning (cleanlab) needs out-of-sample probabilities: every row is scored by a
model that did not train on it. The rows are split into K folds; for each fold the lexical
model (TF-IDF + one logistic regression per label, ``training.lexical``, seconds on a CPU)
is trained on the other folds and scores this one. cleanlab's multi-label
``find_label_issues`` then flags the rows whose given labels disagree with those
probabilities more than the estimated noise allows, ranked by its label quality score
(lowest, i.e. most likely wrong, first).

A cell that was not judged (data labelled before the label existed) cannot be wrong: it is
given the model's own answer before cleanlab sees it, so it never raises a flag.

scikit-learn and cleanlab (together about 3 s to import) are imported inside the functions that
use them: the CLI imports this module for every command.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from givetake.core.lexical import LexicalModel
from givetake.core.thresholds import apply_thresholds, tune_thresholds
from givetake.training.data import DataError, LabelledPosts


@dataclass
class LabelIssue:
    """One row that looks mislabelled."""

    rank: int
    index: int  # position in the loaded data
    source: str
    row: int
    id: str
    text: str
    given: list[str]
    suggested: list[str]  # what the cross-validated model predicts
    changes: list[str]  # "+label" (probably missing) / "-label" (probably wrong)
    quality: float  # cleanlab's label quality score: low = likely mislabelled


def cross_val_probs(posts: LabelledPosts, folds: int = 5, seed: int = 42) -> np.ndarray:
    """Out-of-fold probabilities from the lexical model, shape (rows, labels)."""
    from sklearn.model_selection import KFold

    if len(posts) < folds * 2:
        raise DataError(f"label-issues needs at least {folds * 2} rows for {folds}-fold cross-validation")
    probs = np.zeros(posts.y.shape, dtype=np.float64)
    for train_idx, test_idx in KFold(n_splits=folds, shuffle=True, random_state=seed).split(posts.texts):
        part = posts.subset(train_idx)
        model = LexicalModel(posts.label_names, seed=seed).fit(part.texts, part.y, part.known)
        probs[test_idx] = model.predict_proba([posts.texts[i] for i in test_idx])
    return probs


def find_issues(posts: LabelledPosts, probs: np.ndarray) -> list[LabelIssue]:
    """The rows cleanlab flags as mislabelled, most likely first."""
    from cleanlab.multilabel_classification import get_label_quality_scores
    from cleanlab.multilabel_classification.filter import find_label_issues

    names = posts.label_names
    thresholds = tune_thresholds(posts.y, probs, names, posts.known)
    suggested = apply_thresholds(probs, thresholds, names)
    given = np.where(posts.mask > 0, posts.y, suggested)  # an unjudged cell agrees with the model
    labels = [list(np.flatnonzero(row)) for row in given]
    # Clip: cleanlab rejects probabilities of exactly 0 or 1, which a constant-score label gives.
    pred_probs = np.clip(probs, 1e-6, 1 - 1e-6)
    flagged = find_label_issues(labels=labels, pred_probs=pred_probs, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, pred_probs)
    assert posts.ids is not None and posts.rows is not None
    out = []
    for rank, i in enumerate(flagged, 1):
        adds = [f"+{n}" for j, n in enumerate(names) if suggested[i, j] and not given[i, j]]
        drops = [f"-{n}" for j, n in enumerate(names) if given[i, j] and not suggested[i, j]]
        out.append(
            LabelIssue(
                rank=rank,
                index=int(i),
                source=posts.sources[i],
                row=posts.rows[i],
                id=posts.ids[i],
                text=posts.texts[i],
                given=[n for j, n in enumerate(names) if posts.y[i, j]],
                suggested=[n for j, n in enumerate(names) if suggested[i, j]],
                changes=adds + drops,
                quality=float(quality[i]),
            )
        )
    return out


def write_issues(issues: list[LabelIssue], output: str | Path) -> None:
    """Write the ranked issues as CSV (labels joined with ``|``)."""
    with Path(output).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["rank", "source", "row", "id", "text", "given_labels", "suggested_labels", "changes", "quality"]
        )
        for it in issues:
            writer.writerow(
                [
                    it.rank,
                    it.source,
                    it.row,
                    it.id,
                    it.text,
                    "|".join(it.given),
                    "|".join(it.suggested),
                    " ".join(it.changes),
                    f"{it.quality:.4f}",
                ]
            )
