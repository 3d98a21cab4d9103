"""Raw engine speed: posts/s and latency at batch 1, 8 and 32 for torch, onnx and onnx-int8, in one run.

Each engine scores real posts (TWCS and TweetEval, ``../shared``) already in memory through
``Predictor.predict_proba``: no HTTP, no file I/O. Every call holds ``batch`` consecutive posts
(in their shuffled order, so a batch mixes short and long posts, as the server's do). The full
prediction is timed: normalisation, tokenizer, transformer half, lexical half, blend. A second
table splits the batch-32 time into those parts. Prints both and appends them to
``bench/RESULTS.md``.

    python bench/engine.py [--model givetake:latest] [--seconds 8] [--posts 20000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/<name>.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import time  # noqa: E402

from bench.common import (  # noqa: E402
    RAW_ENGINE,
    append_results,
    bench_parser,
    engine_rate,
    machine,
    met,
    real_posts,
)
from givetake.core.predictor import ENGINES, ModelLoadError, Predictor  # noqa: E402

BATCHES = (1, 8, 32)
TARGET_INT8_VS_TORCH = 1.8


def breakdown(predictor: Predictor, posts: list[str]) -> dict[str, float]:
    """Milliseconds per post of each part of a prediction, in batches of 32."""
    batches = [posts[i : i + 32] for i in range(0, len(posts) - 31, 32)]
    parts = {"tokenizer": 0.0, "transformer": 0.0, "lexical": 0.0}
    for batch in batches:
        t0 = time.perf_counter()
        ids, _ = predictor._encode(batch)
        t1 = time.perf_counter()
        predictor._transformer_proba(ids)
        t2 = time.perf_counter()
        if predictor.lexical is not None:
            predictor.lexical.predict_proba(batch)
        t3 = time.perf_counter()
        parts["tokenizer"] += t1 - t0
        parts["transformer"] += t2 - t1
        parts["lexical"] += t3 - t2
    n = 32 * len(batches)
    return {k: v / n * 1000 for k, v in parts.items()}


def main() -> None:
    """Measure every engine at every batch size and report the int8 vs torch ratio."""
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="time per engine and batch size")
    args = parser.parse_args()
    posts = real_posts(args.posts, raw=Path(args.raw))
    started = time.time()
    rows: dict[tuple[str, int], dict] = {}
    parts: dict[str, dict[str, float]] = {}
    for engine in ENGINES:
        try:
            predictor = Predictor(args.model, engine=engine)
        except ModelLoadError as exc:
            raise SystemExit(f"error: {exc}") from None
        for batch in BATCHES:
            predictor.batch_size = batch
            rows[engine, batch] = engine_rate(predictor.predict_proba, posts, batch, args.seconds)
            print(f"{engine:<10} batch {batch:>2}: {rows[engine, batch]['posts_per_s']:7.1f} posts/s", flush=True)
        predictor.batch_size = 32
        parts[engine] = breakdown(predictor, posts[:512])
        del predictor

    torch32 = rows["torch", 32]["posts_per_s"]
    lines = [
        "| engine | batch | posts/s | p50 ms per call | p95 ms per call | posts/s vs torch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (engine, batch), r in rows.items():
        ratio = r["posts_per_s"] / rows["torch", batch]["posts_per_s"]
        lines.append(
            f"| `{engine}` | {batch} | {r['posts_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {ratio:.2f}x |"
        )
    split = [
        "| engine | tokenizer ms/post | transformer ms/post | lexical half ms/post |",
        "|---|---:|---:|---:|",
    ]
    for engine, p in parts.items():
        split.append(f"| `{engine}` | {p['tokenizer']:.3f} | {p['transformer']:.3f} | {p['lexical']:.3f} |")
    int8_ratio = rows["onnx-int8", 32]["posts_per_s"] / torch32
    body = (
        f"`python bench/engine.py --model {args.model}`: {RAW_ENGINE}; each call scores `batch` consecutive "
        f"posts of {len(posts)} real TWCS and TweetEval posts (shuffled, so batches mix lengths), about "
        f"{args.seconds:.0f} s per row after one warm-up call. Machine: {machine()}. "
        f"Ran in {time.time() - started:.0f} s.\n\n" + "\n".join(lines) + "\n\n"
        "Where the time goes at batch 32 (same posts, first 512):\n\n" + "\n".join(split) + "\n\n"
        f"Target: onnx-int8 >= {TARGET_INT8_VS_TORCH}x torch at batch 32: {met(int8_ratio >= TARGET_INT8_VS_TORCH)} "
        f"({int8_ratio:.2f}x)."
    )
    append_results("Engine speed", body, write=not args.no_append)


if __name__ == "__main__":
    main()
