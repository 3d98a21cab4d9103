"""The shipped seed corpus: parses, uses only schema labels, meets the balance minimums,
has no templated near-duplicates and copies no rows from ../shared/data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pytest

from givetake.labels.schema import SEED_DIR, load_schema
from givetake.labels.stats import corpus_rows, near_duplicate_pairs
from tests.helpers import GOLD_DEV, ROOT, SHARED, needs_shared

PLATFORMS = {"x", "linkedin", "facebook", "instagram", "other"}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return corpus_rows(SEED_DIR)


def test_every_line_is_a_valid_post() -> None:
    names = set(load_schema().names)
    files = sorted(SEED_DIR.glob("*.jsonl"))
    assert files
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            row = json.loads(line)
            where = f"{path.name}:{lineno}"
            assert set(row) == {"text", "labels", "platform"}, where
            assert isinstance(row["text"], str) and row["text"].strip(), where
            assert set(row["labels"]) <= names, f"{where}: label not in schema: {row['labels']}"
            assert len(set(row["labels"])) == len(row["labels"]), where
            assert row["platform"] in PLATFORMS, where


def test_balance_minimums(rows: list[dict]) -> None:
    per_label = Counter(label for r in rows for label in r["labels"])
    assert len(rows) >= 3000
    for name in load_schema().names:
        assert per_label[name] >= 400, f"{name}: {per_label[name]} positives"
    assert sum(not r["labels"] for r in rows) >= 900
    assert sum(len(r["labels"]) >= 2 for r in rows) >= 300


def test_styles_and_lengths(rows: list[dict]) -> None:
    platforms = Counter(r["platform"] for r in rows)
    assert all(platforms[p] >= 30 for p in PLATFORMS), platforms
    words = [len(r["text"].split()) for r in rows]
    chars = [len(r["text"]) for r in rows]
    assert min(words) >= 3 and max(chars) <= 1500
    assert sum(c > 600 for c in chars) >= 100, "long LinkedIn-style posts"
    assert sum(r["text"].startswith("@") for r in rows) >= 300, "replies that start with @user"
    assert sum("#" in r["text"] for r in rows) >= 300, "hashtags"


def test_hard_cases_are_present(rows: list[dict]) -> None:
    def count(pattern: str, labels: set[str]) -> int:
        rx = re.compile(pattern, re.I)
        return sum(bool(rx.search(r["text"])) and set(r["labels"]) == labels for r in rows)

    assert count(r"\bDM\b|order number|booking ref", {"customer_service_reply"}) >= 50  # agent asks: reply, not ask
    assert count(r"^@\w+", set()) >= 150  # customers' complaints and questions to brands: none
    assert count(r"\bRT\b|retweet|follow", {"pitch", "ask"}) >= 30  # "RT to win our ..."
    assert count(r"\?", {"pitch"}) >= 30  # rhetorical ad questions
    assert count(r"#FF|petition|donat", {"ask"}) >= 20


def test_near_duplicates_below_two_percent_of_pairs(rows: list[dict]) -> None:
    texts = [r["text"] for r in rows]
    total_pairs = len(texts) * (len(texts) - 1) // 2
    pairs = near_duplicate_pairs(texts, threshold=0.6)
    assert len(pairs) / total_pairs < 0.02
    # Stricter than the issue asks: near-identical posts should not exist at all.
    assert len(pairs) <= len(texts) // 100, pairs[:5]


def test_near_duplicate_check_detects_templates() -> None:
    templated = [
        f"Win a brand new {thing} from our shop today, just follow and retweet to enter"
        for thing in ("phone", "bike", "kettle", "laptop")
    ]
    assert len(near_duplicate_pairs(templated, threshold=0.6)) == 6
    assert near_duplicate_pairs(["the cat sat on the mat", "a dog ran in the park"], threshold=0.6) == []


@needs_shared(SHARED / "tools" / "check_copied_rows.py")
def test_no_rows_copied_from_shared_data() -> None:
    result = subprocess.run(
        [sys.executable, str(SHARED / "tools" / "check_copied_rows.py"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_label_table_in_readme_is_current() -> None:
    from givetake.labels.stats import render_table

    readme = (ROOT / "labels" / "README.md").read_text(encoding="utf-8")
    assert render_table(corpus_rows(SEED_DIR)) in readme, "run `make labels-table` to refresh labels/README.md"


@needs_shared(GOLD_DEV)
def test_no_close_paraphrase_of_gold_dev_posts(rows: list[dict]) -> None:
    """The gold dev set measures transfer to real posts; the corpus must not echo its rows."""
    gold = [json.loads(line)["text"] for line in GOLD_DEV.read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in rows]
    pairs = near_duplicate_pairs(texts + gold, threshold=0.5)
    leaks = [(texts[i], gold[j - len(texts)]) for i, j, _ in pairs if i < len(texts) <= j]
    assert not leaks, leaks[:3]
