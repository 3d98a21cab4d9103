"""The race, kept honest: givetake against other servers of the same weights, under the same load.

Each server is started alone on a free loopback port, checked (every label scored, and whether the
scores are independent sigmoids or a softmax), driven with real posts (TWCS and TweetEval,
``../shared``), one post per request, from 1, 8 and 32 kept-alive clients for ``--seconds`` each,
and stopped before the next starts. Reported per server and level: posts/s, p50 and p99 latency,
errors, and peak memory of the server's processes. Appends the table to ``bench/RESULTS.md``.

The servers:

- ``givetake``: ``givetake serve --model MODEL --engine onnx-int8``;
- ``pipeline``: ``bench/pipeline_server.py``, ``transformers.pipeline`` on the same run directory
  (always measured: it needs nothing givetake does not have);
- ``infinity``: ``infinity_emb v2`` (infinity-emb, optimum engine, ONNX) on the same run directory,
  when ``--infinity`` names its executable (default ``/tmp/infvenv/bin/infinity_emb``). Set-up, in a
  venv of its own (its pins differ from givetake's)::

      python3 -m venv /tmp/infvenv
      /tmp/infvenv/bin/pip install torch==2.13.0 "infinity-emb[server,torch,optimum]==0.0.78"

  It is started from inside the model directory (optimum resolves the ONNX file from there).

    python bench/peers.py [--model givetake:latest] [--seconds 10] [--peers givetake,pipeline,infinity]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/peers.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import AbstractContextManager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from bench.common import ROOT, MemoryWatch, append_results, bench_parser, machine, met, percentile, real_posts  # noqa: E402
from bench.http import HOST, free_port, keep_posting, ready_problem, spawned  # noqa: E402
from givetake.core.registry import exact_tag, resolve_model  # noqa: E402

CONCURRENCY = (1, 8, 32)
INFINITY = Path("/tmp/infvenv/bin/infinity_emb")
TARGET_SPEEDUP = 1.5  # givetake's posts/s at 32 clients against the best peer's
TARGET_P99_MS = 100.0  # givetake's p99 at 32 clients


@dataclass
class Peer:
    """How to start one server and speak to it."""

    name: str
    cmd: list[str]
    cwd: Path
    ready: str  # a GET path answering 200 once the model is loaded
    path: str  # the classify route
    body: Callable[[list[str]], bytes]
    scores: Callable[[bytes], list[dict[str, float]]]  # the reply -> one {label: score} per text
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def givetake_peer(model: str, port: int) -> Peer:
    return Peer(
        name="givetake (onnx-int8)",
        cmd=[sys.executable, "-m", "givetake.cli", "serve", "--model", model, "--engine", "onnx-int8"]
        + ["--host", HOST, "--port", str(port)],
        cwd=ROOT,
        ready="/readyz",
        path="/classify",
        body=lambda texts: json.dumps({"texts": texts}).encode(),
        scores=lambda reply: [p["scores"] for p in json.loads(reply)],
    )


def pipeline_peer(run_dir: Path, port: int) -> Peer:
    return Peer(
        name="transformers.pipeline (torch)",
        cmd=[sys.executable, str(_HERE / "pipeline_server.py"), str(run_dir), str(port)],
        cwd=ROOT,
        ready="/readyz",
        path="/classify",
        body=lambda texts: json.dumps({"texts": texts}).encode(),
        scores=json.loads,
    )


def infinity_peer(executable: Path, run_dir: Path, port: int, engine: str) -> Peer:
    return Peer(
        name=f"infinity-emb ({engine})",
        # "." from inside the model directory: given the full path, optimum finds model.int8.onnx and then
        # looks for it under the path a second time, and fails.
        cmd=[str(executable), "v2", "--model-id", ".", "--engine", engine, "--port", str(port)]
        # No warm-up: its warm-up posts are longer than the 128 positions the exported ONNX graph takes.
        + ["--host", HOST, "--batch-size", "32", "--no-bettertransformer", "--no-model-warmup"],
        cwd=run_dir,
        ready="/health",
        path="/classify",
        body=lambda texts: json.dumps({"model": ".", "input": texts}).encode(),
        scores=lambda reply: [{d["label"]: d["score"] for d in row} for row in json.loads(reply)["data"]],
    )


def running(peer: Peer, log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``peer`` in its own process group, stopped (group and all) on exit."""
    return spawned(peer.cmd, log, env=peer.env, cwd=peer.cwd)


def post(peer: Peer, port: int, texts: list[str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    conn.request("POST", peer.path, body=peer.body(texts), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def score_kind(peer: Peer, port: int, posts: list[str]) -> tuple[str, list[dict[str, float]]]:
    """Whether the scores of ``posts`` are independent sigmoids (a softmax sums to 1 on every post)."""
    status, reply = post(peer, port, posts)
    if status != 200:
        return f"error {status}: {reply[:120]!r}", []
    scores = peer.scores(reply)
    sums = [sum(s.values()) for s in scores]
    labels = len(scores[0]) if scores else 0
    kind = "softmax" if all(abs(x - 1) < 1e-3 for x in sums) else "independent sigmoids"
    return f"{kind}, {labels} labels (sum per post {min(sums):.2f}-{max(sums):.2f})", scores


def drive(peer: Peer, port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` kept-alive connections, one post per request, until ``seconds`` pass.

    As bench/http.py (:func:`bench.http.keep_posting`).
    """
    latencies, errors, elapsed = keep_posting(port, peer.path, itertools.cycle(bodies), clients, seconds)
    return {
        "clients": clients,
        "posts_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def measure(peer: Peer, port: int, posts: list[str], levels: list[int], seconds: float, log: Path) -> dict:
    """Start ``peer``, check its scores, drive every level, stop it: its row of the report."""
    print(f"--- {peer.name}", flush=True)
    with running(peer, log) as proc:
        problem = ready_problem(port, proc, peer.ready, timeout=240)
        if problem:
            return {"peer": peer, "skipped": f"{problem}: {log.read_text(errors='replace')[-400:]}"}
        watch = MemoryWatch(proc.pid)
        watch.start()
        kind, scores = score_kind(peer, port, posts[:20])
        bodies = [peer.body([p]) for p in posts]
        drive(peer, port, bodies, 4, 2.0)  # warm-up, not counted
        rows = []
        for clients in levels:
            row = drive(peer, port, bodies, clients, seconds)
            rows.append(row)
            print(
                f"{clients:>3} clients: {row['posts_per_s']:7.1f} posts/s  p50 {row['p50_ms']:6.1f} ms  "
                f"p99 {row['p99_ms']:6.1f} ms  errors {row['errors']} {row['first_error']}",
                flush=True,
            )
        alive = proc.poll() is None
        peak_mb = watch.stop() / 2**20
    return {"peer": peer, "rows": rows, "kind": kind, "scores": scores, "peak_mb": peak_mb, "alive": alive}


def _mean_rows(results: list[dict]) -> dict[str, dict]:
    """Per server name: ``peer`` and, per client count, the mean of each figure over the rounds."""
    merged: dict[str, dict] = {}
    for r in results:
        entry = merged.setdefault(r["name"], {"peer": r["peer"], "runs": []})
        entry["runs"].append({row["clients"]: row for row in r["rows"]})
    for entry in merged.values():
        levels = entry["runs"][0].keys()
        entry["rows"] = {
            c: {
                k: sum(run[c][k] for run in entry["runs"]) / len(entry["runs"])
                for k in ("posts_per_s", "p50_ms", "p99_ms")
            }
            for c in levels
        }
    return merged


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per concurrency level")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated")
    parser.add_argument("--peers", default="givetake,pipeline,infinity", help="comma-separated, in run order")
    parser.add_argument("--infinity", default=str(INFINITY), help="the infinity_emb executable (its own venv)")
    parser.add_argument("--infinity-engine", default="optimum", help="infinity's --engine: optimum or torch")
    parser.add_argument(
        "--rounds", type=int, default=2, help="passes over the servers, every other one in reverse order (ABBA)"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    tag = exact_tag(args.model) if not Path(args.model).is_dir() else args.model
    run_dir = resolve_model(tag)
    posts = real_posts(args.posts, raw=Path(args.raw))
    started = time.time()
    load_before = os.getloadavg()

    results, skipped = [], []
    logs = Path(ROOT / "build" / "peers")
    logs.mkdir(parents=True, exist_ok=True)
    names = args.peers.split(",")
    # Every other round in reverse order: on a shared machine the load drifts, and ABBA spreads the drift.
    order = [(n, i + 1) for i in range(args.rounds) for n in (names if i % 2 == 0 else names[::-1])]
    for name, round_number in order:
        port = free_port()
        if name == "givetake":
            peer = givetake_peer(tag, port)
        elif name == "pipeline":
            peer = pipeline_peer(run_dir, port)
        elif name == "infinity":
            if not Path(args.infinity).is_file():
                if round_number == 1:
                    skipped.append(f"infinity-emb: not installed ({args.infinity} not found; set-up in bench/peers.py)")
                    print(skipped[-1], flush=True)
                continue
            peer = infinity_peer(Path(args.infinity), run_dir, port, args.infinity_engine)
        else:
            raise SystemExit(f"error: unknown peer {name!r}; choose from givetake, pipeline, infinity")
        load = os.getloadavg()[0]
        result = measure(peer, port, posts, levels, args.seconds, logs / f"{name}.log")
        result.update(round=round_number, load=load, name=name)
        if "skipped" in result:
            skipped.append(f"{peer.name}: {result['skipped']}")
            print(skipped[-1], flush=True)
        else:
            results.append(result)

    lines = [
        f"`python bench/peers.py --model {args.model} --seconds {args.seconds:g}`: model {tag}; each server alone, "
        f"one real post per request, kept-alive clients on one asyncio loop in the benchmark process; "
        f"{args.seconds:g} s per level after a 2 s warm-up. Machine: {machine()}; load average "
        f"{load_before[0]:.2f}/{load_before[1]:.2f} before, {os.getloadavg()[0]:.2f} after "
        "(the machine is shared with other jobs: compare servers within this table, not across runs).",
        "",
        "| server | round | load at start | clients | posts/s | p50 ms | p99 ms | errors | peak memory MB | scores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (names.index(r["name"]), r["round"])):
        for row in r["rows"]:
            lines.append(
                f"| {r['peer'].name} | {r['round']} | {r['load']:.1f} | {row['clients']} | {row['posts_per_s']:.1f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} | {r['peak_mb']:.0f} | {r['kind']} |"
            )
    lines += [f"- skipped: {s}" for s in skipped]
    # The targets on each server's mean over the rounds.
    merged = _mean_rows(results)
    ours = merged.pop("givetake", None)
    if ours is not None and merged:
        top = max(levels)
        mine = ours["rows"]
        best = max(merged.values(), key=lambda r: r["rows"][top]["posts_per_s"])
        best_top = best["rows"][top]
        speedup = mine[top]["posts_per_s"] / max(best_top["posts_per_s"], 1e-9)
        lines.append("")
        lines.append(f"Targets, on each server's mean over {args.rounds} round(s):")
        lines.append("")
        lines.append(
            f"- throughput at {top} clients: {speedup:.2f}x the best peer ({best['peer'].name}); "
            f"target >= {TARGET_SPEEDUP}x: {met(speedup >= TARGET_SPEEDUP)}"
        )
        low = min(levels)
        best_p50 = min(r["rows"][low]["p50_ms"] for r in merged.values())
        lines.append(
            f"- p50 at {low} client: {mine[low]['p50_ms']:.1f} ms against the best peer's {best_p50:.1f} ms; "
            f"target <= the best peer's: {met(mine[low]['p50_ms'] <= best_p50)}"
        )
        lines.append(
            f"- p99 at {top} clients: {mine[top]['p99_ms']:.1f} ms; target <= {TARGET_P99_MS:.0f} ms: "
            f"{met(mine[top]['p99_ms'] <= TARGET_P99_MS)}"
        )
    for r in results:
        if not r["alive"]:
            lines.append(f"- {r['peer'].name} had stopped by the end of its run (see build/peers/)")
    lines.append(f"- wall time {time.time() - started:.0f} s")
    append_results(
        "Peers: givetake against other servers of the same weights (bench/peers.py)",
        "\n".join(lines),
        write=not args.no_append,
    )


if __name__ == "__main__":
    main()
