"""`givetake score` on folders, glob patterns and Unix pipes (``-``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from examples.spark_score import classifier, score_partitions
from givetake.cli import app
from givetake.core.predictor import Predictor
from givetake.serving.archive import ScoreError, expand_inputs
from givetake.serving.score import DONE_FILE, score_file, score_files, side_paths
from tests.helpers import BAD, make_rows, read_errors, read_output, three_files, write_input

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor(trained_run, engine="torch")


def test_expand_inputs_folders_globs_and_files(tmp_path: Path) -> None:
    paths = three_files(tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    (tmp_path / "in" / "x.csv.errors.jsonl").write_text("{}\n")  # a side file of an earlier run
    assert expand_inputs([str(tmp_path / "in")]) == sorted(paths)
    assert expand_inputs([str(tmp_path / "in" / "**" / "*.jsonl")]) == [paths[1]]
    assert expand_inputs([str(paths[0]), str(tmp_path / "in" / "*.csv")]) == [paths[0]]  # each file once
    with pytest.raises(ScoreError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.xml")])
    with pytest.raises(ScoreError, match="no such file"):
        expand_inputs([str(tmp_path / "missing.csv")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoreError, match="no .csv, .jsonl, .parquet or tweets.js files"):
        expand_inputs([str(tmp_path / "empty")])


def test_folder_scores_every_file_and_resumes(predictor: Predictor, tmp_path: Path) -> None:
    paths = three_files(tmp_path / "in")
    out = tmp_path / "out"
    summary = score_files(sorted(paths), out, predictor, out_kind="jsonl", chunk_size=8, progress=False)
    assert (summary.read, summary.scored, summary.errors, summary.files) == (90, 81, 9, 3)
    outputs = {p.name: p for p in out.rglob("*.jsonl") if not p.name.endswith(".errors.jsonl")}
    assert set(outputs) == {"posts.jsonl", "more.jsonl"} and (out / "sub" / "posts.jsonl").exists()
    ids = sorted(
        int(r["id"]) for p in out.rglob("*.jsonl") if not p.name.endswith("errors.jsonl") for r in read_output(p)
    )
    assert ids == sorted(int(i) + 100 * k for k in range(3) for i in range(30) if i not in BAD)
    assert [e["row"] for e in read_errors(out / "more.jsonl")] == [i + 1 for i in sorted(BAD)]

    # Interrupted in the second file: the first is skipped, the second resumed, the third scored.
    first = out / "more.jsonl"  # sorted order: more.parquet, posts.csv, sub/posts.jsonl
    (out / DONE_FILE).write_text(json.dumps({str(sorted(paths)[0].resolve()): {"read": 30, "scored": 27, "errors": 3}}))
    first.write_text("")  # a skipped file is not scored again
    resumed = score_files(sorted(paths), out, predictor, out_kind="jsonl", chunk_size=8, resume=True, progress=False)
    assert (resumed.read, resumed.scored, resumed.errors) == (90, 81, 9)
    assert first.read_text() == "" and not (out / DONE_FILE).exists()


def test_cli_pipe_stdin_to_stdout(trained_run: Path, tmp_path: Path) -> None:
    rows = make_rows(40)
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, "{not json")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "givetake.cli", "score", "-", "-o", "-", "--model", str(trained_run)]
    cmd += ["--chunk-size", "7"]
    done = subprocess.run(
        cmd, input="\n".join(lines) + "\n", cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 41  # every input line comes out once, in order, the bad ones with their reason
    assert [r.get("id") for r in out] == [r["id"] for r in rows[:5]] + [None] + [r["id"] for r in rows[5:]]
    assert "line 6: not valid JSON" in out[5]["error"]
    assert [r.get("id") for r in out if r["error"]] == [3, None, 7, 11]
    assert all(r["labels"] is not None and r["score_ask"] is not None for r in out if not r["error"])
    assert "rows read: 41  scored: 37  errors: 4" in done.stderr


def test_cli_folder_and_pipe_refusals(trained_run: Path, tmp_path: Path) -> None:
    paths = three_files(tmp_path / "in")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "in"), "-o", str(out), "--model", str(trained_run), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"wrote {out} from 3 input files" in result.output
    assert len(read_output(out / "more.csv")) == 27 and side_paths(out / "more.csv")["errors"].exists()
    result = CliRunner().invoke(app, ["score", "-", "-o", "-", "--resume", "--model", str(trained_run)])
    assert result.exit_code != 0 and "a pipe cannot be read again" in str(result.exception)
    result = CliRunner().invoke(app, ["score", str(paths[0]), "-o", str(tmp_path / "o.csv"), "--workers", "2"])
    assert result.exit_code != 0 and "options of --engine ray" in str(result.exception)


def test_spark_recipe_scores_frames_like_givetake_score(trained_run: Path, tmp_path: Path) -> None:
    # The mapInPandas function of examples/spark_score.py, fed the batches Spark would give it.
    rows = make_rows(20)
    frames = [pd.DataFrame(rows[:12]), pd.DataFrame(rows[12:])]
    out = pd.concat(list(score_partitions(iter(frames), str(trained_run))), ignore_index=True)
    assert classifier.cache_info().currsize == 1  # loaded once for both batches
    assert out["id"].tolist() == list(range(20))
    assert out["error"].notna().sum() == len(BAD) and out.loc[3, "error"]
    src = write_input(tmp_path / "p.jsonl", rows)
    score_file(src, tmp_path / "o.jsonl", classifier(str(trained_run)).predictor, progress=False)
    expected = {r["id"]: r for r in read_output(tmp_path / "o.jsonl")}
    for _, row in out[out["error"].isna()].iterrows():
        assert list(row["labels"]) == expected[row["id"]]["labels"]
        # Both sides are rounded to 4 places from float32 scores of differently padded batches (12 + 8
        # rows against 20), so a score on a rounding edge may land one unit apart: allow 1.5 units.
        assert row["score_ask"] == pytest.approx(expected[row["id"]]["score_ask"], abs=1.5e-4)


def test_engine_ray_without_ray_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_input(tmp_path / "p.jsonl", make_rows(3))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = CliRunner().invoke(app, ["score", str(src), "-o", str(tmp_path / "out"), "--engine", "ray"])
    assert result.exit_code != 0 and "pip install 'givetake[ray]'" in str(result.exception)
    assert not (tmp_path / "out").exists()
