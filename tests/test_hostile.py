"""Hostile text: every odd input gets a clear 4xx or a correct prediction, and memory stays bounded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from starlette.testclient import TestClient

from givetake.core.predictor import Predictor
from givetake.serving.score import score_file, side_paths
from givetake.serving.service import MAX_CHARS, MAX_TEXTS
from tests.helpers import service_client


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor(trained_run)


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    with service_client(trained_run) as test_client:
        yield test_client


def _alive(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.post("/classify", json={"texts": ["still serving?"]}).status_code == 200


HOSTILE_TEXTS = {
    "control characters": "".join(chr(c) for c in range(1, 32)) + "\x7f\x85 our new shop opens",
    "NUL bytes": "please\x00share\x00this",
    "right-to-left marks": "\u202eesrever ni txet\u202c \u200f\u061c\u2067 please share this",
    "zero-width joiners": "share\u200dthis\u200b\u200c\ufeff please " + "\u200d" * 500,
    "emoji flood": "\U0001f469\u200d\U0001f469\u200d\U0001f467" * 2000 + " 🔥" * 3000,
    "combining marks": "z" + "\u0301\u0302\u0303\u0304" * 4000,
    "line separators": "one\u2028two\u2029three\r\n\r\nfour\x0b\x0c",
    "one 20,000-character word": "a" * MAX_CHARS,
    "private use and noncharacters": "\ue000\uf8ff\U000f0000\ufffe\uffff our order",
    "mixed scripts": "Привет 你好 مرحبا שלום नमस्ते こんにちは 안녕하세요 our new shop",
    "markup": "<script>alert(1)</script> {{7*7}} ${jndi:ldap://x} '; DROP TABLE posts; --",
    "whitespace around text": "\t\n  \u3000\u00a0 hello \u2003\n",
}


@pytest.mark.asgi
@pytest.mark.parametrize("name", list(HOSTILE_TEXTS))
def test_odd_text_gets_the_offline_prediction(client: TestClient, predictor: Predictor, name: str) -> None:
    text = HOSTILE_TEXTS[name]
    assert len(text) <= MAX_CHARS
    resp = client.post("/classify", json={"texts": [text, "our new shop opens"]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == predictor.predict([text, "our new shop opens"])  # the same answer as offline


@pytest.mark.asgi
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"texts": ["\\ud800 lone high surrogate"]}', "Invalid JSON"),
        (b'{"texts": ["lone low \\udfff surrogate"]}', "Invalid JSON"),
        (b'{"texts": ["\xff\xfe not UTF-8"]}', "Invalid JSON"),
        (b'{"texts": [{"text": "nested object"}]}', "texts[0]: Input should be a valid string"),
        (b'{"texts": [["nested", "list"]]}', "texts[0]: Input should be a valid string"),
        (b'{"texts": {"0": "an object, not a list"}}', "texts: Input should be a valid array"),
        (b'{"texts": ["x"], "texts": 5}', "texts: Input should be a valid array"),
        (b'{"texts": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}", "request body"),
        (b'{"texts": ["ok"]' + b" " * 100 + b"garbage", "Invalid JSON"),
        (b"[" * 100_000, "Invalid JSON"),
        (b'"just a string"', "request body"),
        (b"null", "request body"),
    ],
)
def test_malformed_json_is_a_clear_400(client: TestClient, body: bytes, says: str) -> None:
    resp = client.post("/classify", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["error"], resp.json()["error"]
    _alive(client)


@pytest.mark.asgi
def test_too_long_and_too_many_are_clear_400s(client: TestClient) -> None:
    resp = client.post("/classify", json={"texts": ["\U0001f525" * (MAX_CHARS + 1)]})  # 20,001 code points
    assert resp.status_code == 400 and f"at most {MAX_CHARS} characters" in resp.json()["error"]
    resp = client.post("/classify", json={"texts": ["x"] * 10_000})
    assert resp.status_code == 400 and f"at most {MAX_TEXTS} items" in resp.json()["error"]
    resp = client.post("/classify", content=b'{"texts": ["' + b"a" * 40 * 2**20 + b'"]}')
    assert resp.status_code == 413  # 40 MiB: refused by size before it is parsed
    _alive(client)


class _PeakRss:
    """The highest resident memory of this process while the block runs (sampled every 10 ms)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


@pytest.mark.asgi
def test_largest_request_is_answered_in_bounded_memory(client: TestClient) -> None:
    # 256 texts of 20,000 characters (5 MB of JSON), varied so no cache makes it cheap.
    texts = [(f"post {i} about our new shop please share " * 500)[:MAX_CHARS] for i in range(MAX_TEXTS)]
    body = json.dumps({"texts": texts}).encode()
    with _PeakRss() as rss:
        resp = client.post("/classify", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200
    got = resp.json()
    assert len(got) == MAX_TEXTS and all(p["truncated"] for p in got)
    # Measured 181 MB with the tiny model: the body, 256 decoded texts and their untruncated token ids.
    assert rss.growth_mb < 512, f"peak RSS grew by {rss.growth_mb:.0f} MB"
    _alive(client)


def _jsonl(path: Path) -> list[dict]:
    # Not splitlines(): JSON leaves U+0085 and U+2028 unescaped, and JSON Lines ends lines at \n only.
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


def test_archive_rows_with_bad_unicode_are_errors_not_crashes(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "odd.jsonl"
    lines = [
        '{"id": 1, "text": "our new shop opens"}',
        '{"id": 2, "text": "half an emoji \\ud83d"}',  # a lone surrogate, as a JS substring can leave
        '{"id": 3, "text": "fine again", "author": "\\udfff"}',  # one in another column
        '{"id": 4, "text": ' + json.dumps(HOSTILE_TEXTS["control characters"]) + "}",
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for out_name in ("o.jsonl", "o.csv", "o.parquet"):
        out = tmp_path / out_name
        summary = score_file(src, out, predictor, progress=False)
        assert (summary.read, summary.scored, summary.errors) == (4, 3, 1)
        errors = [json.loads(x) for x in side_paths(out)["errors"].read_text().splitlines()]
        assert errors == [{"row": 2, "reason": "'text' is not valid Unicode (a lone surrogate at character 14)"}]
    rows = _jsonl(tmp_path / "o.jsonl")
    assert [r["id"] for r in rows] == [1, 3, 4] and rows[1]["author"] == "\udfff"  # written back as its escape
    inline = tmp_path / "inline.jsonl"  # the HTTP task keeps every row, the bad one with its reason
    summary = score_file(src, inline, predictor, inline_errors=True, progress=False)
    rows = _jsonl(inline)
    assert [r["id"] for r in rows] == [1, 2, 3, 4] and "lone surrogate" in rows[1]["error"]
