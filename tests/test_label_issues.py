"""`givetake label-issues`: cleanlab on cross-validated probabilities finds deliberately flipped labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from givetake.cli import app
from givetake.training.data import LabelledPosts
from givetake.training.label_issues import cross_val_probs, find_issues

WORDS = {
    "pitch": ["buy", "sale", "discount", "shop", "offer", "tickets", "launch", "store"],
    "ask": ["please", "retweet", "vote", "share", "follow", "sign", "donate", "sponsor"],
    "customer_service_reply": ["sorry", "dm", "refund", "apologies", "delay", "account", "fixed", "ticket"],
    "": ["weather", "lunch", "walk", "cat", "sunny", "coffee", "weekend", "tired"],
}
NAMES = ["pitch", "ask", "customer_service_reply"]
FLIPPED = [3, 40, 77, 101, 130, 166, 190, 215]


def _synthetic() -> tuple[list[str], np.ndarray, np.ndarray]:
    """240 posts, 60 per class (three labels and none), and the same labels with 8 of them flipped."""
    rng = np.random.default_rng(0)
    texts, y = [], []
    for label, words in WORDS.items():
        for _ in range(60):
            texts.append(" ".join(rng.choice(words, 5)) + " " + " ".join(rng.choice(["the", "a", "today", "now"], 2)))
            y.append([int(label == n) for n in NAMES])
    clean = np.array(y)
    noisy = clean.copy()
    for i in FLIPPED:  # move the row to the next class: a wrong label and a missing one
        k = (int(np.argmax(np.r_[clean[i], 1 - clean[i].any()])) + 1) % 4
        noisy[i] = [int(j == k) for j in range(3)]
    return texts, clean, noisy


def test_flipped_labels_are_found_and_ranked_first() -> None:
    texts, clean, noisy = _synthetic()
    posts = LabelledPosts(texts, noisy, NAMES, ["synthetic.jsonl"] * len(texts), rows=list(range(1, 241)))
    issues = find_issues(posts, cross_val_probs(posts, folds=5))
    flagged = [it.index for it in issues]
    assert set(FLIPPED) <= set(flagged)  # every flipped row is found...
    assert set(flagged[: len(FLIPPED)]) == set(FLIPPED)  # ...and they are the most suspect
    first = issues[0]
    assert first.suggested == [n for n, v in zip(NAMES, clean[first.index]) if v]  # the clean label comes back
    assert first.changes and first.quality < issues[-1].quality + 1e-9


def test_unjudged_cells_never_raise_a_flag() -> None:
    texts, clean, _ = _synthetic()
    y = clean.copy()
    known = np.ones_like(y)
    y[:30, 0] = 0  # 30 pitch posts whose pitch cell was never judged
    known[:30, 0] = 0
    posts = LabelledPosts(texts, y, NAMES, ["s.jsonl"] * len(texts), known=known)
    flagged = {it.index for it in find_issues(posts, cross_val_probs(posts, folds=5))}
    assert not flagged & set(range(30))


def test_label_issues_command_writes_ranked_csv(tmp_path: Path) -> None:
    texts, _, noisy = _synthetic()
    data = tmp_path / "noisy.jsonl"
    with data.open("w") as fh:
        for i, (t, row) in enumerate(zip(texts, noisy)):
            fh.write(json.dumps({"id": f"p{i}", "text": t, "labels": [n for n, v in zip(NAMES, row) if v]}) + "\n")
    out = tmp_path / "issues.csv"
    result = CliRunner().invoke(app, ["label-issues", "--data", str(data), "-o", str(out), "--show", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = list(csv.DictReader(out.open()))
    assert [r["rank"] for r in rows[:3]] == ["1", "2", "3"]
    assert {int(r["id"][1:]) for r in rows[: len(FLIPPED)]} == set(FLIPPED)
    assert rows[0]["source"] == "noisy.jsonl" and int(rows[0]["row"]) == int(rows[0]["id"][1:]) + 1
    assert f"rows flagged (5-fold cross-validation); wrote {out}" in result.output
