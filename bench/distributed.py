"""Ray Data against single-process `givetake score`, on this machine, in the same run.

Writes real posts (TWCS and TweetEval from ``../shared``, repeated to reach the size, each row with
its own id) to a folder of JSONL files, then scores the folder twice per size, each as a child
process: ``givetake score DIR -o OUT`` (single process, one engine thread per core) and
``givetake score DIR -o OUT --engine ray --workers N`` (a local Ray with N scoring actors, one CPU
each). Reports posts/s end to end (start-up, model load, Ray start, reading, scoring, writing), the
command's own figure, the peak resident memory of the whole job (the process and all its children,
Ray's raylet, GCS and workers included) and the Ray/single ratio. Two sizes show whether memory
stays flat in the input size. Appends the table to ``bench/RESULTS.md``.

    python bench/distributed.py [--model givetake:latest] [--sizes 50000,200000] [--files 4] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/<name>.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.common import append_results, bench_parser, machine, met, real_posts, run_measured  # noqa: E402

TARGET_RATIO = 0.85
_SUMMARY = re.compile(r"rows read: (\d+)\s+scored: (\d+)\s+errors: (\d+).*? in ([0-9.]+) s \((\d+) posts/s\)", re.S)


def write_inputs(folder: Path, posts: list[str], size: int, files: int) -> None:
    """``size`` rows (the posts repeated) split over ``files`` JSONL files."""
    folder.mkdir(parents=True)
    per_file = -(-size // files)
    for k in range(files):
        with (folder / f"part-{k:03d}.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(k * per_file, min(size, (k + 1) * per_file)):
                fh.write(json.dumps({"id": i, "text": posts[i % len(posts)]}, ensure_ascii=False) + "\n")


def run(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``; its summary figures, wall seconds and the peak RSS (MB) of its process tree."""
    stdout, wall, peak = run_measured(cmd, {"RAY_USAGE_STATS_ENABLED": "0"}, timeout=3600, pss=True, interval=0.5)
    match = _SUMMARY.search(stdout)
    if not match:
        sys.exit(f"error: no summary line from {' '.join(cmd)}:\n{stdout[-2000:]}")
    read, seconds = int(match[1]), float(match[4])
    print(f"  {read} posts in {wall:.1f} s wall ({read / wall:.0f} posts/s), peak PSS {peak:.0f} MB", flush=True)
    return {"read": read, "seconds": seconds, "wall": wall, "peak_mb": peak}


def main() -> None:
    """Single process, then Ray, per size; report rates, ratio and memory."""
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", default="50000,200000", help="Input sizes in posts, comma-separated.")
    parser.add_argument("--files", type=int, default=4, help="JSONL files the input is split into.")
    parser.add_argument("--workers", type=int, default=2, help="Ray scoring actors.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    posts = real_posts(args.posts, raw=Path(args.raw))
    started = time.time()
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="givetake-dist-") as tmp:
        for size in sizes:
            src = Path(tmp) / f"in-{size}"
            write_inputs(src, posts, size, args.files)
            base = [sys.executable, "-m", "givetake.cli", "score", str(src), "--model", args.model]
            print(f"{size} posts, single process", flush=True)
            single = run([*base, "-o", str(Path(tmp) / f"single-{size}")])
            shutil.rmtree(Path(tmp) / f"single-{size}")
            print(f"{size} posts, Ray ({args.workers} actors)", flush=True)
            on_ray = run(
                [*base, "-o", str(Path(tmp) / f"ray-{size}"), "--engine", "ray", "--workers", str(args.workers)]
            )
            shutil.rmtree(Path(tmp) / f"ray-{size}")
            shutil.rmtree(src)
            rows.append((size, single, on_ray))
    load_end = os.getloadavg()

    lines = [
        "| posts | runner | wall s | posts/s end to end | own figure posts/s | peak memory of the job (PSS) MB "
        "| Ray / single |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for size, single, on_ray in rows:
        ratio = (on_ray["read"] / on_ray["wall"]) / (single["read"] / single["wall"])
        ratios.append(ratio)
        for name, r, rel in (("single process", single, ""), (f"Ray, {args.workers} actors", on_ray, f"{ratio:.2f}x")):
            lines.append(
                f"| {size} | {name} | {r['wall']:.1f} | {r['read'] / r['wall']:.1f} | "
                f"{r['read'] / r['seconds']:.1f} | {r['peak_mb']:.0f} | {rel} |"
            )
    mem = [on_ray["peak_mb"] for _, _, on_ray in rows]
    flat = len(rows) < 2 or mem[-1] <= mem[0] * 1.25
    body = (
        f"`python bench/distributed.py --model {args.model} --sizes {args.sizes} --files {args.files} "
        f"--workers {args.workers}`: {len(posts)} distinct real TWCS and TweetEval posts repeated to each size, "
        f"in {args.files} JSONL files; each runner scores the folder as a child process, single process "
        f"first. End to end = the child's wall time (interpreter start, model load, Ray start, read, score, "
        f"write); own figure = the time in the command's summary line (for Ray it includes starting Ray). "
        f"Peak memory: the proportional set size (PSS) of the child and all its children (Ray's GCS, raylet, "
        f"workers), summed, sampled every 0.5 s. Machine: {machine().split(', load average')[0]}; "
        f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at the end (the machine is shared "
        f"with other jobs, so both runners met the same but varying contention). "
        f"Ran in {time.time() - started:.0f} s.\n\n"
        + "\n".join(lines)
        + f"\n\nTarget: Ray >= {TARGET_RATIO}x single process on one machine: "
        f"{met(min(ratios) >= TARGET_RATIO)} ({', '.join(f'{r:.2f}x' for r in ratios)}); Ray's peak memory "
        f"flat in the input size (within 25% from the smallest to the largest size): {met(flat)} "
        f"({' -> '.join(f'{m:.0f} MB' for m in mem)})."
    )
    append_results("Distributed scoring: Ray Data vs single process", body, write=not args.no_append)


if __name__ == "__main__":
    main()
