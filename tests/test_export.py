"""ONNX export and the parity check against torch, on the tiny trained model."""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import onnx
import pytest
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core.bundle import open_model
from givetake.core.predictor import ENGINE_FILES, ModelLoadError, Predictor
from givetake.core.registry import read_metrics, write_metrics
from givetake.training.export import ExportError
from givetake.training.parity import check_parity, validation_posts


def test_training_exports_and_checks_both_engines(trained_run: Path) -> None:
    records = read_metrics(trained_run)["engines"]
    assert records["torch"] == {"usable": True}
    for engine, name in ENGINE_FILES.items():
        assert (trained_run / name).is_file()
        r = records[engine]
        assert r["usable"] is True and "reason" not in r
        assert r["label_agreement"] >= 0.99 and r["macro_f1_drop"] <= 0.01
        assert r["batch_sizes"] == [32, 1]
        assert r["posts"] == read_metrics(trained_run)["data"]["validation"]["rows"]
    assert records["onnx"]["max_abs_prob_diff"] < 1e-4  # fp32 ONNX is the same network
    assert records["onnx-int8"]["size_mb"] < records["onnx"]["size_mb"]
    # Attention, layer norms and GELU fused into ONNX Runtime's operators in both files (2 layers),
    # attention only up to MultiHeadAttention so that the Q/K/V projections are quantised.
    config = json.loads((trained_run / "config.json").read_text())
    layers = config["num_hidden_layers"]
    assert records["fused"]["mha"] == layers and records["fused"]["skip_layer_normalization"] == 2 * layers
    for name in ENGINE_FILES.values():
        ops = collections.Counter(n.op_type for n in onnx.load(str(trained_run / name)).graph.node)
        assert ops["MultiHeadAttention"] == layers and ops["Attention"] == 0 and ops["Softmax"] == 0
    assert ops["MatMulInteger"] >= 6 * layers  # Q, K, V, attention output and both feed-forward layers
    # Exported before registering: the store copy serves on ONNX too.
    store_dir = Path(bentoml.models.get("givetake:tiny").path)
    assert all((store_dir / name).is_file() for name in ENGINE_FILES.values())
    assert open_model(store_dir).engine() == "onnx-int8"


def test_export_command_on_an_older_run(trained_run: Path, small_data: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    for name in ENGINE_FILES.values():
        (old / name).unlink()
    metrics = read_metrics(old)
    del metrics["engines"]
    write_metrics(old, metrics)
    assert open_model(old).engine() == "torch"
    result = CliRunner().invoke(app, ["export", str(old), "--data", str(small_data)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "parity against torch on the small.jsonl" in result.output
    assert "onnx-int8" in result.output and "yes" in result.output
    assert open_model(old).engine() == "onnx-int8"
    assert read_metrics(old)["engines"]["onnx"]["posts"] == sum(1 for _ in small_data.open())


def test_validation_split_is_recomputed_or_the_missing_data_named(trained_run: Path, tmp_path: Path) -> None:
    posts, described = validation_posts(trained_run)
    assert described == f"validation split ({len(posts)} posts)"
    assert len(posts) == read_metrics(trained_run)["data"]["validation"]["rows"]
    moved = tmp_path / "moved"
    shutil.copytree(trained_run, moved)
    config = json.loads((moved / "run_config.json").read_text(encoding="utf-8"))
    config["data"]["data"] = [str(tmp_path / "gone.jsonl")]
    (moved / "run_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ExportError, match="not available to recompute its validation split.*pass --data FILE"):
        validation_posts(moved)
    result = subprocess.run(
        [sys.executable, "-m", "givetake.cli", "export", str(moved)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: the training data of {moved} is not available")
    assert "Traceback" not in result.stderr + result.stdout


def test_failed_parity_marks_the_engine_unusable(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "strict"
    shutil.copytree(trained_run, copy)
    posts, described = validation_posts(copy)
    # An impossible bar: agreement above 100% fails every engine, with the reason recorded.
    records = check_parity(copy, posts, described, min_agreement=1.01)
    for engine in ENGINE_FILES:
        assert records[engine]["usable"] is False
        assert re.match(r"label agreement \d+\.\d\d% < 101% on validation split", records[engine]["reason"])
    write_metrics(copy, {**read_metrics(copy), "engines": {"torch": {"usable": True}, **records}})
    assert Predictor(copy).engine == "torch"
    with pytest.raises(ModelLoadError, match="failed the parity check"):
        Predictor(copy, engine="onnx")
