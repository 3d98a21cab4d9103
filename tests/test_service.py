"""The HTTP API: the BentoML service over an ASGI test client, and `givetake serve` end to end.

Tier ``asgi``, with the one real-server smoke test of ``make test`` (``server`` and ``smoke``:
:func:`test_givetake_serve_end_to_end`); the two-worker test runs in ``make test-slow``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from givetake.core.predictor import Predictor
from givetake.core.thresholds import load_thresholds
from givetake.labels.schema import load_schema
from givetake.serving.service import EXAMPLE_INPUT, MAX_CHARS, MAX_TEXTS
from tests.helpers import ROOT, running_server, service_client

pytestmark = pytest.mark.asgi


# fp32 ONNX: answers must not depend on which requests the server batches together (int8's move
# slightly with batch-mates; tests/test_engines.py covers that engine).
ENGINE = "onnx"


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor(trained_run, engine=ENGINE)


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    """The service app in-process, serving the tiny model from the test BentoML store."""
    with service_client("givetake:tiny", GIVETAKE_ENGINE=ENGINE) as test_client:
        yield test_client


def test_classify_example_input(client: TestClient, predictor: Predictor) -> None:
    resp = client.post("/classify", json=EXAMPLE_INPUT)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got == predictor.predict(EXAMPLE_INPUT["texts"])
    for pred in got:
        assert set(pred) == {"labels", "scores", "truncated"}
        assert list(pred["scores"]) == predictor.labels


def test_classify_keeps_input_order_and_flags_truncation(client: TestClient) -> None:
    texts = EXAMPLE_INPUT["texts"]
    forward = client.post("/classify", json={"texts": texts}).json()
    backward = client.post("/classify", json={"texts": texts[::-1]}).json()
    assert backward == forward[::-1]
    long_post = client.post("/classify", json={"texts": ["word " * 200, "short"]}).json()
    assert [p["truncated"] for p in long_post] == [True, False]


def test_concurrent_callers_get_their_own_answers(client: TestClient, predictor: Predictor) -> None:
    requests = [[f"{t} #{i}" for t in EXAMPLE_INPUT["texts"][: 1 + i % 5]] for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda texts: client.post("/classify", json={"texts": texts}), requests))
    for texts, resp in zip(requests, answers, strict=True):
        assert resp.status_code == 200, resp.text
        assert resp.json() == predictor.predict(texts)


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        ({"texts": []}, "texts", "at least 1 item"),
        ({"texts": ["fine", "   "]}, "texts[1]", "empty or only whitespace"),
        ({"texts": ["\n\t"]}, "texts[0]", "empty or only whitespace"),
        ({"texts": ["fine", 42]}, "texts[1]", "valid string"),
        ({"texts": [None]}, "texts[0]", "valid string"),
        ({"texts": "just one string"}, "texts", "valid array"),
        ({"texts": ["x"] * (MAX_TEXTS + 1)}, "texts", f"at most {MAX_TEXTS} items"),
        ({"texts": ["ok", "y" * (MAX_CHARS + 1)]}, "texts[1]", f"at most {MAX_CHARS} characters"),
        ({}, "texts", "Field required"),
        ({"posts": ["wrong field name"]}, "texts", "Field required"),
        (b"texts=not json", "request body", "Invalid JSON"),
        (b"", "texts", "Field required"),
    ],
)
def test_bad_input_is_a_400_with_a_usable_message(client: TestClient, body: Any, where: str, says: str) -> None:
    if isinstance(body, bytes):
        resp = client.post("/classify", content=body, headers={"Content-Type": "application/json"})
    else:
        resp = client.post("/classify", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error.startswith(f"{where}: ") and says in error, error
    assert "Traceback" not in resp.text and "errors.pydantic.dev" not in resp.text
    # ... and the server keeps serving
    assert client.post("/classify", json={"texts": ["still here?"]}).status_code == 200


def test_labels_describe_the_model(client: TestClient, trained_run: Path) -> None:
    resp = client.get("/labels")
    assert resp.status_code == 200
    info = resp.json()
    schema = load_schema(trained_run / "schema.yaml")
    thresholds = load_thresholds(trained_run, schema.names)
    assert [lab["name"] for lab in info["labels"]] == schema.names
    for lab, spec in zip(info["labels"], schema.labels, strict=True):
        assert (lab["side"], lab["summary"], lab["definition"]) == (spec.side, spec.summary, spec.definition)
        assert lab["threshold"] == pytest.approx(thresholds[spec.name], abs=1e-4)
    assert info["model"]["reference"] == "givetake:tiny" and info["model"]["tag"] == "givetake:tiny"
    assert (Path(info["model"]["path"]) / "model.safetensors").is_file()
    assert info["model"]["max_length"] == 48
    assert info["model"]["engine"] == ENGINE  # from GIVETAKE_ENGINE
    assert info["schema"]["version"] == schema.version


def test_health_and_docs(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/docs.json").json()
    assert {"/classify", "/score_archive/submit", "/score_archive/status", "/score_archive/get"} <= set(spec["paths"])
    body = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["texts"]["examples"] == [EXAMPLE_INPUT["texts"]]
    assert client.get("/").status_code == 200


def _run_task(client: TestClient, name: str, content: bytes, **fields: str) -> httpx.Response:
    resp = client.post("/score_archive/submit", files={"file": (name, content)}, data=fields)
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["task_id"]
    deadline = time.monotonic() + 30
    while (status := client.get("/score_archive/status", params={"task_id": task_id}).json())[
        "status"
    ] == "in_progress":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return client.get("/score_archive/get", params={"task_id": task_id})


def test_archive_task_scores_an_uploaded_csv(client: TestClient, predictor: Predictor) -> None:
    texts = [f"{t} ({i})" for i in range(30) for t in EXAMPLE_INPUT["texts"][:1]]
    texts[4] = "  "
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "body"])
    writer.writerows([i, t] for i, t in enumerate(texts))
    resp = _run_task(client, "my posts.csv", buf.getvalue().encode(), text_column="body")
    assert resp.status_code == 200, resp.text
    assert 'filename="my_posts.scored.csv"' in resp.headers["content-disposition"]
    assert (
        resp.headers["x-givetake-rows-read"],
        resp.headers["x-givetake-rows-scored"],
        resp.headers["x-givetake-rows-errors"],
    ) == ("30", "29", "1")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["id"] for r in rows] == [str(i) for i in range(30)]  # every row, in upload order
    assert "empty or only whitespace" in rows[4]["error"] and rows[4]["labels"] == ""
    expected = predictor.predict([t for i, t in enumerate(texts) if i != 4])
    scored = [r for i, r in enumerate(rows) if i != 4]
    for row, pred in zip(scored, expected, strict=True):
        assert row["error"] == "" and row["labels"] == "|".join(pred["labels"])
        assert float(row["score_pitch"]) == pytest.approx(pred["scores"]["pitch"], abs=1e-6)


def test_archive_task_scores_jsonl_and_tweets(client: TestClient) -> None:
    lines = "".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(EXAMPLE_INPUT["texts"]))
    resp = _run_task(client, "posts.jsonl", lines.encode())
    assert resp.status_code == 200
    rows = [json.loads(x) for x in resp.text.splitlines()]
    assert [r["n"] for r in rows] == list(range(len(EXAMPLE_INPUT["texts"])))
    assert all(isinstance(r["labels"], list) and r["error"] is None for r in rows)
    tweets = [{"tweet": {"id_str": "1", "full_text": EXAMPLE_INPUT["texts"][0]}}]
    resp = _run_task(client, "tweets.js", ("window.YTD.tweets.part0 = " + json.dumps(tweets)).encode())
    assert resp.status_code == 200 and json.loads(resp.text)["id_str"] == "1"


def test_archive_task_rejects_what_it_cannot_read(client: TestClient) -> None:
    resp = _run_task(client, "notes.txt", b"hello")
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("notes.txt: unsupported input type '.txt'")
    resp = _run_task(client, "posts.csv", b"id,body\n1,hello\n")
    assert resp.status_code == 400 and "no column 'text'" in resp.json()["error"]
    assert client.post("/classify", json=EXAMPLE_INPUT).status_code == 200


@pytest.mark.server
@pytest.mark.smoke
def test_givetake_serve_end_to_end(trained_run: Path, tmp_path: Path) -> None:
    with running_server(trained_run, tmp_path) as base:
        resp = httpx.post(f"{base}/classify", json=EXAMPLE_INPUT, timeout=30)
        assert resp.status_code == 200 and len(resp.json()) == len(EXAMPLE_INPUT["texts"])
        bad = httpx.post(f"{base}/classify", json={"texts": [""]}, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"].startswith("texts[0]:")
        labels = httpx.get(f"{base}/labels", timeout=10).json()
        assert labels["model"]["path"] == str(trained_run.resolve()) and labels["model"]["tag"] is None
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'endpoint="/classify"' in metrics
        assert "givetake_batch_requests_count 1.0" in metrics  # the one valid /classify call


@pytest.mark.server
def test_two_workers_answer_concurrent_callers(trained_run: Path, tmp_path: Path, predictor: Predictor) -> None:
    requests = [[f"{t} (caller {i})" for t in EXAMPLE_INPUT["texts"][: 1 + i % 5]] for i in range(24)]
    with running_server(trained_run, tmp_path, "--workers", "2") as base:
        assert " with 2 workers at " in (tmp_path / "serve.log").read_text()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda texts: httpx.post(f"{base}/classify", json={"texts": texts}, timeout=30), requests)
            )
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    for texts, resp in zip(requests, answers, strict=True):
        assert resp.status_code == 200, resp.text
        assert [a["labels"] for a in resp.json()] == [p["labels"] for p in predictor.predict(texts)]
    # Both workers' batch counts are summed: every request was scored in some call.
    assert "givetake_batch_requests_sum 24.0" in metrics


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_worker_count_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from givetake.serving.service import _workers

    monkeypatch.setenv("GIVETAKE_WORKERS", value)
    with pytest.raises(ValueError, match=f"GIVETAKE_WORKERS={value!r} must be a whole number of at least 1"):
        _workers()
    monkeypatch.delenv("GIVETAKE_WORKERS")
    assert _workers() == 1


def test_classify_is_left_out_of_tracing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.util.http import parse_excluded_urls

    from givetake.serving.service import _tracing

    monkeypatch.delenv("GIVETAKE_TRACE", raising=False)
    excluded = parse_excluded_urls(_tracing()["excluded_urls"])
    assert excluded.url_disabled("http://127.0.0.1:3000/classify")
    assert excluded.url_disabled("http://127.0.0.1:3000/classify?x=1")
    for kept in ("/labels", "/score_archive/submit", "/classify/more", "/readyz"):
        assert not excluded.url_disabled(f"http://127.0.0.1:3000{kept}")
    monkeypatch.setenv("GIVETAKE_TRACE", "1")
    assert _tracing() == {}
    monkeypatch.setenv("GIVETAKE_TRACE", "yes please")
    with pytest.raises(ValueError, match="GIVETAKE_TRACE='yes please' must be 0 or 1"):
        _tracing()


def _serve_missing_model(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``givetake serve`` on a model that does not exist, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "givetake.cli", "serve", "--model", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_serve_refuses_a_bad_trace_setting_before_starting(tmp_path: Path) -> None:
    result = _serve_missing_model(tmp_path, GIVETAKE_TRACE="maybe")
    assert result.returncode == 2
    assert "GIVETAKE_TRACE" in result.stderr and "Traceback" not in result.stderr


def test_serve_fails_fast_on_a_missing_model(tmp_path: Path) -> None:
    result = _serve_missing_model(tmp_path)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
