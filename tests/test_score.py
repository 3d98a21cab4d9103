"""Offline archive scoring (`givetake score`) on the tiny trained model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core import records
from givetake.core.predictor import Predictor
from givetake.core.records import iter_records
from givetake.errors import DataError
from givetake.serving.score import ScoreError, score_file, side_paths
from tests.helpers import BAD, make_rows, read_errors, read_output, write_input

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    # torch: scores must not depend on chunking (int8's move slightly with batch-mates; tests/test_engines.py).
    return Predictor(trained_run, engine="torch")


@pytest.mark.parametrize(
    ("src_name", "out_name"),
    [
        ("posts.csv", "scored.csv"),
        ("posts.jsonl", "scored.jsonl"),
        ("posts.parquet", "scored.parquet"),
        ("tweets.js", "scored"),  # no suffix: JSONL for a tweets.js input
        ("posts.jsonl", "scored.csv"),
        ("posts.csv", "scored.parquet"),
    ],
)
def test_scores_every_format(predictor: Predictor, tmp_path: Path, src_name: str, out_name: str) -> None:
    rows = make_rows(40)
    src = write_input(tmp_path / src_name, rows)
    out = tmp_path / out_name
    summary = score_file(src, out, predictor, chunk_size=16, progress=False)

    good = [r for r in rows if isinstance(r["text"], str) and r["text"].strip()]
    assert (summary.read, summary.scored, summary.errors) == (40, len(good), 40 - len(good))
    assert summary.read == summary.scored + summary.errors
    errors = read_errors(out)
    assert [e["row"] for e in errors] == [i + 1 for i in sorted(BAD)]  # 1-based rows, none dropped silently
    assert all(e["reason"] for e in errors)
    assert not side_paths(out)["state"].exists() and not side_paths(out)["parts"].exists()

    got = read_output(out)
    assert len(got) == len(good)
    expected = predictor.predict([r["text"] for r in good])
    is_csv, is_tweets = out.suffix == ".csv", src.suffix == ".js"
    for row, src_row, pred in zip(got, good, expected, strict=True):
        if is_tweets:
            assert row["id_str"] == str(src_row["id"]) and row["full_text"] == src_row["text"]
            assert row["entities"] == {"hashtags": [], "urls": []} and "created_at" in row
        else:
            assert str(row["id"]) == str(src_row["id"]) and row["text"] == src_row["text"]
            assert row["author"] == src_row["author"]
        labels = row["labels"].split("|") if is_csv and row["labels"] else row["labels"]
        assert (labels or []) == pred["labels"]
        for name in predictor.labels:
            assert float(row[f"score_{name}"]) == pytest.approx(pred["scores"][name], abs=1e-6)


def test_reasons_for_unusable_rows(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "messy.jsonl"
    src.write_text(
        '{"text": "fine post"}\n{"text": ""}\n\n{"body": "no text field"}\n{oops\n[1, 2]\n{"text": ["a list"]}\n',
        encoding="utf-8",
    )
    out = tmp_path / "messy.out.jsonl"
    summary = score_file(src, out, predictor, progress=False)
    assert (summary.read, summary.scored, summary.errors) == (6, 1, 5)
    reasons = {e["row"]: e["reason"] for e in read_errors(out)}
    assert set(reasons) == {2, 4, 5, 6, 7}  # JSONL rows are line numbers; the blank line is not a row
    assert "empty" in reasons[2] and "no 'text' field" in reasons[4] and "not valid JSON" in reasons[5]
    assert "not an object" in reasons[6] and "not text" in reasons[7]


def test_ragged_csv_rows_are_errors(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "ragged.csv"
    src.write_text("id,text\n1,hello there\n2,one,too many\n3,\n", encoding="utf-8")
    out = tmp_path / "ragged.out.csv"
    summary = score_file(src, out, predictor, progress=False)
    assert (summary.read, summary.scored, summary.errors) == (3, 1, 2)
    assert [e["row"] for e in read_errors(out)] == [2, 3]
    assert "3 fields but the header has 2" in read_errors(out)[0]["reason"]


def test_clashing_input_columns_are_kept(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "labelled.jsonl"
    src.write_text(json.dumps({"text": "our new shop opens", "labels": ["pitch"], "score_ask": 1}) + "\n")
    out = tmp_path / "labelled.out.jsonl"
    score_file(src, out, predictor, progress=False)
    (row,) = read_output(out)
    assert row["input_labels"] == ["pitch"] and row["input_score_ask"] == 1
    assert isinstance(row["labels"], list) and isinstance(row["score_ask"], float)


def test_wrong_text_column_and_bad_files(predictor: Predictor, tmp_path: Path) -> None:
    assert issubclass(ScoreError, DataError)  # so `givetake score` prints one line and exits 2
    src = write_input(tmp_path / "p.csv", make_rows(5, bad={}))
    with pytest.raises(ScoreError, match=r"no column 'body' in the header; columns are: id, text, author"):
        score_file(src, tmp_path / "o.csv", predictor, text_column="body", progress=False)
    jsonl = write_input(tmp_path / "p.jsonl", make_rows(5, bad={}))
    with pytest.raises(ScoreError, match=r"has a 'body' field; fields are: id, text, author; pass --text-column"):
        score_file(jsonl, tmp_path / "o.jsonl", predictor, text_column="body", progress=False)
    assert not (tmp_path / "o.jsonl").exists() and not side_paths(tmp_path / "o.jsonl")["state"].exists()
    with pytest.raises(DataError, match="unsupported input type '.txt'"):
        score_file(src.rename(tmp_path / "p.txt"), tmp_path / "o.csv", predictor, progress=False)
    with pytest.raises(ScoreError, match="cannot write '.xlsx'"):
        score_file(jsonl, tmp_path / "o.xlsx", predictor, progress=False)
    js = tmp_path / "tweets.js"
    js.write_text('var x = [{"tweet": {}}]')
    with pytest.raises(DataError, match="window.YTD.tweets.part0"):
        score_file(js, tmp_path / "o.jsonl", predictor, progress=False)


def test_tweets_js_is_streamed_across_read_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(30, bad={})
    src = write_input(tmp_path / "tweets.js", rows)
    monkeypatch.setattr(records, "_READ_BLOCK", 37)  # every tweet object spans several reads
    got = list(iter_records(src, "tweets"))
    assert [(n, rec["id_str"], rec["full_text"]) for n, rec, _ in got] == [
        (i + 1, str(r["id"]), r["text"]) for i, r in enumerate(rows)
    ]
    src.write_text(src.read_text()[:-40])  # cut off: a clear error, not a hang or a silent stop
    with pytest.raises(DataError, match="not valid JSON|without the closing"):
        list(iter_records(src, "tweets"))


class _StopAfter:
    """A predictor that raises KeyboardInterrupt on its ``n``-th call (a Ctrl-C mid-run)."""

    def __init__(self, predictor: Predictor, n: int) -> None:
        self.inner, self.n = predictor, n
        self.labels, self.model_dir = predictor.labels, predictor.model_dir

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
        return self.inner.predict(texts)


@pytest.mark.parametrize("out_name", ["scored.csv", "scored.parquet"])
def test_interrupted_run_resumes_without_loss_or_duplicates(
    predictor: Predictor, tmp_path: Path, out_name: str
) -> None:
    rows = make_rows(100)
    src = write_input(tmp_path / "posts.jsonl", rows)
    out = tmp_path / out_name
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, _StopAfter(predictor, 4), chunk_size=10, progress=False)  # type: ignore[arg-type]
    state = json.loads(side_paths(out)["state"].read_text())
    assert state["rows_read"] == 30
    if out.suffix == ".csv":  # a torn write after the last commit is cut off on resume
        with out.open("ab") as fh:
            fh.write(b"31,half a row")
    summary = score_file(src, out, predictor, chunk_size=10, resume=True, progress=False)
    assert (summary.read, summary.scored, summary.errors, summary.resumed_from) == (100, 97, 3, 30)
    ids = [int(r["id"]) for r in read_output(out)]
    assert ids == [i for i in range(100) if i not in BAD]
    assert [e["row"] for e in read_errors(out)] == [i + 1 for i in sorted(BAD)]


def test_resume_refuses_a_changed_input_or_a_finished_run(predictor: Predictor, tmp_path: Path) -> None:
    src = write_input(tmp_path / "posts.jsonl", make_rows(30))
    out = tmp_path / "scored.jsonl"
    with pytest.raises(KeyboardInterrupt):
        score_file(src, out, _StopAfter(predictor, 2), chunk_size=10, progress=False)  # type: ignore[arg-type]
    with src.open("a") as fh:
        fh.write(json.dumps({"id": 99, "text": "one more"}) + "\n")
    with pytest.raises(ScoreError, match="the input changed"):
        score_file(src, out, predictor, chunk_size=10, resume=True, progress=False)
    score_file(src, out, predictor, chunk_size=10, progress=False)  # without --resume: starts over
    with pytest.raises(ScoreError, match="nothing to resume"):
        score_file(src, out, predictor, resume=True, progress=False)


def test_cli_score_prints_the_summary(trained_run: Path, tmp_path: Path) -> None:
    src = write_input(tmp_path / "posts.csv", make_rows(25))
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(
        app, ["score", str(src), "-o", str(out), "--model", str(trained_run), "--chunk-size", "8"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "rows read: 25  scored: 22  errors: 3" in result.output
    assert str(side_paths(out)["errors"]) in result.output
    assert len(read_output(out)) == 22


def _wait_for(predicate: Any, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "givetake score ended before it could be interrupted"
        assert time.monotonic() < deadline, "givetake score made no progress"
        time.sleep(0.01)


def _progress(out: Path) -> int:
    try:
        return int(json.loads(side_paths(out)["state"].read_text())["rows_read"])
    except (OSError, ValueError):
        return 0


@pytest.fixture
def cli_env() -> Iterator[dict[str, str]]:
    yield {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false"}


def test_killed_process_resumes(trained_run: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    n = 4000
    bad = {i: "  " for i in range(0, n, 97)}
    src = write_input(tmp_path / "big.jsonl", make_rows(n, bad=bad))
    out = tmp_path / "big.scored.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "givetake.cli",
        "score",
        str(src),
        "-o",
        str(out),
        "--model",
        str(trained_run),
        "--chunk-size",
        "20",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _progress(out) >= 200, 60, proc)
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: the worst case
    finally:
        proc.kill()
        proc.wait()
    done = _progress(out)
    assert 200 <= done < n
    resumed = CliRunner().invoke(app, [*cmd[3:], "--resume"])  # in-process: saves a second interpreter start
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert f"rows read: {n}  scored: {n - len(bad)}  errors: {len(bad)}" in resumed.output
    assert f"resumed after row {done}" in resumed.output
    ids = [r["id"] for r in read_output(out)]
    assert len(ids) == len(set(ids)) == n - len(bad)
    assert ids == [i for i in range(n) if i not in bad]
    assert sorted(e["row"] for e in read_errors(out)) == [i + 1 for i in sorted(bad)]


def test_cli_user_errors_are_one_line(trained_run: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    missing = tmp_path / "missing.csv"
    result = subprocess.run(
        [sys.executable, "-m", "givetake.cli", "score", str(missing), "-o", str(tmp_path / "o.csv")],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert f"error: {missing}: no such file" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
