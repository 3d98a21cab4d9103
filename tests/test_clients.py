"""Clients that already exist, against the real server: Hugging Face's ``InferenceClient`` on
``POST /predict``, and polling an archive job's progress on ``GET /score_archive/status``."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from givetake.core.predictor import Predictor
from givetake.serving.service import EXAMPLE_TEXTS, MAX_TEXTS, MODEL_HEADER
from tests.helpers import AUTH, KEY, running_server, service_client

# fp32 ONNX: answers must not depend on which requests the server batches together.
ENGINE = "onnx"


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor(trained_run, engine=ENGINE)


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    """The service in-process on the tiny model's store tag (metrics off: one app per process has them)."""
    with service_client("givetake:tiny", GIVETAKE_ENGINE=ENGINE) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``givetake serve`` on the tiny model (fp32 ONNX: answers do not depend on batch-mates)."""
    with running_server(trained_run, tmp_path_factory.mktemp("serve"), "--engine", ENGINE) as base:
        yield base


# ----------------------------------------------------------------------------------- POST /predict


@pytest.mark.asgi
def test_predict_answers_in_hugging_faces_shape(client: TestClient, predictor: Predictor) -> None:
    expected = predictor.predict(EXAMPLE_TEXTS[:2])
    for body, wanted in (({"inputs": EXAMPLE_TEXTS[0]}, expected[:1]), ({"inputs": EXAMPLE_TEXTS[:2]}, expected)):
        resp = client.post("/predict", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.headers[MODEL_HEADER] == "givetake:tiny"
        answers = resp.json()
        assert len(answers) == len(wanted)
        for answer, pred in zip(answers, wanted, strict=True):
            # every label, highest score first, the same sigmoid scores as /classify
            assert sorted(a["label"] for a in answer) == sorted(predictor.labels)
            assert [a["score"] for a in answer] == sorted(pred["scores"].values(), reverse=True)
            assert {a["label"]: a["score"] for a in answer} == pytest.approx(pred["scores"])
    top = client.post("/predict", json={"inputs": EXAMPLE_TEXTS[0], "parameters": {"top_k": 2, "truncate": True}})
    assert [len(a) for a in top.json()] == [2]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"inputs": "  "}, "empty or only whitespace"),
        ({"inputs": []}, "at least 1 item"),
        ({"inputs": ["x"] * (MAX_TEXTS + 1)}, f"at most {MAX_TEXTS} items"),
        ({}, "inputs: Field required"),
        ({"inputs": "ok", "parameters": {"function_to_apply": "softmax"}}, "'sigmoid'"),
        ({"inputs": "ok", "parameters": {"top_k": 0}}, "top_k"),
    ],
)
@pytest.mark.asgi
def test_predict_refuses_what_classify_refuses(client: TestClient, body: dict, says: str) -> None:
    resp = client.post("/predict", json=body)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["error"] and "Traceback" not in resp.text


@pytest.mark.asgi
def test_predict_needs_the_api_key_like_classify(trained_run: Path) -> None:
    with service_client(trained_run, GIVETAKE_API_KEY=KEY) as keyed:
        refused = keyed.post("/predict", json={"inputs": EXAMPLE_TEXTS[0]})
        assert refused.status_code == 401 and "needs an API key" in refused.json()["error"]
        assert keyed.post("/predict", json={"inputs": EXAMPLE_TEXTS[0]}, headers=AUTH).status_code == 200


@pytest.mark.server
@pytest.mark.smoke  # a few seconds with its server: `make test` runs it
def test_inference_client_gets_givetakes_scores(
    server: str,
    predictor: Predictor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import InferenceClient, constants

    # The test session is offline for the Hub (conftest); this client talks to our own server only.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    got = InferenceClient(f"{server}/predict").text_classification(EXAMPLE_TEXTS[4])
    expected = predictor.predict([EXAMPLE_TEXTS[4]])[0]["scores"]
    assert len(got) == len(predictor.labels) == 5
    assert {el.label: el.score for el in got} == pytest.approx(expected, abs=1e-5)
    # independent sigmoids, not a softmax: they need not sum to one, each is in (0, 1)
    assert all(0.0 < el.score < 1.0 for el in got)
    assert [el.score for el in got] == sorted((el.score for el in got), reverse=True)


# ------------------------------------------------------------------------- GET /score_archive/status


@pytest.mark.server
def test_archive_status_reports_rows_read_and_scored_while_the_job_runs(server: str) -> None:
    rows = 12_000
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "text"])
    writer.writerows([i, "" if i % 100 == 7 else f"{EXAMPLE_TEXTS[i % 5]} ({i})"] for i in range(rows))
    resp = httpx.post(f"{server}/score_archive/submit", files={"file": ("big.csv", buf.getvalue())}, timeout=60)
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["task_id"]
    seen: list[dict] = []
    deadline = time.monotonic() + 300
    while True:
        status = httpx.get(f"{server}/score_archive/status", params={"task_id": task_id}, timeout=10).json()
        seen.append(status)
        if status["status"] != "in_progress":
            break
        assert time.monotonic() < deadline, seen[-3:]
        time.sleep(0.05)
    assert status["status"] == "completed", status
    assert (status["rows_read"], status["rows_scored"], status["rows_errors"]) == (rows, rows - 120, 120)
    running = [s for s in seen if s["status"] == "in_progress" and "rows_read" in s]
    assert any(0 < s["rows_read"] < rows for s in running), seen[:5]
    counts = [s["rows_read"] for s in running]
    assert counts == sorted(counts)  # it only goes forward
    assert all(s["rows_scored"] + s["rows_errors"] == s["rows_read"] for s in running)
    result = httpx.get(f"{server}/score_archive/get", params={"task_id": task_id}, timeout=60)
    assert result.headers[MODEL_HEADER] and result.headers["x-givetake-rows-read"] == str(rows)


@pytest.mark.asgi
def test_a_failed_archive_job_ends_failed_with_the_reason(client: TestClient) -> None:
    resp = client.post("/score_archive/submit", files={"file": ("posts.csv", b"id,body\n1,hello\n")})
    task_id = resp.json()["task_id"]
    deadline = time.monotonic() + 30
    status_of = {"task_id": task_id}
    while (status := client.get("/score_archive/status", params=status_of).json())["status"] == "in_progress":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["status"] == "failed"
    assert status["error"].startswith("posts.csv: no column 'text'"), status


@pytest.mark.parametrize("value", ["0", "257", "eight", "1.5"])
def test_a_bad_call_size_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from givetake.serving.service import _call_posts

    monkeypatch.setenv("GIVETAKE_CALL_POSTS", value)
    with pytest.raises(ValueError, match=f"GIVETAKE_CALL_POSTS={value!r} must be a whole number from 1 to 256"):
        _call_posts()
    monkeypatch.setenv("GIVETAKE_CALL_POSTS", "8")
    assert _call_posts() == 8
    monkeypatch.delenv("GIVETAKE_CALL_POSTS")
    assert _call_posts() == 256


@pytest.mark.parametrize("value", ["0", "300", "x"])
def test_a_bad_merge_size_is_refused_and_the_default_is_16(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from givetake.serving.service import _merge_posts

    monkeypatch.setenv("GIVETAKE_MERGE_POSTS", value)
    with pytest.raises(ValueError, match=f"GIVETAKE_MERGE_POSTS={value!r} must be a whole number from 1 to 256"):
        _merge_posts()
    monkeypatch.delenv("GIVETAKE_MERGE_POSTS")
    assert _merge_posts() == 16
