"""The three inference engines on the tiny trained model: same labels, engine selection, clear errors."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core.bundle import open_model
from givetake.core.predictor import ENGINE_FILES, ENGINES, ModelLoadError, Predictor
from givetake.core.registry import read_metrics, write_metrics

TEXTS = [
    "@user so sorry, please DM us your order number and we'll sort it",
    "Our summer sale starts now! 20% off everything in the shop this weekend",
    "Could you all share this? Our dog went missing near the park",
    "What's the best book you read this year?",
    "Great thread on how to price freelance work: http://example.com",
    "lovely walk today",
    "a much longer post that rambles on about the weather and the bus and lunch " * 4,
    "hi",
]


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run (with its ONNX files and parity record) that a test may break."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_gives_the_same_labels(trained_run: Path, engine: str) -> None:
    reference = Predictor(trained_run, engine="torch")
    predictor = Predictor(trained_run, engine=engine)
    assert predictor.engine == engine
    ref_probs, ref_trunc = reference.predict_proba(TEXTS)
    probs, trunc = predictor.predict_proba(TEXTS)
    assert trunc == ref_trunc
    # fp32 ONNX is the same arithmetic; int8 weights move the transformer half's scores a little.
    assert np.allclose(probs, ref_probs, atol=1e-4 if engine != "onnx-int8" else 0.02)
    assert [p["labels"] for p in predictor.predict(TEXTS)] == [p["labels"] for p in reference.predict(TEXTS)]


@pytest.mark.parametrize("engine", ENGINES)
def test_batching_barely_moves_scores(trained_run: Path, engine: str) -> None:
    predictor = Predictor(trained_run, engine=engine, batch_size=4)
    batched, _ = predictor.predict_proba(TEXTS)
    alone = np.vstack([predictor.predict_proba([t])[0] for t in TEXTS])
    # int8 activations are scaled per batch (dynamic quantisation), so batch-mates matter slightly.
    assert np.allclose(batched, alone, atol=1e-5 if engine != "onnx-int8" else 5e-3)


@pytest.mark.parametrize("engine", ENGINES)
def test_concurrent_calls_give_what_calls_one_at_a_time_give(trained_run: Path, engine: str) -> None:
    predictor = Predictor(trained_run, engine=engine, threads=2, calls=2)
    # ONNX sessions take calls from two threads at once, one thread each; torch takes one at a time
    # (it has no ONNX session: its one call uses both threads).
    if engine == "torch":
        assert predictor.calls == 1 and predictor.session is None
    else:
        assert predictor.calls == 2 and predictor.session.get_session_options().intra_op_num_threads == 1
    chunks = [TEXTS[i:] + TEXTS[:i] for i in range(len(TEXTS))] * 3
    expected = [predictor.predict(chunk) for chunk in chunks]
    if predictor.calls > 1:
        with ThreadPoolExecutor(max_workers=predictor.calls) as pool:
            assert list(pool.map(predictor.predict, chunks)) == expected
    with pytest.raises(ValueError, match="calls must be at least 1"):
        Predictor(trained_run, engine=engine, calls=0)


def test_auto_prefers_int8_then_onnx_then_torch(run_copy: Path) -> None:
    assert Predictor(run_copy).engine == "onnx-int8"
    (run_copy / ENGINE_FILES["onnx-int8"]).unlink()
    assert open_model(run_copy).engine() == "onnx"
    (run_copy / ENGINE_FILES["onnx"]).unlink()
    assert open_model(run_copy).engine("auto") == "torch"


def test_environment_variable_picks_the_engine(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIVETAKE_ENGINE", "onnx")
    assert Predictor(trained_run).engine == "onnx"
    assert Predictor(trained_run, engine="torch").engine == "torch"  # an explicit choice wins
    monkeypatch.setenv("GIVETAKE_ENGINE", "tensorrt")
    with pytest.raises(ModelLoadError, match="unknown engine 'tensorrt'; choose one of auto, torch, onnx, onnx-int8"):
        Predictor(trained_run)


def test_missing_engine_file_names_it_and_the_fix(run_copy: Path) -> None:
    (run_copy / ENGINE_FILES["onnx-int8"]).unlink()
    with pytest.raises(ModelLoadError, match=r"int8\.onnx, which does not exist; create it with `givetake export"):
        Predictor(run_copy, engine="onnx-int8")


def test_unchecked_or_failed_engines_are_refused(run_copy: Path) -> None:
    metrics = read_metrics(run_copy)
    records = metrics.pop("engines")
    write_metrics(run_copy, metrics)
    with pytest.raises(ModelLoadError, match="never checked against torch"):
        Predictor(run_copy, engine="onnx")
    assert open_model(run_copy).engine() == "torch"  # auto takes no unchecked file
    records["onnx-int8"].update(usable=False, reason="label agreement 97.00% < 99%")
    write_metrics(run_copy, {**metrics, "engines": records})
    with pytest.raises(ModelLoadError, match="failed the parity check against torch \\(label agreement 97.00%"):
        Predictor(run_copy, engine="onnx-int8")
    assert open_model(run_copy).engine() == "onnx"


def test_cli_engine_errors_are_user_errors(run_copy: Path, tmp_path: Path) -> None:
    (run_copy / ENGINE_FILES["onnx"]).unlink()
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"text": "hello there"}) + "\n", encoding="utf-8")
    runner = CliRunner()
    for args in (
        ["score", str(posts), "-o", str(tmp_path / "out.jsonl"), "--model", str(run_copy), "--engine", "onnx"],
        ["serve", "--model", str(run_copy), "--engine", "onnx"],
    ):
        result = runner.invoke(app, args)
        # ModelLoadError is a user error: the console entry point prints it as one line, exit 2.
        assert isinstance(result.exception, ModelLoadError), result.output
        assert "model.onnx, which does not exist; create it with `givetake export" in str(result.exception)


def test_cli_score_runs_on_the_chosen_engine(trained_run: Path, tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    outputs = {}
    for engine in ("torch", "onnx-int8"):
        out = tmp_path / f"{engine}.jsonl"
        result = CliRunner().invoke(
            app, ["score", str(posts), "-o", str(out), "--model", str(trained_run), "--engine", engine]
        )
        assert result.exit_code == 0, result.output
        outputs[engine] = [json.loads(line)["labels"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert outputs["torch"] == outputs["onnx-int8"]
