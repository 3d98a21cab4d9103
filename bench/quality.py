"""Quality benchmark: the default fine-tuned model vs the TF-IDF baseline on real posts.

Trains both on the shipped corpus (labels/seed) with default settings, evaluates both on the
gold dev set (real posts labelled by the guide, ``../shared/data/gold/dev.jsonl``), prints a
side-by-side table and appends it to ``bench/RESULTS.md``.

    python bench/quality.py [--gold PATH] [--model models/<run>]   # --model reuses a trained run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# This folder comes first on the path of `python bench/quality.py`; bench/http.py would shadow the stdlib's http.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from givetake.core.registry import read_metrics  # noqa: E402
from givetake.core.resources import available_cores  # noqa: E402
from givetake.training.baseline import run_baseline  # noqa: E402
from givetake.training.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from givetake.training.evaluate import evaluate_model  # noqa: E402
from givetake.training.train import train  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"


def side_by_side(names: list[str], model: dict, base: dict) -> str:
    """Markdown table of per-label F1 and the averages for the two systems."""
    lines = ["| label | fine-tuned F1 | baseline F1 | support |", "|---|---:|---:|---:|"]
    for n in names:
        lines.append(
            f"| `{n}` | {model['per_label'][n]['f1']:.3f} | {base['per_label'][n]['f1']:.3f} | "
            f"{model['per_label'][n]['support']} |"
        )
    for key, label in (
        ("macro_f1", "**macro-F1**"),
        ("micro_f1", "micro-F1"),
        ("exact_match", "exact match"),
        ("accuracy_on_none", "accuracy on no-label posts"),
    ):
        lines.append(f"| {label} | {model[key]:.3f} | {base[key]:.3f} | |")
    return "\n".join(lines)


def main() -> None:
    """Train (or reuse) the default model and the baseline, compare them on the gold dev set."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", default=str(ROOT.parent / "shared" / "data" / "gold" / "dev.jsonl"))
    parser.add_argument("--model", help="reuse this trained run instead of training a new one")
    parser.add_argument("--output-dir", default=str(ROOT / "models"))
    args = parser.parse_args()
    gold = Path(args.gold)
    if not gold.is_file():
        sys.exit(f"skipped: gold dev set {gold} not found (it lives in ../shared, beside the project)")

    started = time.time()
    run_dir = (
        Path(args.model) if args.model else train(ModelConfig(), DataConfig(), TrainConfig(output_dir=args.output_dir))
    )
    train_minutes = read_metrics(run_dir).get("training", {}).get("seconds", time.time() - started) / 60
    _, model_m = evaluate_model(run_dir, [gold], name="gold_dev")
    metrics = read_metrics(run_dir)

    base_dir, base_metrics = run_baseline(DataConfig(), TrainConfig(output_dir=args.output_dir), [str(gold)])
    base_m = base_metrics["evaluations"][gold.name]

    table = side_by_side(list(model_m["per_label"]), model_m, base_m)
    gain = model_m["macro_f1"] - base_m["macro_f1"]
    verdict = (
        f"Targets: fine-tuned macro-F1 >= 0.75: {'met' if model_m['macro_f1'] >= 0.75 else 'NOT met'} "
        f"({model_m['macro_f1']:.3f}); >= baseline + 0.05: {'met' if gain >= 0.05 else 'NOT met'} "
        f"(+{gain:.3f})."
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## Quality on real posts ({stamp})\n\n"
        f"`python bench/quality.py`: trained on the shipped corpus `labels/seed` "
        f"({metrics['data']['train']['rows']} train + {metrics['data']['validation']['rows']} validation rows), "
        f"scored on `{gold.name}` ({model_m['rows']} real posts). Machine: {available_cores()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}. "
        f"Fine-tuned run `{run_dir.name}` trained in {train_minutes:.1f} min; baseline run `{base_dir.name}`.\n\n"
        f"{table}\n\n{verdict}\n"
    )
    print(section)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is appended by the benchmark named in it.\n")
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(section)
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
