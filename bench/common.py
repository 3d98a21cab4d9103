"""What the speed benchmarks share: real posts from ``../shared``, timing helpers, the results file.

The posts are real, written by people no one here knows: every TWCS tweet (customer-support
threads, ``twcs_random5k`` and ``twcs_head5k``) and TweetEval tweets drawn with a fixed seed, read
by path from ``../shared/data/raw/`` and never copied into the project.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from givetake.core.resources import available_cores  # noqa: E402

RAW = ROOT.parent / "shared" / "data" / "raw"
RESULTS = ROOT / "bench" / "RESULTS.md"
DEFAULT_MODEL = "givetake:latest"
RAW_ENGINE = (
    "raw engine = `Predictor.predict_proba` on texts already in memory (no HTTP, no file I/O), "
    "same model, engine and batch size, in the same process run"
)
_TWCS = ("twcs_random5k/twcs_small.csv", "twcs_head5k/twcs_head.csv")


def real_posts(n: int = 20_000, raw: Path = RAW, seed: int = 0) -> list[str]:
    """``n`` distinct real posts: all TWCS tweets first, TweetEval tweets for the rest, shuffled.

    Exits with a clear message when ``../shared`` is not beside the project.
    """
    if not raw.is_dir():
        sys.exit(f"skipped: {raw} not found (the real posts live in ../shared, beside the project)")
    seen: set[str] = set()
    twcs: list[str] = []
    for rel in _TWCS:
        path = raw / rel
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as fh:
                twcs.extend(row.get("text") or "" for row in csv.DictReader(fh))
    tweeteval: list[str] = []
    for path in sorted((raw / "tweeteval").rglob("*_text.txt")):
        tweeteval.extend(path.read_text(encoding="utf-8").splitlines())
    rng = random.Random(seed)
    rng.shuffle(tweeteval)
    posts: list[str] = []
    for text in twcs + tweeteval:
        text = text.strip()
        if text and text not in seen:
            seen.add(text)
            posts.append(text)
        if len(posts) >= n:
            break
    if not posts:
        sys.exit(f"skipped: no TWCS or TweetEval posts found under {raw}")
    rng.shuffle(posts)
    return posts


def machine() -> str:
    """One line about the machine: cores this process may use, CPU, Python."""
    return (
        f"{available_cores()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start"
    )


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (0 when empty)."""
    return float(np.percentile(values, q)) if values else 0.0


def engine_rate(predict: Callable[[list[str]], object], posts: list[str], batch: int, seconds: float) -> dict:
    """Posts/s and per-call latency of ``predict`` on consecutive ``batch``-sized slices of ``posts``.

    Runs for about ``seconds`` (at least two calls, at most one pass over ``posts``), after one
    untimed warm-up call.
    """
    predict(posts[:batch])
    latencies: list[float] = []
    done = 0
    started = time.perf_counter()
    for start in range(0, len(posts) - batch + 1, batch):
        t0 = time.perf_counter()
        predict(posts[start : start + batch])
        latencies.append(time.perf_counter() - t0)
        done += batch
        if time.perf_counter() - started >= seconds and len(latencies) >= 2:
            break
    elapsed = time.perf_counter() - started
    return {
        "batch": batch,
        "posts": done,
        "posts_per_s": done / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
    }


def met(ok: bool) -> str:
    """``met`` or ``NOT met``."""
    return "met" if ok else "NOT met"


def append_results(title: str, body: str, write: bool = True) -> None:
    """Print a section and (unless ``write`` is false) append it, dated, to ``bench/RESULTS.md``."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"\n## {title} ({stamp})\n\n{body.rstrip()}\n"
    print(section)
    if not write:
        return
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is appended by the benchmark named in it.\n")
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(section)
    print(f"appended to {RESULTS}")


class MemoryWatch(threading.Thread):
    """Samples the memory of a process and all its children, summed; keeps the peak.

    Resident memory (RSS) by default; ``pss=True`` sums the proportional set size instead, for
    process trees such as Ray's, whose processes share libraries and the object store's memory,
    which a sum of RSS would count once per process.
    """

    def __init__(self, pid: int, interval: float = 0.2, pss: bool = False) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.pss = pid, interval, 0, pss
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                rss = 0
                for p in procs:
                    with suppress(psutil.Error):
                        rss += p.memory_full_info().pss if self.pss else p.memory_info().rss
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop_event.set()
        self.join()
        return self.peak


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600, pss: bool = False, interval: float = 0.2
) -> tuple[str, float, float]:
    """Run ``cmd`` in the project root: its stdout, wall seconds and peak memory (MB) of its process tree.

    The memory is sampled (:class:`MemoryWatch`), not ``getrusage(RUSAGE_CHILDREN)``: a child's
    ``ru_maxrss`` starts from this process's own resident size at the fork, which a raw-engine run
    before it makes large. Exits with the tail of its stderr when it fails.
    """
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = MemoryWatch(proc.pid, interval=interval, pss=pss)
    watch.start()
    stdout, stderr = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - t0
    peak_mb = watch.stop() / 2**20
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return stdout, wall, peak_mb


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every speed benchmark takes: --model, --posts, --raw and --no-append."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="models/<run> or a store tag (exported)")
    parser.add_argument("--posts", type=int, default=20_000, help="real posts to draw from")
    parser.add_argument("--raw", default=str(RAW), help="../shared/data/raw")
    parser.add_argument("--no-append", action="store_true", help="print only; leave bench/RESULTS.md alone")
    return parser
