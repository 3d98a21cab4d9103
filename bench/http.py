"""HTTP serving speed: latency and throughput of ``givetake serve`` under 1, 8 and 32 concurrent clients.

First measures the raw engine in this process (``Predictor.predict_proba`` on posts in memory,
same model and engine, batch 1 and batch 32), then starts ``givetake serve`` on a free loopback
port and drives ``POST /classify`` with real posts (TWCS and TweetEval, ``../shared``), one post
per request, from 1, 8 and 32 client threads for a fixed time each, then from 1 again. Reports
p50/p95/p99 latency, posts/s, the average number of requests per batch the server formed (from
``/metrics``), peak memory of the server's processes, and server throughput as a share of the raw
engine at batch 32. The server is stopped at the end, also on error or Ctrl-C. Appends the table
to ``bench/RESULTS.md``.

    python bench/http.py [--model givetake:latest] [--engine onnx-int8] [--seconds 15]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/<name>.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import asyncio  # noqa: E402
import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from bench.common import (  # noqa: E402
    RAW_ENGINE,
    ROOT,
    MemoryWatch,
    append_results,
    bench_parser,
    engine_rate,
    machine,
    met,
    percentile,
    real_posts,
)
from givetake.core.predictor import ModelLoadError, Predictor  # noqa: E402

HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 32)
TARGET_P50_MS = 10.0
TARGET_RATIO = 0.85
TARGET_MEMORY_MB = 1024
_BATCH_METRIC = re.compile(r"^givetake_batch_requests_(sum|count)(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def spawned(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in its own process group, its output in ``log``, stopped (group and all) on exit.

    It gets this environment plus ``env``, without ``GIVETAKE_API_KEY``: the benchmarks measure the
    model, not authentication.
    """
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    full_env.pop("GIVETAKE_API_KEY", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def server(
    model: str, engine: str, port: int, log: Path, workers: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``givetake serve`` on ``port`` (see :func:`spawned`)."""
    cmd = [sys.executable, "-m", "givetake.cli", "serve", "--model", model, "--engine", engine]
    cmd += ["--host", HOST, "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    with spawned(cmd, log) as proc:
        yield proc


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a kept-alive connection: status and body."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def ready_problem(port: int, proc: subprocess.Popen[bytes], path: str = "/readyz", timeout: float = 180) -> str:
    """Empty once ``path`` answers 200; else why not (the server exited or stalled)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return f"exited ({proc.returncode})"
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            if request(conn, "GET", path)[0] == 200:
                return ""
        except OSError:
            pass
        time.sleep(0.5)
    return f"not ready after {timeout:.0f} s"


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    """Block until ``/readyz`` answers 200; exit with the server's log tail if it dies or stalls."""
    if problem := ready_problem(port, proc, timeout=timeout):
        sys.exit(f"error: the server {problem}:\n{log.read_text(errors='replace')[-3000:]}")


def _workers(log: Path) -> int:
    """The worker count ``givetake serve`` announced in its first line."""
    found = re.search(r" with (\d+) workers? at ", log.read_text(errors="replace"))
    return int(found.group(1)) if found else 1


def batch_stats(port: int) -> tuple[float, float]:
    """Sum and count of the batch sizes the server has merged into one forward call so far."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    text = request(conn, "GET", "/metrics")[1].decode()
    found = {k: 0.0 for k in ("sum", "count")}
    for kind, value in _BATCH_METRIC.findall(text):
        found[kind] += float(value)
    return found["sum"], found["count"]


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 reply (Content-Length or chunked)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readline()
    await reader.readline()
    return status, b"".join(parts)


def keep_posting(
    port: int, path: str, bodies: Iterator[bytes], clients: int, seconds: float
) -> tuple[list[float], list[str], float]:
    """``clients`` kept-alive connections posting ``bodies`` in turn to ``path`` until ``seconds`` pass.

    The clients are coroutines on one asyncio loop in this process, not threads: they share the
    2 cores with the server, and 32 threads doing blocking HTTP spent CPU on the GIL hand-over
    that the server then lacked (see bench/RESULTS.md, "HTTP serving"). Returns the latency of
    every 200 answer, the errors, and the seconds it ran.
    """
    latencies: list[float] = []
    errors: list[str] = []

    async def client(stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                body = next(bodies)
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                t0 = time.perf_counter()
                try:
                    writer.write(head + body)
                    status, reply = await asyncio.wait_for(_read_reply(reader), 60)
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                    writer.close()
                    try:
                        reader, writer = await asyncio.open_connection(HOST, port)
                    except OSError:
                        await asyncio.sleep(0.5)
                    continue
                if status != 200:
                    errors.append(f"{status} {reply[:100]!r}")
                    continue
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    async def run_all() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(client(stop_at) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(run_all())
    return latencies, errors, time.perf_counter() - started


def drive(port: int, posts: list[str], clients: int, seconds: float, per_request: int) -> dict:
    """``clients`` connections posting ``per_request`` posts per request to /classify (:func:`keep_posting`)."""
    bodies = itertools.cycle(
        [json.dumps({"texts": posts[i : i + per_request]}).encode() for i in range(0, len(posts), per_request)]
    )
    latencies, errors, elapsed = keep_posting(port, "/classify", bodies, clients, seconds)
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "posts_per_s": len(latencies) * per_request / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    """Measure the raw engine, then the server under each concurrency; report against the targets."""
    parser = bench_parser(__doc__)
    parser.add_argument("--engine", default="onnx-int8")
    parser.add_argument("--seconds", type=float, default=15.0, help="time per concurrency level")
    parser.add_argument("--raw-seconds", type=float, default=8.0, help="time per raw-engine measurement")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated")
    parser.add_argument("--per-request", type=int, default=1, help="posts per request")
    parser.add_argument("--workers", type=int, default=None, help="server workers (default: givetake serve's)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    posts = real_posts(args.posts, raw=Path(args.raw))
    started = time.time()

    try:
        predictor = Predictor(args.model, engine=args.engine)
    except ModelLoadError as exc:
        raise SystemExit(f"error: {exc}") from None
    raw = {}
    for batch in (1, 32):
        predictor.batch_size = batch
        raw[batch] = engine_rate(predictor.predict_proba, posts, batch, args.raw_seconds)
        print(f"raw {args.engine} batch {batch}: {raw[batch]['posts_per_s']:.1f} posts/s", flush=True)
    del predictor

    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"givetake-bench-http-{port}.log"
    results: list[dict] = []
    with server(args.model, args.engine, port, log, args.workers) as proc:
        load_started = time.time()
        wait_ready(port, proc, log)
        startup = time.time() - load_started
        watch = MemoryWatch(proc.pid)
        watch.start()
        workers = _workers(log)
        drive(port, posts[::-1], 2 * workers, 3.0, args.per_request)  # warm-up, untimed, every worker
        # Levels in rising order, then one client again: a batching scheme that learns from past
        # waits (BentoML's adaptive batching did) shows it in that last row.
        for clients in [*levels, *([1] if len(levels) > 1 else [])]:
            before = batch_stats(port)
            r = drive(port, posts, clients, args.seconds, args.per_request)
            after = batch_stats(port)
            calls = after[1] - before[1]
            r["avg_batch"] = (after[0] - before[0]) / calls if calls else 0.0
            r["label"] = f"{clients}" + (" (after the others)" if results and clients < results[-1]["clients"] else "")
            results.append(r)
            print(
                f"{r['label']:>2} clients: {r['posts_per_s']:.1f} posts/s, p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, avg batch {r['avg_batch']:.1f}, errors {r['errors']}",
                flush=True,
            )
        peak_mb = watch.stop() / 2**20
    log.unlink(missing_ok=True)  # kept only when the run failed, for its error

    base = raw[32]["posts_per_s"]
    lines = [
        "| clients | requests | errors | p50 ms | p95 ms | p99 ms | posts/s | avg requests per batch "
        "| vs raw engine (batch 32) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['posts_per_s']:.1f} | {r['avg_batch']:.1f} | {r['posts_per_s'] / base:.0%} |"
        )
    by_clients = {r["clients"]: r for r in results if r["label"] == str(r["clients"])}
    verdicts = []
    if 1 in by_clients and args.per_request == 1:
        p50 = by_clients[1]["p50_ms"]
        verdicts.append(
            f"p50 <= {TARGET_P50_MS:.0f} ms for one post at 1 client: {met(p50 <= TARGET_P50_MS)} ({p50:.1f} ms)"
        )
    if 32 in by_clients:
        ratio = by_clients[32]["posts_per_s"] / base
        verdicts.append(
            f"throughput at 32 clients >= {TARGET_RATIO:.0%} of the raw engine: {met(ratio >= TARGET_RATIO)} "
            f"({ratio:.0%}, {args.per_request} post(s) per request)"
        )
    verdicts.append(f"server peak memory <= 1 GB: {met(peak_mb <= TARGET_MEMORY_MB)} ({peak_mb:.0f} MB)")
    errors = [r["first_error"] for r in results if r["first_error"]]
    body = (
        f"`python bench/http.py --model {args.model} --engine {args.engine}`: `givetake serve` on {HOST} "
        f"(ready {startup:.0f} s after start), `POST /classify` with {args.per_request} real post(s) per request "
        f"(TWCS and TweetEval, {len(posts)} posts), {workers} server worker(s); each client a kept-alive "
        f"connection sending its next request as soon as the last is answered (coroutines on one asyncio loop "
        f"in the benchmark's process), {args.seconds:.0f} s per row after an untimed warm-up; "
        f"clients and server share the machine. Baseline: {RAW_ENGINE}: {raw[1]['posts_per_s']:.1f} posts/s "
        f"at batch 1 (p50 {raw[1]['p50_ms']:.1f} ms), {base:.1f} posts/s at batch 32. Peak memory: resident "
        f"memory of the server's processes, summed, sampled every 0.2 s. Machine: {machine()}. "
        f"Ran in {time.time() - started:.0f} s.\n\n"
        + "\n".join(lines)
        + "\n\nTargets: "
        + "; ".join(verdicts)
        + "."
        + (f"\n\nFirst error: `{errors[0]}`" if errors else "")
    )
    append_results(f"HTTP serving ({args.engine})", body, write=not args.no_append)


if __name__ == "__main__":
    main()
