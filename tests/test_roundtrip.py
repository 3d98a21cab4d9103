"""Every text survives `givetake score`: whatever a post holds, the standard readers get it back intact.

A property test writes random texts (line breaks of every kind, quotes, delimiters, NUL, a BOM,
U+2028/U+2029, emoji, lone surrogates, very long lines) to CSV, JSONL and Parquet inputs, scores
them into CSV, JSONL and Parquet outputs, and reads the outputs back with ``csv``, ``json`` and
``pyarrow``: the same rows, ids and texts, each row either scored or in the errors file with its reason.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from givetake.core.classifier import text_problem
from givetake.core.predictor import Predictor
from givetake.serving.score import score_file, side_paths
from tests.helpers import SHARED, needs_shared, read_output, texts, write_texts

TWCS = SHARED / "data" / "raw" / "twcs_random5k" / "twcs_small.csv"


def check_round_trip(rows: list[dict[str, Any]], out: Path, labels: list[str], errors: list[dict[str, Any]]) -> None:
    """Scored rows in order with their exact text and sane scores; the others in ``errors``, with a reason."""
    good = [r for r in rows if text_problem(r, "text") is None]
    got = read_output(out)
    assert [str(r["id"]) for r in got] == [str(r["id"]) for r in good]
    assert [r["text"] for r in got] == [r["text"] for r in good]
    for row in got:  # a row split in two would shift scores into other columns
        names = row["labels"].split("|") if isinstance(row["labels"], str) and row["labels"] else row["labels"]
        assert set(names or []) <= set(labels)
        assert all(0.0 <= float(row[f"score_{n}"]) <= 1.0 for n in labels)
    bad_rows = [i + 1 for i, r in enumerate(rows) if text_problem(r, "text") is not None]
    assert sorted(e["row"] for e in errors) == bad_rows and all(e["reason"] for e in errors)


def errors_of(out: Path) -> list[dict[str, Any]]:
    path = side_paths(out)["errors"]
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor(trained_run)


LONG_LINE = "our new shop " * 20_000 + "\r\r\n\u2028\x00\"'," * 10  # 260,000 characters on one line


@pytest.mark.parametrize("in_suffix", [".csv", ".jsonl", ".parquet"])
def test_every_text_survives_scoring(predictor: Predictor, in_suffix: str) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(texts(surrogates=in_suffix == ".jsonl"), min_size=1, max_size=12))
    @example(["Our new shop opens today.\r\rCome and see us.", LONG_LINE, "\ufeffbom first"])
    def round_trip(batch: list[str]) -> None:
        rows = [{"id": f"{i:05d}", "text": t} for i, t in enumerate(batch)]
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"posts{in_suffix}"
            write_texts(src, rows)
            for out_suffix in (".csv", ".jsonl", ".parquet"):
                out = Path(tmp) / f"scored{out_suffix}"
                summary = score_file(src, out, predictor, chunk_size=5, progress=False)
                assert summary.read == summary.scored + summary.errors == len(rows)
                check_round_trip(rows, out, predictor.labels, errors_of(out))

    round_trip()


@needs_shared(TWCS)
@pytest.mark.parametrize("out_name", ["scored.csv", "scored.jsonl", "scored.parquet"])
def test_twcs_archive_round_trips(predictor: Predictor, tmp_path: Path, out_name: str) -> None:
    # The row with tweet_id 1661315 holds "\r\r" in its quoted text: it once came back as two rows.
    with TWCS.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = tmp_path / out_name
    summary = score_file(TWCS, out, predictor, progress=False)
    assert (summary.read, summary.scored, summary.errors) == (5000, 5000, 0)
    got = read_output(out)
    assert len(got) == 5000
    assert [(str(r["tweet_id"]), r["text"]) for r in got] == [(r["tweet_id"], r["text"]) for r in rows]
