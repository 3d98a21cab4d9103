"""``givetake bento``: the service and one model as a Bento that ``bentoml serve`` runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from givetake.cli.bento import bento_config
from givetake.core.predictor import Predictor
from givetake.serving.service import EXAMPLE_INPUT, MODEL_HEADER
from tests.helpers import ROOT, started_server


def test_the_bentofile_pins_torch_and_takes_the_chosen_model(tmp_path: Path) -> None:
    shipped = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert shipped["service"] == "givetake.serving.service:PostClassifier"
    assert "torch==2.13.0" in shipped["python"]["packages"]
    assert (ROOT / shipped["include"][0]).is_file()  # the label schema
    wheel = ROOT / "build" / "bento-wheel" / "givetake-0.1.0-py3-none-any.whl"
    config = bento_config(ROOT, "givetake:abc", wheel)
    assert config["models"] == ["givetake:abc"]
    assert {"name": "GIVETAKE_MODEL", "value": "givetake:abc"} in config["envs"]
    assert sum(e["name"] == "GIVETAKE_MODEL" for e in config["envs"]) == 1
    assert config["python"]["wheels"] == ["build/bento-wheel/givetake-0.1.0-py3-none-any.whl"]


@pytest.mark.slow
@pytest.mark.server
def test_a_built_bento_serves_classify(trained_run: Path, tmp_path: Path) -> None:
    home = tmp_path / "bentoml_home"
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_RESULT_STORE": str(tmp_path / "tasks.db"),
        "GIVETAKE_ENGINE": "onnx",
    }
    register = f"from givetake.core.registry import register; register({str(trained_run)!r}, 'tiny')"
    subprocess.run([sys.executable, "-c", register], env=env, check=True, timeout=120)
    built = subprocess.run(
        [sys.executable, "-m", "givetake.cli", "bento", "--model", "givetake:tiny", "--build-ctx", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert "built givetake:tiny with givetake:tiny" in built.stdout
    bento_dir = home / "bentos" / "givetake" / "tiny"
    assert (bento_dir / "src" / "labels" / "schema.yaml").is_file()
    assert "torch==2.13.0" in (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert list((bento_dir / "env" / "python" / "wheels").glob("givetake-*.whl"))

    # Outside the checkout: the code comes from the Bento's service path and the installed package.
    serve = [sys.executable, "-m", "bentoml", "serve", "givetake:tiny"]
    with started_server(serve, tmp_path / "bento.log", env, cwd=tmp_path) as base:
        resp = httpx.post(f"{base}/classify", json=EXAMPLE_INPUT, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers[MODEL_HEADER] == "givetake:tiny"
    assert resp.json() == Predictor(trained_run, engine="onnx").predict(EXAMPLE_INPUT["texts"])
