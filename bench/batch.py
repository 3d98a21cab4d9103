"""Offline scoring speed: ``givetake score`` on a file of 20,000 real posts, against the raw engine.

Writes real posts (TWCS and TweetEval, ``../shared``) to a temporary JSONL file, measures the raw
engine on the same posts in this process (``Predictor.predict_proba`` in calls of 512 posts, the
chunk ``givetake score`` reads, batch 32), then runs ``givetake score`` on the file as a child
process. Reports the command's own posts/s (from its summary line: reading, scoring, writing,
without interpreter start and model load), the end-to-end rate, their ratio to the raw engine,
and the command's peak resident memory. Appends the table to ``bench/RESULTS.md``.

    python bench/batch.py [--model givetake:latest] [--engine onnx-int8] [--posts 20000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/<name>.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.common import (  # noqa: E402
    RAW_ENGINE,
    append_results,
    bench_parser,
    machine,
    met,
    real_posts,
    run_measured,
)
from givetake.core.predictor import ModelLoadError, Predictor  # noqa: E402

CHUNK = 512  # givetake score's default --chunk-size
BATCH = 32  # givetake score's default --batch-size
TARGET_RATIO = 0.90
_SUMMARY = re.compile(r"rows read: (\d+)\s+scored: (\d+).*? in ([0-9.]+) s \((\d+) posts/s\)", re.S)


def raw_rate(predictor: Predictor, posts: list[str]) -> float:
    """Posts/s of the raw engine over ``posts`` in calls of ``CHUNK`` (one warm-up call first)."""
    predictor.predict_proba(posts[:BATCH])
    started = time.perf_counter()
    for start in range(0, len(posts), CHUNK):
        predictor.predict_proba(posts[start : start + CHUNK])
    return len(posts) / (time.perf_counter() - started)


def main() -> None:
    """Raw engine, then ``givetake score`` on the same posts; report rates, ratio and memory."""
    parser = bench_parser(__doc__)
    parser.add_argument("--engine", default="onnx-int8")
    args = parser.parse_args()
    posts = real_posts(args.posts, raw=Path(args.raw))
    started = time.time()

    try:
        predictor = Predictor(args.model, engine=args.engine, batch_size=BATCH)
    except ModelLoadError as exc:
        raise SystemExit(f"error: {exc}") from None
    raw = raw_rate(predictor, posts)
    print(f"raw {args.engine}: {raw:.1f} posts/s", flush=True)
    del predictor

    with tempfile.TemporaryDirectory(prefix="givetake-bench-") as tmp:
        src, out = Path(tmp) / "posts.jsonl", Path(tmp) / "posts.scored.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for i, text in enumerate(posts):
                fh.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
        cmd = [sys.executable, "-m", "givetake.cli", "score", str(src), "-o", str(out)]
        cmd += ["--model", args.model, "--engine", args.engine, "--chunk-size", str(CHUNK), "--batch-size", str(BATCH)]
        stdout, wall, peak_mb = run_measured(cmd, timeout=900)
    match = _SUMMARY.search(stdout)
    if not match:
        sys.exit(f"error: no summary line in the output of givetake score:\n{stdout[-2000:]}")
    read, scored, seconds = int(match[1]), int(match[2]), float(match[3])
    rate = read / seconds
    ratio = rate / raw
    lines = [
        "| what | posts | seconds | posts/s | vs raw engine |",
        "|---|---:|---:|---:|---:|",
        f"| raw engine (`{args.engine}`, calls of {CHUNK}, batch {BATCH}) | {len(posts)} | "
        f"{len(posts) / raw:.1f} | {raw:.1f} | 100% |",
        f"| `givetake score` (its own figure: read, score, write) | {read} | {seconds:.1f} | {rate:.1f} | "
        f"{ratio:.0%} |",
        f"| `givetake score` end to end (with start-up and model load) | {read} | {wall:.1f} | {read / wall:.1f} | "
        f"{read / wall / raw:.0%} |",
    ]
    body = (
        f"`python bench/batch.py --model {args.model} --engine {args.engine}`: a JSONL file of {len(posts)} real "
        f"TWCS and TweetEval posts ({scored} scored), `givetake score` with its default chunk ({CHUNK}) and "
        f"batch ({BATCH}). Baseline: {RAW_ENGINE}, in calls of {CHUNK} posts like the command's chunks. "
        f"Peak resident memory of the `givetake score` process: {peak_mb:.0f} MB. Machine: {machine()}. "
        f"Ran in {time.time() - started:.0f} s.\n\n"
        + "\n".join(lines)
        + f"\n\nTarget: offline scoring >= {TARGET_RATIO:.0%} of the raw engine: {met(ratio >= TARGET_RATIO)} "
        f"({ratio:.0%})."
    )
    append_results(f"Offline scoring ({args.engine})", body, write=not args.no_append)


if __name__ == "__main__":
    main()
