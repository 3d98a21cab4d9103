"""Access and abuse limits of the HTTP API: API key, body size, overload, CORS, JSON errors.

Tier ``asgi``: the service runs in-process (:func:`tests.helpers.service_client`); the one test on
a real ``givetake serve`` is marked ``server``.
"""

from __future__ import annotations

import asyncio
import hmac
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from givetake.cli import app as cli_app
from givetake.errors import ConfigError
from givetake.serving import guards
from givetake.serving.guards import JsonErrors, LimitConcurrency, RequireApiKey
from tests.helpers import AUTH, KEY, running_server, service_client

pytestmark = pytest.mark.asgi

POST = {"texts": ["Could you share this? My sister's dog went missing near the canal path last night."]}


# ------------------------------------------------------------------------------------------ API key

# Every kind of route the server has: the API, the mounted GET /labels, the task endpoints, the
# docs page, its assets and spec, and a path that does not exist.
GUARDED = [
    ("POST", "/classify"),
    ("POST", "/audit"),
    ("GET", "/labels"),
    ("POST", "/score_archive"),
    ("POST", "/score_archive/submit"),
    ("GET", "/score_archive/status?task_id=abc"),
    ("GET", "/score_archive/get?task_id=abc"),
    ("POST", "/score_archive/retry?task_id=abc"),
    ("PUT", "/score_archive/cancel?task_id=abc"),
    ("GET", "/"),
    ("GET", "/docs.json"),
    ("GET", "/schema.json"),
    ("GET", "/static_content/index.css"),
    ("GET", "/no-such-page"),
    ("OPTIONS", "/classify"),
]


@pytest.fixture(scope="module")
def keyed(trained_run: Path) -> Iterator[TestClient]:
    with service_client(trained_run, GIVETAKE_API_KEY=KEY) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_every_endpoint_needs_the_key(keyed: TestClient, method: str, path: str) -> None:
    for headers, says in [
        ({}, "needs an API key"),
        ({"Authorization": "Bearer wrong"}, "invalid API key"),
        ({"Authorization": f"Basic {KEY}"}, "invalid API key"),  # right secret, wrong scheme
        ({"Authorization": f"Bearer {KEY[:-1]}"}, "invalid API key"),  # a prefix of the key
        ({"Authorization": f"Bearer {KEY}x"}, "invalid API key"),
        ({"Authorization": KEY}, "invalid API key"),
    ]:
        resp = keyed.request(method, path, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert says in resp.json()["error"]
        assert resp.headers["www-authenticate"].startswith("Bearer ")
    resp = keyed.request(method, path, headers=AUTH)
    assert resp.status_code != 401, resp.text


def test_the_key_opens_the_api(keyed: TestClient) -> None:
    assert keyed.post("/classify", json=POST, headers=AUTH).status_code == 200
    assert keyed.post("/classify", json=POST, headers={"Authorization": f"bearer   {KEY}"}).status_code == 200
    assert keyed.get("/labels", headers=AUTH).json()["labels"]
    assert keyed.get("/docs.json", headers=AUTH).json()["paths"]


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_probes_need_no_key(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(guards.hmac, "compare_digest", spy)
    guard = RequireApiKey(app=None, key=KEY)  # type: ignore[arg-type]
    scope = {"type": "http", "path": "/classify", "headers": [(b"authorization", b"Bearer nope")]}
    assert not guard.allows(scope)
    scope["headers"] = [(b"authorization", f"Bearer {KEY}".encode())]
    assert guard.allows(scope)
    # Digests of equal length whatever was sent: the comparison time reveals neither prefix nor length.
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GIVETAKE_API_KEY": "  "}, "GIVETAKE_API_KEY is set but empty"),
        ({"GIVETAKE_MAX_BODY_MB": "lots"}, "GIVETAKE_MAX_BODY_MB='lots' is not a number"),
        ({"GIVETAKE_MAX_CONCURRENCY": "0"}, "must be greater than 0"),
        ({"GIVETAKE_MAX_UPLOAD_MB": "-1"}, "must be greater than 0"),
    ],
)
def test_serve_refuses_bad_settings(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    monkeypatch.setattr(os, "execve", _no_exec)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli_app, ["serve", "--model", str(trained_run)])
    # A user error: `givetake` prints it as one line and exits 2 (see training.cli._user_errors).
    assert isinstance(result.exception, ConfigError), repr(result.exception)
    assert says in str(result.exception)


def _no_exec(*args: Any) -> None:
    raise AssertionError("givetake serve passed its checks and would have started BentoML")


# --------------------------------------------------------------------------------------- body limits


def test_bodies_over_the_limit_get_413(trained_run: Path) -> None:
    limits = {"GIVETAKE_MAX_BODY_MB": "0.01", "GIVETAKE_MAX_UPLOAD_MB": "0.05"}  # 10 KiB, 50 KiB
    with service_client(trained_run, **limits) as client:
        big = {"texts": ["word " * 3000]}  # 15 KB of JSON
        resp = client.post("/classify", json=big)
        assert resp.status_code == 413
        assert "larger than the 0.01 MiB allowed on /classify" in resp.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"texts": ["'
            for _ in range(20):
                yield b"word " * 200
            yield b'"]}'

        resp = client.post("/classify", content=chunks(), headers={"Content-Type": "application/json"})
        assert resp.status_code == 413 and "0.01 MiB" in resp.json()["error"]
        resp = client.post("/classify", content=b"{}", headers={"Content-Length": "ten"})
        assert resp.status_code == 400 and "not a number" in resp.json()["error"]
        assert client.post("/classify", json=POST).status_code == 200

        # Archive uploads have their own, larger limit.
        rows = "".join(f'{{"text": "post number {i} about our new shop"}}\n' for i in range(400)).encode()
        assert 10 * 1024 < len(rows) < 50 * 1024
        resp = client.post("/score_archive/submit", files={"file": ("posts.jsonl", rows)})
        assert resp.status_code == 200, resp.text
        resp = client.post("/score_archive/submit", files={"file": ("posts.jsonl", rows * 4)})
        assert resp.status_code == 413 and "GIVETAKE_MAX_UPLOAD_MB" in resp.json()["error"]
        assert client.get("/readyz").status_code == 200


# ------------------------------------------------------------------------------------- CORS, errors


def test_no_cors_headers_by_default(trained_run: Path) -> None:
    with service_client(trained_run) as client:
        origin = {"Origin": "https://elsewhere.example"}
        preflight = client.options("/classify", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 405 and "error" in preflight.json()
        for resp in (
            preflight,
            client.post("/classify", json=POST, headers=origin),
            client.get("/labels", headers=origin),
        ):
            assert not [h for h in resp.headers if h.lower().startswith("access-control-")], resp.headers


def test_errors_are_json(trained_run: Path) -> None:
    with service_client(trained_run) as client:
        resp = client.get("/no-such-page")
        assert resp.status_code == 404 and resp.json() == {"error": "GET /no-such-page: not found"}
        resp = client.get("/classify")
        assert resp.status_code == 405 and resp.json()["error"] == "GET /classify: method not allowed"
        assert resp.headers["allow"] == "POST"


def test_bentoml_upload_holes_are_closed(trained_run: Path) -> None:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"text\nfetched by the server\n")

        def log_message(self, *args: Any) -> None:
            pass

    decoy = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=decoy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{decoy.server_address[1]}/posts.csv"
    try:
        with service_client(trained_run) as client:
            # A file field sent as text: BentoML would download the URL itself.
            resp = client.post("/score_archive", data={"file": url}, files={"unused": ("x", b"")})
            assert resp.status_code == 400 and "does not fetch URLs" in resp.json()["error"], resp.text
            # A malformed multipart body: BentoML would answer 500.
            bad = b"--xyz\r\nFalse--xyz--\r\n"
            resp = client.post(
                "/score_archive", content=bad, headers={"Content-Type": "multipart/form-data; boundary=xyz"}
            )
            assert resp.status_code == 400 and resp.json()["error"].startswith("request body:"), resp.text
            # Pickled request bodies are refused by BentoML itself; the reply is made a JSON object.
            resp = client.post("/classify", content=b"x", headers={"Content-Type": "application/vnd.bentoml+pickle"})
            assert resp.status_code == 415 and "pickle" in resp.json()["error"]
            assert client.post("/classify", json=POST).status_code == 200
    finally:
        decoy.shutdown()
    assert hits == []


# ----------------------------------------------------------------------------------------- overload


def _held_app(gate: asyncio.Event) -> Starlette:
    async def slow(request: Request) -> JSONResponse:
        await gate.wait()
        return JSONResponse({"ok": True})

    async def plain_503(request: Request) -> JSONResponse:
        return JSONResponse({"error": "An unexpected error has occurred"}, status_code=503)

    routes = [Route("/work", slow), Route("/livez", slow), Route("/broken", plain_503)]
    return Starlette(routes=routes)


def test_overload_is_an_immediate_503_with_retry_after() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        app = JsonErrors(LimitConcurrency(_held_app(gate), max_concurrency=2))  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(client.get("/work")) for _ in range(2)]
            probe = asyncio.create_task(client.get("/livez"))  # probes are never refused
            await asyncio.sleep(0.05)
            refused = await asyncio.wait_for(client.get("/work"), timeout=5)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"].startswith("overloaded: 2 requests in progress")
            gate.set()
            assert [r.status_code for r in await asyncio.gather(*held, probe)] == [200, 200, 200]
            assert (await client.get("/work")).status_code == 200  # the slots are free again
            other = await client.get("/broken")  # BentoML's own 503s get the header and a truthful text
            assert other.status_code == 503 and other.headers["retry-after"] == "1"
            assert "overloaded" in other.json()["error"]

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------- real server


@pytest.mark.server
def test_real_server_with_an_api_key(trained_run: Path, tmp_path: Path) -> None:
    with running_server(trained_run, tmp_path, GIVETAKE_API_KEY=KEY) as base:
        for path in ("/livez", "/readyz", "/metrics"):
            assert httpx.get(base + path, timeout=10).status_code == 200, path
        resp = httpx.post(f"{base}/classify", json=POST, timeout=30)
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{base}/labels", timeout=10).status_code == 401
        resp = httpx.post(f"{base}/classify", json=POST, headers=AUTH, timeout=30)
        assert resp.status_code == 200 and len(resp.json()) == 1
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")]
