"""Faults: the archive scorer killed at random points and resumed; corrupt, missing or mismatched models."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core.bundle import open_model
from givetake.core.predictor import ModelLoadError
from givetake.errors import ModelNotFound
from givetake.labels.schema import load_schema
from tests.helpers import make_rows, read_errors, read_output, service_client, write_input

ROOT = Path(__file__).resolve().parent.parent
# Fixed so a failure can be replayed; GIVETAKE_FAULT_SEED picks other kill points.
SEED = int(os.environ.get("GIVETAKE_FAULT_SEED", "8"))


# ----------------------------------------------------------------------------- killed and resumed


def _progress(out: Path) -> int | None:
    """Rows committed so far; None before the progress file exists."""
    try:
        return int(json.loads(out.with_name(out.name + ".progress.json").read_text())["rows_read"])
    except (OSError, ValueError, KeyError):
        return None


def _reached(out: Path, rows: int) -> bool:
    """Whether the progress file exists and records at least ``rows`` rows."""
    done = _progress(out)
    return done is not None and done >= rows


def _score_cmd(src: Path, out: Path, model: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "givetake.cli", "score", str(src), "-o", str(out)]
    return [*cmd, "--model", str(model), "--chunk-size", "20", *extra]


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], delay: float, timeout: float = 90) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` holds: no chance to clean up."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "givetake score ended before the planned kill"
            assert time.monotonic() < deadline, "givetake score made no progress"
            time.sleep(0.005)
        time.sleep(delay)  # lands anywhere: mid-chunk, mid-write, between commits
        assert proc.poll() is None, "givetake score ended before the planned kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _kill_and_resume(trained_run: Path, tmp_path: Path, out_name: str, kills: int, n: int = 3000) -> None:
    rng = random.Random(f"{SEED}-{out_name}")
    bad = {i: "  " for i in range(0, n, 89)} | {i: None for i in range(5, n, 211)}
    src = write_input(tmp_path / "posts.jsonl", make_rows(n, bad=bad))
    out = tmp_path / out_name
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false"}
    # Kill points: once before anything is committed, then at random committed row counts.
    points = [0, *sorted(rng.sample(range(20, int(n * 0.8)), kills - 1))]
    history = []
    for i, point in enumerate(points):
        resume = ("--resume",) if i else ()
        proc = subprocess.Popen(
            _score_cmd(src, out, trained_run, *resume),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _kill_when(proc, functools.partial(_reached, out, point), rng.uniform(0, 0.05))
        history.append(_progress(out))
    assert history == sorted(h or 0 for h in history) and (history[-1] or 0) < n, history
    result = CliRunner().invoke(app, _score_cmd(src, out, trained_run, "--resume")[3:])
    assert result.exit_code == 0, result.output + repr(result.exception)

    good = [i for i in range(n) if i not in bad]
    assert f"rows read: {n}  scored: {len(good)}  errors: {len(bad)}" in result.output, (SEED, history)
    ids = [int(r["id"]) for r in read_output(out)]
    assert ids == good, f"seed {SEED}, kills after rows {history}: lost or repeated rows"
    assert [e["row"] for e in read_errors(out)] == sorted(i + 1 for i in bad)
    assert not out.with_name(out.name + ".progress.json").exists()


def test_killed_at_random_points_then_resumed(trained_run: Path, tmp_path: Path) -> None:
    _kill_and_resume(trained_run, tmp_path, "scored.csv", kills=3)


@pytest.mark.slow
@pytest.mark.parametrize("out_name", ["scored.jsonl", "scored.parquet"])
def test_killed_many_times_then_resumed(trained_run: Path, tmp_path: Path, out_name: str) -> None:
    _kill_and_resume(trained_run, tmp_path, out_name, kills=6, n=6000)


# ------------------------------------------------------------------------------------ bad models


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[Path], object]:
    def edit(model: Path) -> None:
        path = model / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


def _swap_labels(config: dict[str, Any]) -> dict[str, Any]:
    id2label = config["id2label"]
    id2label["0"], id2label["1"] = id2label["1"], id2label["0"]
    return config


CORRUPTIONS: dict[str, tuple[Callable[[Path], object], str, str]] = {
    # name: (damage done to a copy of the model, file the message must name, what it must say)
    "truncated weights": (lambda m: _truncate(m / "model.safetensors"), "model.safetensors", "corrupt safetensors"),
    "empty weights": (lambda m: (m / "model.safetensors").write_bytes(b""), "model.safetensors", "corrupt"),
    "truncated lexical half": (lambda m: _truncate(m / "lexical.safetensors"), "lexical.safetensors", "corrupt"),
    "config not JSON": (lambda m: (m / "config.json").write_text("{oops"), "config.json", "corrupt JSON"),
    "tokenizer not JSON": (lambda m: _truncate(m / "tokenizer.json"), "tokenizer.json", "corrupt JSON"),
    "threshold out of range": (
        _edit_json("thresholds.json", lambda t: {**t, "pitch": 3}),
        "thresholds.json",
        "numbers in [0, 1]",
    ),
    "threshold missing": (
        _edit_json("thresholds.json", lambda t: {k: v for k, v in t.items() if k != "ask"}),
        "thresholds.json",
        "no threshold for label(s) ask",
    ),
    "config labels reordered": (_edit_json("config.json", _swap_labels), "", "differ from its schema.yaml"),
    "schema missing": (lambda m: (m / "schema.yaml").unlink(), "", "missing schema.yaml"),
    "schema not YAML": (lambda m: (m / "schema.yaml").write_text("labels: [oops"), "schema.yaml", "YAML"),
    "pickle beside the weights": (
        lambda m: (m / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01."),
        "",
        "pickle files (pytorch_model.bin)",
    ),
    "pickled extra": (lambda m: (m / "extra.pkl").write_bytes(b"\x80\x04K\x01."), "", "pickle files (extra.pkl)"),
}


@pytest.fixture
def damaged(trained_run: Path, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, str, str]:
    """A copy of the tiny model with one kind of damage; the file to name and the words to say."""
    damage, name, says = CORRUPTIONS[request.param]
    model = tmp_path / "model"
    shutil.copytree(trained_run, model)
    damage(model)
    return model, str(model / name) if name else str(model), says


@pytest.mark.parametrize("damaged", list(CORRUPTIONS), indirect=True)
def test_damaged_model_is_refused_naming_the_path(damaged: tuple[Path, str, str]) -> None:
    model, names, says = damaged
    with pytest.raises((ModelLoadError, ModelNotFound)) as err:
        open_model(model)
    assert names in str(err.value) and says in str(err.value), str(err.value)


def test_missing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=f"model directory {tmp_path / 'gone'} does not exist"):
        open_model(tmp_path / "gone")


def _no_exec(*args: Any) -> None:
    raise AssertionError("givetake serve passed its checks and would have started BentoML")


@pytest.mark.parametrize("damaged", ["truncated weights", "threshold out of range"], indirect=True)
def test_serve_and_score_refuse_a_damaged_model(
    damaged: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, names, says = damaged
    monkeypatch.setattr(os, "execve", _no_exec)
    src = write_input(tmp_path / "posts.jsonl", make_rows(5, bad={}))
    for args in (
        ["serve", "--model", str(model)],
        ["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--model", str(model)],
    ):
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, ModelLoadError), repr(result.exception)
        assert names in str(result.exception) and says in str(result.exception)
    assert not (tmp_path / "o.jsonl").exists()


def test_serve_stops_at_once_on_truncated_weights(trained_run: Path, tmp_path: Path) -> None:
    """Without the check, BentoML restarts the failing worker forever and the server never comes up."""
    model = tmp_path / "model"
    shutil.copytree(trained_run, model)
    _truncate(model / "model.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "givetake.cli", "serve", "--model", str(model), "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {model / 'model.safetensors'}: corrupt safetensors file")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.asgi
def test_worker_refuses_a_damaged_model(trained_run: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained_run, model)
    _truncate(model / "model.safetensors")
    with pytest.raises(ModelLoadError, match=str(model / "model.safetensors")), service_client(model):
        pass


# ------------------------------------------------------------------------------ label set vs schema


@pytest.fixture
def other_schema(tmp_path: Path) -> Path:
    """The project's schema without its last label (as after a retraining on fewer labels)."""
    data = yaml.safe_load((ROOT / "labels" / "schema.yaml").read_text(encoding="utf-8"))
    data["labels"] = data["labels"][:-1]
    data["version"] = int(data["version"]) + 1
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_model_trained_on_other_labels_is_refused(trained_run: Path, other_schema: Path) -> None:
    ours = load_schema(trained_run / "schema.yaml").names
    assert open_model(trained_run, trained_run / "schema.yaml").path == trained_run  # same labels: fine
    with pytest.raises(ModelLoadError) as err:
        open_model(trained_run, other_schema)
    message = str(err.value)
    assert str(trained_run) in message and str(other_schema) in message
    assert str(ours) in message and str(ours[:-1]) in message


@pytest.mark.asgi
def test_serve_score_and_worker_check_the_schema_in_use(
    trained_run: Path, other_schema: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "execve", _no_exec)
    result = CliRunner().invoke(app, ["serve", "--model", str(trained_run), "--schema", str(other_schema)])
    assert isinstance(result.exception, ModelLoadError) and str(other_schema) in str(result.exception)
    src = write_input(tmp_path / "posts.jsonl", make_rows(5, bad={}))
    monkeypatch.setenv("GIVETAKE_SCHEMA", str(other_schema))
    result = CliRunner().invoke(app, ["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--model", str(trained_run)])
    assert isinstance(result.exception, ModelLoadError) and "GIVETAKE_SCHEMA" in str(result.exception)
    monkeypatch.delenv("GIVETAKE_SCHEMA")
    with (
        pytest.raises(ModelLoadError, match="was trained on the labels"),
        service_client(trained_run, GIVETAKE_SCHEMA=str(other_schema)),
    ):
        pass
