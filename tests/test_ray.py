"""`givetake score --engine ray` on a real local Ray cluster (2 CPUs) with the tiny model.

Slow (a Ray cluster and its actors start in each test): `make test-slow`, or `pytest -m ray`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from givetake.core.classifier import text_problem
from givetake.core.predictor import Predictor
from givetake.serving.ray_runner import ERRORS_DIR, FAULT_ENV, score_with_ray
from givetake.serving.score import score_file, side_paths
from tests.helpers import make_rows, read_output, texts, three_files, write_input, write_texts

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'givetake[ray]'")
pytestmark = [pytest.mark.slow, pytest.mark.ray]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def parts(outdir: Path, errors: bool = False) -> list[dict[str, Any]]:
    """Every row of the job's partitions (or of its errors), read part by part with pyarrow."""
    folder = outdir / ERRORS_DIR if errors else outdir
    return [row for p in sorted(folder.glob("part-*.parquet")) for row in pq.read_table(p).to_pylist()]


def test_three_files_match_single_process(local_ray: None, trained_run: Path, tmp_path: Path) -> None:
    files = sorted(three_files(tmp_path / "in"))
    out = tmp_path / "ray-out"
    summary = score_with_ray(files, out, trained_run, engine="onnx", workers=2, chunk_size=16, progress=False)
    assert (summary.read, summary.scored, summary.errors) == (90, 81, 9)

    got = {(r["source_file"], r["source_row"]): r for r in parts(out)}
    errors = {(r["source_file"], r["source_row"]): r["reason"] for r in parts(out, errors=True)}
    assert len(got) + len(errors) == 90 and len(parts(out)) == 81  # each row once
    predictor = Predictor(trained_run, engine="onnx")
    for src in files:
        single = tmp_path / f"single-{src.stem}.jsonl"
        score_file(src, single, predictor, chunk_size=16, progress=False)
        expected = read_output(single)
        mine = [got[k] for k in sorted(got) if k[0] == str(src.resolve())]
        assert [str(r["id"]) for r in mine] == [str(r["id"]) for r in expected]
        for a, b in zip(mine, expected):
            assert a["text"] == b["text"] and a["labels"] == b["labels"]
            for name in predictor.labels:
                assert a[f"score_{name}"] == pytest.approx(b[f"score_{name}"], abs=1e-5)
        single_errors = [json.loads(x) for x in side_paths(single)["errors"].read_text().splitlines()]
        assert [(e["row"], e["reason"]) for e in single_errors] == sorted(
            (row, reason) for (f, row), reason in errors.items() if f == str(src.resolve())
        )


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    csv_texts=st.lists(texts(surrogates=False), min_size=1, max_size=10),
    jsonl_texts=st.lists(texts(surrogates=True), min_size=1, max_size=10),
    parquet_texts=st.lists(texts(surrogates=False), min_size=1, max_size=10),
)
def test_every_text_survives_on_ray(
    local_ray: None, trained_run: Path, csv_texts: list[str], jsonl_texts: list[str], parquet_texts: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {}
        for suffix, batch in ((".csv", csv_texts), (".jsonl", jsonl_texts), (".parquet", parquet_texts)):
            rows = [{"id": f"{i:05d}", "text": t} for i, t in enumerate(batch)]
            write_texts(Path(tmp) / f"posts{suffix}", rows)
            inputs[str((Path(tmp) / f"posts{suffix}").resolve())] = rows
        out = Path(tmp) / "out"
        summary = score_with_ray([Path(p) for p in inputs], out, trained_run, workers=2, chunk_size=4, progress=False)
        assert summary.read == summary.scored + summary.errors == sum(map(len, inputs.values()))
        got = parts(out)
        errors = {(r["source_file"], r["source_row"]) for r in parts(out, errors=True)}
        for file, rows in inputs.items():
            back = sorted((r["source_row"], r["id"], r["text"]) for r in got if r["source_file"] == file)
            good = [(i + 1, r["id"], r["text"]) for i, r in enumerate(rows) if text_problem(r, "text") is None]
            assert back == good
            assert {row for f, row in errors if f == file} == {
                i + 1 for i, r in enumerate(rows) if text_problem(r, "text") is not None
            }


def _count(folder: Path) -> int:
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


def test_killed_actor_and_driver_then_resume(local_ray: None, trained_run: Path, tmp_path: Path) -> None:
    n = 6000
    bad = {i: "  " for i in range(0, n, 101)}
    (tmp_path / "in").mkdir()
    src = write_input(tmp_path / "in" / "big.jsonl", make_rows(n, bad=bad))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "givetake.cli", "score", str(src.parent), "-o", str(out), "--engine", "ray"]
    cmd += ["--model", str(trained_run), "--workers", "2", "--chunk-size", "10"]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false", FAULT_ENV: "kill-after:3"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        # An actor kills itself after its 3rd batch (Ray restarts it and retries the batch); then the driver dies.
        while not ((out / ".fault-fired").exists() and _count(out) >= 40):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the Ray run made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = -1
    while before != _count(out):  # the killed job's cluster goes down with its driver: wait for quiet
        before = _count(out)
        time.sleep(2)
    assert 0 < len(parts(out)) < n - len(bad), "the run should have been cut off mid-way"

    summary = score_with_ray([src], out, trained_run, resume=True, workers=2, chunk_size=10, progress=False)
    assert summary.resumed_from > 0
    assert (summary.read, summary.scored, summary.errors) == (n, n - len(bad), len(bad))
    ids = [r["id"] for r in parts(out)]
    assert len(ids) == len(set(ids)) == n - len(bad)  # every id exactly once
    assert set(ids) == {i for i in range(n) if i not in bad}
    assert sorted(r["source_row"] for r in parts(out, errors=True)) == [i + 1 for i in sorted(bad)]
