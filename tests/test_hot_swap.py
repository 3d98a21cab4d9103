"""Promotion without a restart: ``givetake serve`` (no ``--model``) swaps a promoted model in under
load, keeps serving the old one when the new one fails its checks, and ``--model`` pins a model.

Real servers and real ``givetake promote`` runs in a BentoML home of the test's own: slow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from givetake.core.predictor import Predictor
from givetake.serving.service import EXAMPLE_TEXTS, MODEL_HEADER
from tests.helpers import ROOT, started_server

ENGINE = "onnx"  # fp32: answers do not depend on batch-mates, so each can be checked against its model

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def home(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home with three models: ``old`` (the tiny run), ``new`` (the same weights, every
    threshold 0, so it labels every post with every label) and ``broken`` (a corrupt ONNX file)."""
    home = tmp_path_factory.mktemp("swap_home")
    runs = tmp_path_factory.mktemp("swap_runs")
    new, broken = runs / "new", runs / "broken"
    shutil.copytree(trained_run, new)
    thresholds = json.loads((trained_run / "thresholds.json").read_text())
    (new / "thresholds.json").write_text(json.dumps(dict.fromkeys(thresholds, 0.0)))
    shutil.copytree(trained_run, broken)
    (broken / ENGINE_FILE).write_bytes(b"this is not an ONNX model")
    script = (
        "from givetake.core.registry import register\n"
        f"register({str(trained_run)!r}, 'old'); register({str(new)!r}, 'new'); register({str(broken)!r}, 'broken')\n"
    )
    subprocess.run([sys.executable, "-c", script], env=_env(home), check=True, timeout=120)
    return home


ENGINE_FILE = "model.onnx"


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_RESULT_STORE": str(home / "tasks.db"),
    }


def _promote(home: Path, tag: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "givetake.cli", "promote", tag, "--force"],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _serve(home: Path, log_path: Path, *args: str) -> contextlib.AbstractContextManager[str]:
    cmd = [sys.executable, "-m", "givetake.cli", "serve", "--engine", ENGINE, *args]
    return started_server(cmd, log_path, _env(home))


def _wait_for(base: str, check: object, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        model = httpx.get(f"{base}/labels", timeout=10).json()["model"]
        if check(model):  # type: ignore[operator]
            return model
        assert time.monotonic() < deadline, model
        time.sleep(0.2)


def test_a_promotion_is_swapped_in_under_load_and_a_broken_one_is_not(
    home: Path, trained_run: Path, tmp_path: Path
) -> None:
    old_tag, new_tag, broken_tag = "givetake:old", "givetake:new", "givetake:broken"
    _promote(home, old_tag)
    old_model = Predictor(trained_run, engine=ENGINE)
    requests = [[f"{t} (#{i})" for t in EXAMPLE_TEXTS[: 1 + i % 5]] for i in range(40)]
    expected_old = [old_model.predict(texts) for texts in requests]
    log_path = tmp_path / "serve.log"
    with _serve(home, log_path) as base:
        labels = httpx.get(f"{base}/labels", timeout=10)
        assert labels.json()["model"]["tag"] == old_tag and labels.json()["model"]["follows_live"] is True
        assert labels.headers[MODEL_HEADER] == old_tag

        answers: list[tuple[int, int, str | None, list]] = []
        sent: list[int] = []
        stop_at: list[float] = []
        errors: list[BaseException] = []

        def client(number: int) -> None:
            with httpx.Client(timeout=30) as http:
                i = number
                while not stop_at or time.monotonic() < stop_at[0]:
                    sent.append(number)
                    try:
                        resp = http.post(f"{base}/classify", json={"texts": requests[i % len(requests)]})
                    except Exception as exc:  # a dropped connection is a failure of the test
                        errors.append(exc)
                        return
                    answers.append((i % len(requests), resp.status_code, resp.headers.get(MODEL_HEADER), resp.json()))
                    i += 4

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        said = _promote(home, new_tag)
        assert "swaps it in within seconds" in said
        _wait_for(base, lambda m: m["tag"] == new_tag)
        time.sleep(2)
        stop_at.append(time.monotonic() + 1)
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(answers) == len(sent), "a request got no answer"
        assert all(status == 200 for _, status, _, _ in answers), {s for _, s, _, _ in answers}
        models = [header for _, _, header, _ in answers]
        assert set(models) == {old_tag, new_tag}, set(models)
        # Once the new model answers, the old one never does again (only requests queued before the swap).
        first_new = models.index(new_tag)
        assert models[-20:] == [new_tag] * 20
        for index, _, header, got in answers:
            if header == old_tag:
                assert got == expected_old[index]  # wholly the old model's answer
            else:  # the new model: the same scores, every label on (thresholds 0)
                assert [p["scores"] for p in got] == [p["scores"] for p in expected_old[index]]
                assert all(p["labels"] == old_model.labels for p in got)
        assert first_new > 0

        # A promoted model that fails to load: not swapped in, the new model keeps serving, and both
        # the log and GET /labels say why.
        _promote(home, broken_tag)
        model = _wait_for(base, lambda m: (m.get("last_swap") or {}).get("tag") == broken_tag)
        assert model["tag"] == new_tag and model["promoted"] is False and model["promoted_tag"] == broken_tag
        assert model["last_swap"]["swapped"] is False and "model.onnx" in model["last_swap"]["reason"]
        resp = httpx.post(f"{base}/classify", json={"texts": EXAMPLE_TEXTS}, timeout=30)
        assert resp.status_code == 200 and resp.headers[MODEL_HEADER] == new_tag
        predict = httpx.post(f"{base}/predict", json={"inputs": EXAMPLE_TEXTS[0]}, timeout=30)
        assert predict.status_code == 200 and predict.headers[MODEL_HEADER] == new_tag
    log = log_path.read_text()
    assert f"now serving {new_tag} (was {old_tag})" in log, log[-3000:]
    assert f"promoted model {broken_tag} was NOT swapped in; still serving {new_tag}" in log, log[-3000:]


def test_serve_with_a_model_pins_it(home: Path, tmp_path: Path) -> None:
    _promote(home, "givetake:old")
    with _serve(home, tmp_path / "serve.log", "--model", "givetake:old") as base:
        _promote(home, "givetake:new")
        time.sleep(3)  # several polls of a following server
        model = httpx.get(f"{base}/labels", timeout=10).json()["model"]
        assert model["tag"] == "givetake:old" and model["follows_live"] is False
        assert model["promoted_tag"] == "givetake:new" and model["promoted"] is False
        resp = httpx.post(f"{base}/classify", json={"texts": EXAMPLE_TEXTS[:1]}, timeout=30)
        assert resp.headers[MODEL_HEADER] == "givetake:old"
    assert "pinned to givetake:old" in (tmp_path / "serve.log").read_text()
