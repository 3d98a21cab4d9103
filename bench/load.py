"""Load test: 64 concurrent clients on ``givetake serve`` for 60 s, loopback only, bounded in time.

Starts ``givetake serve`` on a free 127.0.0.1 port and runs ``--clients`` threads, each with a
kept-alive connection, posting 1 to ``--max-per-request`` real posts (TWCS and TweetEval, read
from ``../shared``) to ``POST /classify`` back to back for ``--seconds``. A 503 must be the
server's explicit ``overloaded`` answer with ``Retry-After``, and the client waits that long
before its next request; anything else that is not a 200 (another status, a dropped connection, a
reply slower than ``--client-timeout``) counts as an error. Reports requests, replies by status,
p50/p95/p99/max latency of the answered requests, posts/s and the peak resident memory of the
server's processes, and appends the table to ``bench/RESULTS.md``.

The run stops by itself: a watchdog kills the server and exits if the whole run passes
``--hard-limit`` seconds, and the server is stopped at the end, also on error or Ctrl-C.

    python bench/load.py [--model givetake:latest] [--clients 64] [--seconds 60] [--no-append]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/load.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from bench.common import (  # noqa: E402
    MemoryWatch,  # noqa: E402
    append_results,
    bench_parser,
    machine,
    percentile,
    real_posts,
)
from bench.http import HOST, free_port, server, wait_ready  # noqa: E402
from givetake.serving.limits import limits_from_env  # noqa: E402


@dataclass
class Tally:
    """What the clients saw, merged under a lock."""

    latencies: list[float] = field(default_factory=list)  # seconds, answered (200) requests
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503 overloaded", "connection: ..."
    posts: int = 0
    slowest: float = 0.0
    bad_503: str = ""  # the first 503 that was not an explicit overload answer


def _client(port: int, bodies: list[tuple[bytes, int]], stop_at: float, timeout: float, seed: int) -> Tally:
    """One client: request after request until ``stop_at``; waits Retry-After after a 503."""
    rng = random.Random(seed)
    mine = Tally()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    while time.perf_counter() < stop_at:
        body, n = bodies[rng.randrange(len(bodies))]
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/classify", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            reply = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            mine.statuses[f"connection: {type(exc).__name__}"] += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
            continue
        elapsed = time.perf_counter() - t0
        mine.slowest = max(mine.slowest, elapsed)
        if resp.status == 200:
            mine.latencies.append(elapsed)
            mine.posts += n
            mine.statuses["200"] += 1
        elif resp.status == 503:
            retry_after = resp.getheader("Retry-After")
            overloaded = b"overloaded" in reply
            mine.statuses["503 overloaded" if retry_after and overloaded else "503 other"] += 1
            if not (retry_after and overloaded) and not mine.bad_503:
                mine.bad_503 = f"Retry-After {retry_after!r}, body {reply[:120]!r}"
            time.sleep(min(float(retry_after or 1), max(0.0, stop_at - time.perf_counter())))
        else:
            mine.statuses[f"{resp.status} {reply[:80]!r}"] += 1
    conn.close()
    return mine


def drive(port: int, posts: list[str], clients: int, seconds: float, max_per_request: int, timeout: float) -> Tally:
    """``clients`` threads posting to ``/classify`` for ``seconds``; their merged tally."""
    rng = random.Random(0)
    bodies = []
    for i in range(0, len(posts), max_per_request):
        n = rng.randint(1, max_per_request)
        bodies.append((json.dumps({"texts": posts[i : i + n]}).encode(), len(posts[i : i + n])))
    stop_at = time.perf_counter() + seconds
    total, lock = Tally(), threading.Lock()

    def run(seed: int) -> None:
        mine = _client(port, bodies, stop_at, timeout, seed)
        with lock:
            total.latencies += mine.latencies
            total.statuses.update(mine.statuses)
            total.posts += mine.posts
            total.slowest = max(total.slowest, mine.slowest)
            total.bad_503 = total.bad_503 or mine.bad_503

    threads = [threading.Thread(target=run, args=(seed,), daemon=True) for seed in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total


def _watchdog(limit: float, proc_holder: dict[str, int]) -> None:
    """Kill the server's process group and exit if the run passes ``limit`` seconds: never a hang."""

    def fire() -> None:
        print(f"error: the load test passed its hard limit of {limit:.0f} s; stopping the server", file=sys.stderr)
        if "pid" in proc_holder:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc_holder["pid"], sig)
                except ProcessLookupError:
                    break
                time.sleep(3)
        os._exit(124)

    timer = threading.Timer(limit, fire)
    timer.daemon = True
    timer.start()


def main() -> None:
    """Start the server, drive it with the clients, stop it, report."""
    parser = bench_parser(__doc__)
    parser.add_argument("--engine", default="auto", help="passed to givetake serve --engine")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-per-request", type=int, default=8, help="each request holds 1 to this many posts")
    parser.add_argument("--client-timeout", type=float, default=150.0, help="longer than the server's 120 s")
    parser.add_argument("--hard-limit", type=float, default=0, help="seconds for the whole run (default: 4 min + 2x)")
    args = parser.parse_args()
    hard_limit = args.hard_limit or 240 + 2 * args.seconds + args.client_timeout
    holder: dict[str, int] = {}
    _watchdog(hard_limit, holder)
    posts = real_posts(args.posts, raw=Path(args.raw))
    limits = limits_from_env()

    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"givetake-bench-load-{port}.log"
    started = time.time()
    with server(args.model, args.engine, port, log) as proc:
        holder["pid"] = proc.pid
        wait_ready(port, proc, log)
        ready_s = time.time() - started
        watch = MemoryWatch(proc.pid)
        watch.start()
        drive(port, posts[::-1], 4, 3.0, args.max_per_request, args.client_timeout)  # warm-up, untimed
        t0 = time.perf_counter()
        tally = drive(port, posts, args.clients, args.seconds, args.max_per_request, args.client_timeout)
        wall = time.perf_counter() - t0
        peak_mb = watch.stop() / 2**20
        alive = proc.poll() is None
    requests = sum(tally.statuses.values())
    ok, overloaded = tally.statuses["200"], tally.statuses["503 overloaded"]
    errors = requests - ok - overloaded
    rows = [
        "| clients | seconds | requests | 200 | 503 overloaded (Retry-After) | other errors | p50 ms | p95 ms "
        "| p99 ms | max ms | posts/s | server peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.clients} | {wall:.0f} | {requests} | {ok} | {overloaded} | {errors} "
        f"| {percentile(tally.latencies, 50) * 1000:.0f} | {percentile(tally.latencies, 95) * 1000:.0f} "
        f"| {percentile(tally.latencies, 99) * 1000:.0f} | {tally.slowest * 1000:.0f} | {tally.posts / wall:.1f} "
        f"| {peak_mb:.0f} |",
    ]
    failures = {k: v for k, v in tally.statuses.items() if k not in ("200", "503 overloaded")}
    verdict = (
        "zero errors, only explicit 503 overloaded answers with Retry-After"
        if not failures
        else "errors: " + ", ".join(f"{k} x{v}" for k, v in failures.items())
    )
    no_hang = tally.slowest < args.client_timeout and alive
    body = (
        f"`python bench/load.py --model {args.model} --clients {args.clients} --seconds {args.seconds:g}`: "
        f"`givetake serve` on {HOST} (ready {ready_s:.0f} s after start; max concurrency {limits.max_concurrency} "
        f"requests per worker), {args.clients} client threads with kept-alive connections, each request 1 to "
        f"{args.max_per_request} real posts (TWCS and TweetEval), sent as soon as the last was answered, after "
        f"a 503 only once its Retry-After has passed. Latencies of answered requests. Clients and server share "
        f"the machine: {machine()}.\n\n"
        + "\n".join(rows)
        + f"\n\nResult: {verdict}; "
        + ("no hang (every reply within the client timeout, server up at the end)." if no_hang else "HANG or crash.")
        + (f"\n\nA 503 without the overload answer: {tally.bad_503}" if tally.bad_503 else "")
    )
    append_results(f"Load: {args.clients} clients for {args.seconds:g} s", body, write=not args.no_append)
    if errors or not no_hang:
        sys.exit(1)


if __name__ == "__main__":
    main()
