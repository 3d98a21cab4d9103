"""`givetake suggest`: the most uncertain posts first, near-duplicates skipped, CSV and Label Studio files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.labels.schema import load_schema
from givetake.training.importers import import_label_studio
from givetake.training.suggest import rank_pool, read_pool, uncertainty
from tests.helpers import make_rows, read_seed_rows, write_input

TH = {"a": 0.5, "b": 0.2}


def test_most_uncertain_first() -> None:
    probs = np.array([[0.6, 0.0], [0.99, 0.01], [0.5, 0.9], [0.1, 0.19], [0.3, 0.05]])
    score, closest = uncertainty(probs, TH, ["a", "b"])
    # row 0: a is 0.1 above 0.5 of 0.5 room -> 0.8; row 2: exactly at a's threshold -> 1;
    # row 3: b 0.01 below 0.2 -> 0.95; row 4: b 0.15 below of 0.2 room -> 0.25, a 0.2 below -> 0.6
    assert score == pytest.approx([0.8, 0.05, 1.0, 0.95, 0.6])  # row 1: b 0.19 below of 0.2 room
    assert closest.tolist() == [0, 1, 0, 1, 0]
    texts = ["red fox", "blue whale", "green frog", "grey owl", "pink pig"]
    picks = rank_pool(texts, probs, TH, ["a", "b"], n=3, ids=["i0", "i1", "i2", "i3", "i4"])
    assert [p.id for p in picks] == ["i2", "i3", "i0"] and [p.rank for p in picks] == [1, 2, 3]
    assert picks[1].closest_label == "b" and picks[0].predicted == ["a", "b"]


def test_near_duplicates_are_skipped() -> None:
    texts = ["flash sale on all boots today", "flash sale on all boots today!!", "what is your favourite walk"]
    probs = np.array([[0.5, 0.0], [0.51, 0.0], [0.4, 0.0]])
    assert [p.text for p in rank_pool(texts, probs, TH, ["a", "b"], n=2)] == [texts[0], texts[2]]
    assert len(rank_pool(texts, probs, TH, ["a", "b"], n=3, max_similarity=1.0)) == 3


def test_suggest_command_writes_csv_and_label_studio_tasks(trained_run: Path, tmp_path: Path) -> None:
    rows = read_seed_rows(8)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{i}", "text": r["text"]}) + "\n" for i, r in enumerate(rows)))
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({"text": rows[0]["text"], "labels": rows[0]["labels"]}) + "\n")
    out = tmp_path / "next.csv"
    result = CliRunner().invoke(
        app,
        ["suggest", "--pool", str(pool), "-n", "10", "--model", str(trained_run), "-o", str(out)]
        + ["--exclude", str(labelled)],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    picked = list(csv.DictReader(out.open()))
    assert len(picked) == 10 and "p0" not in {r["id"] for r in picked}  # already labelled: left out
    scores = [float(r["uncertainty"]) for r in picked]
    assert scores == sorted(scores, reverse=True)
    tasks = json.loads(out.with_suffix(".labelstudio.json").read_text())
    assert tasks[0]["data"]["text"] == picked[0]["text"]
    assert tasks[0]["predictions"][0]["result"][0]["type"] == "choices"
    config = out.with_name("next.labelstudio.label_config.xml").read_text()
    assert '<Choices name="labels" toName="text" choice="multiple"' in config and 'value="pitch"' in config
    # a task labelled in Label Studio as pre-annotated comes back through `givetake import`
    tasks[0]["annotations"] = [{"id": 1, "result": tasks[0]["predictions"][0]["result"], "was_cancelled": False}]
    (tmp_path / "done.json").write_text(json.dumps(tasks[:1]))
    back = import_label_studio(tmp_path / "done.json", load_schema())
    expected = picked[0]["predicted_labels"].split("|") if picked[0]["predicted_labels"] else []
    assert back.rows[0]["labels"] == expected


@pytest.mark.parametrize("name", ["pool.csv", "pool.parquet", "tweets.js"])
def test_pool_is_read_by_the_shared_reader(tmp_path: Path, name: str) -> None:
    """CSV ids stay strings, unusable rows are skipped and counted, and a tweets.js archive is a pool too."""
    rows = make_rows(6, bad={2: "   ", 4: None})
    pool = write_input(tmp_path / name, rows)
    column = "full_text" if name.endswith(".js") else "text"
    labelled = write_input(tmp_path / "done.jsonl", [{"id": 5, column: rows[5]["text"]}])
    texts, ids, skipped = read_pool(pool, text_column=column, exclude=[labelled])
    assert texts == [rows[i]["text"] for i in (0, 1, 3)]
    # The id field (an id of 0 included; a CSV id stays the string it was), else the row number.
    assert ids == (["1", "2", "4"] if name.endswith(".js") else ["0", "1", "3"])
    assert skipped == 3  # two without text, one already labelled
