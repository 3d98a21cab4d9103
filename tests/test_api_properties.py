"""Property-based API tests: schemathesis generates requests from the service's own OpenAPI spec.

Whatever it sends (requests that fit the schema, and requests built to violate it), no reply may
be a 5xx, every 4xx must be a JSON object with an ``error`` message, every archive task it
submits must end with such a reply too, and the server must still answer ``/readyz`` afterwards.
The fast run drives the app in-process with a bounded number of examples per operation; the slow
run (``make test-slow``) sends more to a real ``givetake serve``, /metrics included.

Tiers: ``asgi`` for the in-process run; ``server`` (and ``slow``) for the real-server run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from tests.helpers import running_server, service_app

pytestmark = pytest.mark.asgi

# Examples per operation and mode; GIVETAKE_FUZZ_EXAMPLES overrides both for a longer hunt.
FAST_EXAMPLES = int(os.environ.get("GIVETAKE_FUZZ_EXAMPLES", "12"))
SLOW_EXAMPLES = int(os.environ.get("GIVETAKE_FUZZ_EXAMPLES", "150"))
SETTINGS: dict[str, Any] = {
    "deadline": None,  # a request may wait behind a batch
    "database": None,  # no .hypothesis/ directory in the checkout
    "derandomize": True,  # the same examples on every run: a failure can be replayed
    "suppress_health_check": list(HealthCheck),
}
# Every operation in the spec, so that a new endpoint cannot slip past (checked below).
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("POST", "/classify"),
    ("POST", "/audit"),
    ("POST", "/predict"),
    ("POST", "/score_archive"),
    ("POST", "/score_archive/submit"),
    ("GET", "/score_archive/status"),
    ("GET", "/score_archive/get"),
    ("POST", "/score_archive/retry"),
    ("PUT", "/score_archive/cancel"),
]
NO_INPUT = {"/healthz", "/livez", "/readyz", "/metrics"}  # nothing to violate
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or path not in NO_INPUT
]
Get = Callable[[str, dict[str, str]], Any]  # (path, query) -> a response with .status_code and .content


def _check_reply(status: int, content: bytes, what: str) -> None:
    assert status < 500, f"{what}: {status} {content[:300]!r}"
    if status >= 400:
        try:
            body = json.loads(content)
        except ValueError:
            raise AssertionError(f"{what}: {status} reply is not JSON: {content[:300]!r}") from None
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (what, body)


def error_is_json(ctx: Any, response: Any, case: Any) -> None:
    """A schemathesis check: every 4xx carries a JSON object with a non-empty ``error`` string."""
    if 400 <= response.status_code < 500:
        _check_reply(response.status_code, response.content, case.operation.label)


CHECKS = [not_a_server_error, error_is_json]


def _follow_task(get: Get, task_id: str) -> None:
    """Wait for a submitted archive task; its result must be a success or a JSON 4xx."""
    deadline = time.monotonic() + 60
    while get("/score_archive/status", {"task_id": task_id}).json()["status"] == "in_progress":
        assert time.monotonic() < deadline, f"task {task_id} still running after 60 s"
        time.sleep(0.02)
    result = get("/score_archive/get", {"task_id": task_id})
    _check_reply(result.status_code, result.content, f"result of task {task_id}")


def _fuzz(schema: Any, method: str, path: str, mode: GenerationMode, examples: int, get: Get, **call: Any) -> None:
    """Send ``examples`` generated requests to one operation and check every reply."""
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, **SETTINGS)
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS, **call)
        if path.endswith("/submit") and response.status_code == 200:
            _follow_task(get, response.json()["task_id"])

    run()


def _operations(schema: Any) -> set[tuple[str, str]]:
    return {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}


# ------------------------------------------------------------------------------------ in-process


@pytest.fixture(scope="module")
def app(trained_run: Path) -> Iterator[Any]:
    """The app in-process, started once by schemathesis' ASGI client on its first request."""
    with service_app(trained_run) as service:
        yield service
        asgi.shutdown_lifespans()  # stop it (and its batching dispatcher) while the settings hold


@pytest.fixture(scope="module")
def in_process_schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/docs.json", app)


@pytest.fixture(scope="module")
def in_process_get(app: Any) -> Iterator[Get]:
    with asgi.get_client(app) as client:
        yield lambda path, query: client.get(path, params=query)


def test_the_spec_lists_the_operations_under_test(in_process_schema: Any) -> None:
    # /metrics needs the real server's Prometheus setup: only the slow run sends it requests.
    assert _operations(in_process_schema) == {*OPERATIONS, ("GET", "/metrics")}


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=str)
def test_generated_requests_in_process(
    in_process_schema: Any, in_process_get: Get, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz(in_process_schema, method, path, mode, FAST_EXAMPLES, in_process_get)


def test_still_ready_after_the_generated_requests(in_process_get: Get, app: Any) -> None:
    assert in_process_get("/readyz", {}).status_code == 200
    with asgi.get_client(app) as client:
        resp = client.post("/classify", json={"texts": ["still serving after all that?"]})
    assert resp.status_code == 200 and len(resp.json()) == 1


# ----------------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(trained_run, tmp_path_factory.mktemp("serve")) as base:
        yield base


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize(("method", "path", "mode"), [*CASES, ("GET", "/metrics", GenerationMode.POSITIVE)], ids=str)
def test_generated_requests_against_a_real_server(server: str, method: str, path: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{server}/docs.json")
    schema.config.update(base_url=server)
    with httpx.Client(base_url=server, timeout=60) as client:
        _fuzz(schema, method, path, mode, SLOW_EXAMPLES, lambda p, q: client.get(p, params=q), timeout=60)


@pytest.mark.slow
@pytest.mark.server
def test_real_server_still_ready(server: str) -> None:
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    assert httpx.post(f"{server}/classify", json={"texts": ["still here?"]}, timeout=30).status_code == 200
