"""Helpers shared by the test modules (test modules import from here, never from each other).

- paths and the seed corpus: :data:`ROOT`, :data:`GOLD_DEV`, :func:`needs_shared`, :func:`read_seed_rows`;
- the service in-process (tier ``asgi``): :func:`service_app`, :func:`service_client`;
- a real ``givetake serve`` (tier ``server``): :func:`running_server`; any server command:
  :func:`started_server`, :func:`free_port`, :func:`stop`;
- the API key of the keyed tests: :data:`KEY`, :data:`AUTH`;
- archive files for ``givetake score`` and ``predict_frame``: :func:`make_rows`, :func:`write_input`,
  :func:`read_output`, :func:`read_errors`, :func:`three_files`;
- random texts that break naive writers: :func:`texts`, :func:`write_texts`;
- the feed audit: :func:`write_accounts_csv`, :func:`check_report_html`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st
from starlette.testclient import TestClient

from givetake.core import bundle
from givetake.serving import limits
from givetake.serving.score import side_paths

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
GOLD_DEV = SHARED / "data" / "gold" / "dev.jsonl"
SEED_DIR = ROOT / "labels" / "seed"

KEY = "k3y-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

# The service's settings: an in-process app unsets those a test does not give.
SETTINGS = (
    limits.API_KEY_ENV,
    limits.MAX_BODY_ENV,
    limits.MAX_UPLOAD_ENV,
    limits.MAX_CONCURRENCY_ENV,
    bundle.SCHEMA_ENV,
)


def needs_shared(path: Path) -> pytest.MarkDecorator:
    """Skip a test when ../shared (present in CI, absent in a user's clone) lacks ``path``."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not found: ../shared is not beside this clone")


def read_seed_rows(per_file: int = 30) -> list[dict]:
    """The first ``per_file`` rows of each seed shard (project-written text)."""
    rows: list[dict] = []
    for path in sorted(SEED_DIR.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= per_file:
                    break
                rows.append(json.loads(line))
    return rows


# ------------------------------------------------------------------------------ in-process service


@contextlib.contextmanager
def service_app(model: Path | str, **env: str | None) -> Iterator[Any]:
    """The givetake BentoML ASGI app, not started yet, serving ``model`` with extra environment settings.

    The service and its middleware read their settings when the app starts, so ``env`` (a value
    of None unsets the variable) holds until the block ends.
    """
    # BentoML's private task store: imported here, as only the in-process app needs it.
    from _bentoml_impl.tasks import Sqlite3Store
    from bentoml._internal.configuration.containers import BentoMLContainer

    # `bentoml serve` creates the task result table at startup; an in-process app must do it itself.
    Sqlite3Store.init_db(BentoMLContainer.result_store_file.get())
    # Settings not given are unset, even while another module's app holds its own.
    settings: dict[str, str | None] = {**dict.fromkeys(SETTINGS), "GIVETAKE_MODEL": str(model), **env}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in settings.items():
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        # Imported here: the service module builds the BentoML service, which only the asgi tier needs.
        from givetake.serving.service import PostClassifier

        service: Any = PostClassifier  # a bentoml Service; its stubs say it is the class
        # Each app's metrics middleware registers the same Prometheus series in the one process-wide
        # registry, so a second in-process app would fail; /metrics is checked on a real server instead.
        config = service.config
        metrics = config.get("metrics")
        config["metrics"] = {"enabled": False}
        try:
            app = service.to_asgi()
        finally:
            if metrics is None:
                config.pop("metrics", None)
            else:
                config["metrics"] = metrics
        yield app


@contextlib.contextmanager
def service_client(model: Path | str, **env: str | None) -> Iterator[TestClient]:
    """A test client of the started app (see :func:`service_app`); the app stops when the block ends."""
    with service_app(model, **env) as app, TestClient(app) as client:
        yield client


# ------------------------------------------------------------------------------------- real server


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own process group, workers included."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def started_server(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path = ROOT) -> Iterator[str]:
    """``cmd`` plus ``--port PORT`` (a free loopback port) in its own process group, its output in
    ``log_path``; yields its base URL once ``/readyz`` answers 200 (90 s at most), stops it after."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "server not ready in 90 s:\n" + log_path.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.25)
            yield base
        finally:
            stop(proc)


@contextlib.contextmanager
def running_server(model: Path, tmp_path: Path, *args: str, **env: str) -> Iterator[str]:
    """``givetake serve --model MODEL`` on a free loopback port; yields its base URL, stops it after."""
    full_env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "TOKENIZERS_PARALLELISM": "false",
        # Its own task database: an in-process app of other tests keeps the default one open.
        "BENTOML_RESULT_STORE": str(tmp_path / "tasks.db"),
        **env,
    }
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "givetake.cli", "serve", "--model", str(model), *args]
    with started_server(cmd, log_path, full_env) as base:
        yield base
    assert "Traceback" not in log_path.read_text()


# ------------------------------------------------------------------------------------ archive files

WORDS = [
    "our",
    "new",
    "shop",
    "opens",
    "please",
    "share",
    "this",
    "great",
    "thread",
    "on",
    "bus",
    "networks",
    "sorry",
    "about",
    "your",
    "order",
    "what",
    "do",
    "you",
    "think",
    "user",
    "http",
]
BAD = {3: "   ", 7: None, 11: "\n\t"}  # row index -> unusable text (blank, missing, whitespace)


def make_rows(n: int, bad: dict[int, Any] | None = None) -> list[dict[str, Any]]:
    """``n`` posts with an id, a text and an extra column; ``bad`` replaces some texts."""
    bad = BAD if bad is None else bad
    rows = []
    for i in range(n):
        text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 9)) + f" #{i}"
        rows.append({"id": i, "text": bad.get(i, text), "author": f"a{i % 5}"})
    return rows


def write_input(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as CSV, JSONL, Parquet or tweets.js (by suffix)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    elif path.suffix == ".parquet":
        table = pa.table(
            {
                "id": [r["id"] for r in rows],
                "author": [r["author"] for r in rows],
                "text": [r["text"] if isinstance(r["text"], str) else None for r in rows],
            }
        )
        pq.write_table(table, path, row_group_size=16)
    else:
        tweets = [
            {
                "tweet": {
                    "id_str": str(r["id"]),
                    "full_text": r["text"],
                    "created_at": "Mon Nov 23 10:00:00 +0000 2026",
                    "entities": {"hashtags": [], "urls": []},
                }
            }
            for r in rows
        ]
        path.write_text("window.YTD.tweets.part0 = " + json.dumps(tweets, indent=2), encoding="utf-8")
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``givetake score`` output (CSV, Parquet or JSONL, by suffix), through the standard
    readers only. JSONL is read line by line from the file: ``str.splitlines`` would also split at
    U+2028 and U+0085 inside texts."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def read_errors(output: Path) -> list[dict[str, Any]]:
    """The rows of a ``givetake score`` run's error file (empty when there is none)."""
    path = side_paths(output)["errors"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def three_files(folder: Path) -> list[Path]:
    """posts.csv, sub/posts.jsonl and more.parquet: 30 rows each, ids 0-29, 100-129, 200-229."""
    paths = []
    for k, name in enumerate(["posts.csv", "sub/posts.jsonl", "more.parquet"]):
        rows = make_rows(30)
        for r in rows:
            r["id"] += 100 * k
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        paths.append(write_input(folder / name, rows))
    return paths


# -------------------------------------------------------------------------------------- odd texts

SPECIALS = ["\r", "\n", "\r\n", "\r\r", '"', "'", ",", ";", "\t", "|", "\x00", "\ufeff", "\u2028", "\u2029", "\x85"]
SPECIALS += ["\U0001f525", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\\", "\\n", "{", "}", " ", "é"]


def texts(surrogates: bool) -> st.SearchStrategy[str]:
    """Random post texts built from ordinary words and the characters that break naive writers.

    Lone surrogates only where the input format can hold them: JSON escapes them (``"\\ud800"``);
    a UTF-8 CSV or a Parquet string column cannot.
    """
    chars = st.characters(blacklist_categories=() if surrogates else ("Cs",))
    piece = st.one_of(st.sampled_from(SPECIALS), st.text(chars, max_size=8), st.sampled_from(["our", "new", "shop"]))
    return st.lists(piece, max_size=12).map("".join)


def write_texts(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` (id, text) as the suffix says, with the standard writers."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "text"])
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:  # ensure_ascii: lone surrogates travel as escapes
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        pq.write_table(pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}), path)


# ------------------------------------------------------------------------------------- feed audit

# One post per label, for the feed audit's accounts.
AUDIT_POSTS = [
    "Our new pottery course opens Monday, book now at the link!",
    "Please RT, we need votes for the community grant",
    "Great guide from the council on recycling, worth a read",
    "What is the one kitchen tool you would never give up?",
    "@user Sorry about the delay, DM us your order number and we will chase it",
]


def write_accounts_csv(path: Path) -> None:
    """60 posts by three accounts (studio, library, helpdesk), a day apart, as a CSV for the feed audit."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["author", "created_at", "text"])
        for i in range(60):
            author = ["studio", "library", "helpdesk"][i % 3]
            w.writerow([author, (start + timedelta(days=i)).isoformat(), f"{AUDIT_POSTS[i % 5]} ({i})"])


def check_report_html(page: str) -> None:
    """Self-contained: no script, no external resource; charts inline as SVG with legends."""
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|src=\"http|url\(http|@import", page)
    assert page.count("<svg") >= 3
    assert "95% interval" in page and "raw count" in page
