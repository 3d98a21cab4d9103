"""A team's own labels: 5-fold cross-validation over gold dev with ``givetake train --real``.

Issue #18, item 5. A team that brings labelled posts of its own feed should get more from them
than one more file mixed into the written corpus. ``--real`` weights them in the loss and lets a
held-out part of them pick the epoch and tune the thresholds. This benchmark measures that the
way a team would meet it: gold dev (real posts labelled by the guide) is cut into 5 folds,
stratified by label set; for each fold the default recipe is trained on the shipped corpus plus
the other 4 folds given as ``--real``, and the fold is scored. Every gold post is scored once, by
a model that never saw it.

``--recipe continue`` measures the cheaper path instead: start from the ``--baseline`` model
(``--init-from``) and train on the 4 folds alone (``--data``), their own 20% validation split
picking the epoch and the thresholds; a few minutes a fold instead of a full training run.

In the same run, without training, the existing model given as ``--baseline`` (the default
model) is scored on the same folds twice: with its own thresholds, and with thresholds tuned
on the other 4 folds. That separates what the thresholds buy from what the training buys.

    python bench/team_cv.py --baseline givetake:latest           # about 16 minutes a fold on 2 cores
    python bench/team_cv.py --baseline givetake:latest --recipe continue --epochs 4
    python bench/team_cv.py --baseline givetake:latest --folds 5 --only 1   # one fold, for a quick look
    python bench/team_cv.py --baseline MPNET_RUN --base-model all-mpnet-base-v2 --epochs 3   # the quality choice

It prints the section and appends it to ``bench/RESULTS.md`` (``--no-append`` only prints).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.common import append_results, machine  # noqa: E402
from givetake.core.predictor import Predictor  # noqa: E402
from givetake.core.thresholds import apply_thresholds, tune_thresholds  # noqa: E402
from givetake.labels.schema import load_schema  # noqa: E402
from givetake.training.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from givetake.training.data import LabelledPosts, label_strata, load_posts  # noqa: E402
from givetake.training.evaluate import compute_metrics  # noqa: E402
from givetake.training.importers import write_jsonl  # noqa: E402
from givetake.training.train import train  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TARGET = 0.85


def folds(posts: LabelledPosts, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint index arrays covering every row, stratified by label set."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(posts)), label_strata(posts))]


def write_rows(posts: LabelledPosts, idx: np.ndarray, path: Path) -> None:
    """The rows at ``idx`` as JSONL in the training format (kept in a temporary folder only)."""
    write_jsonl(
        [{"text": posts.texts[i], "labels": [n for n, v in zip(posts.label_names, posts.y[i]) if v]} for i in idx],
        path,
    )


def summary(name: str, y: np.ndarray, pred: np.ndarray, per_fold: list[float], labels: list[str]) -> dict[str, Any]:
    """Pooled metrics over every scored post, with the folds' macro-F1 spread."""
    m = compute_metrics(y, pred, labels)
    return {
        "name": name,
        "macro_f1": m["macro_f1"],
        "per_label": {n: m["per_label"][n]["f1"] for n in labels},
        "fold_mean": float(np.mean(per_fold)),
        "fold_sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
    }


def main() -> None:
    """Run the folds, print the table, append it to RESULTS."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", default=str(SHARED / "gold" / "dev.jsonl"))
    parser.add_argument("--baseline", help="an existing model (store tag or run directory) scored on the same folds")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="*", help="run only these folds (1-based), for a quick look")
    parser.add_argument("--seed", type=int, default=42, help="seed of the folds and of every training run")
    parser.add_argument("--real-weight", type=float, default=TrainConfig.real_weight)
    parser.add_argument("--real-holdout", type=float, default=DataConfig.real_holdout)
    parser.add_argument(
        "--recipe",
        choices=["real", "continue"],
        default="real",
        help="real: corpus + the folds as --real; continue: --init-from the baseline, the folds as --data",
    )
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="training epochs of each fold's run")
    parser.add_argument(
        "--base-model", default=ModelConfig.base_model, help="base model of each fold's run (--recipe real)"
    )
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args()
    gold = Path(args.gold)
    if args.recipe == "continue" and not args.baseline:
        sys.exit("error: --recipe continue starts from the --baseline model; give one")
    if args.recipe == "continue" and args.base_model != ModelConfig.base_model:
        sys.exit("error: --base-model is for --recipe real; --recipe continue starts from the --baseline model")
    if not gold.exists():
        sys.exit(f"skipped: {gold} not found (gold dev lives in ../shared beside the project; a clone has none)")

    started, where = time.time(), machine()
    base = Predictor(args.baseline) if args.baseline else None
    schema = base.schema if base else load_schema()
    posts = load_posts([gold], schema)
    names = schema.names
    parts = folds(posts, args.folds, args.seed)
    chosen = [k for k in range(args.folds) if not args.only or k + 1 in args.only]
    base_probs = base.predict_proba(posts.texts)[0] if base else None

    rows: dict[str, dict[str, Any]] = {"own": {}, "tuned": {}, "real": {}}
    preds: dict[str, list[np.ndarray]] = {key: [] for key in rows}
    truth, fold_f1 = [], {key: [] for key in rows}
    minutes = []
    with tempfile.TemporaryDirectory(prefix="givetake-cv-") as tmp:
        for k in chosen:
            test = parts[k]
            rest = np.concatenate([parts[j] for j in range(args.folds) if j != k])
            y = posts.y[test]
            truth.append(y)
            if base is not None and base_probs is not None:
                own = apply_thresholds(base_probs[test], base.thresholds, names)
                cut = tune_thresholds(posts.y[rest], base_probs[rest], names)
                tuned = apply_thresholds(base_probs[test], cut, names)
                for key, pred in (("own", own), ("tuned", tuned)):
                    preds[key].append(pred)
                    fold_f1[key].append(compute_metrics(y, pred, names)["macro_f1"])
            real_file = Path(tmp) / f"fold{k + 1}-train.jsonl"
            write_rows(posts, rest, real_file)
            t0 = time.time()
            places = {"output_dir": str(Path(tmp) / "models"), "run_id": f"fold{k + 1}", "register": False}
            if args.recipe == "real":
                configs = (
                    ModelConfig(base_model=args.base_model),
                    DataConfig(real=[str(real_file)], real_holdout=args.real_holdout),
                    TrainConfig(seed=args.seed, epochs=args.epochs, real_weight=args.real_weight, **places),
                )
            else:
                configs = (
                    ModelConfig(init_from=args.baseline),
                    DataConfig(data=[str(real_file)]),
                    TrainConfig(seed=args.seed, epochs=args.epochs, **places),
                )
            run_dir = train(*configs, progress=False)
            minutes.append((time.time() - t0) / 60)
            model = Predictor(run_dir)
            probs, _ = model.predict_proba([posts.texts[i] for i in test])
            pred = apply_thresholds(probs, model.thresholds, names)
            preds["real"].append(pred)
            fold_f1["real"].append(compute_metrics(y, pred, names)["macro_f1"])
            print(f"fold {k + 1}: macro-F1 {fold_f1['real'][-1]:.3f} ({minutes[-1]:.1f} min)", flush=True)
            del model

    y_all = np.concatenate(truth)
    results = []
    what = {
        "own": f"`{args.baseline}`, its own thresholds (tuned on the written validation split)",
        "tuned": f"`{args.baseline}`, thresholds tuned on the other {args.folds - 1} folds",
        "real": f"corpus + the other {args.folds - 1} folds as `--real` (weight {args.real_weight:g}, "
        f"{args.real_holdout:.0%} of them held out for the epoch and thresholds), {args.epochs} epochs at most"
        + ("" if args.base_model == ModelConfig.base_model else f", base model `{args.base_model}`")
        if args.recipe == "real"
        else f"`--init-from` the baseline, the other {args.folds - 1} folds as `--data` (20% of them for the "
        f"epoch and thresholds), {args.epochs} epochs at most",
    }
    for key in ("own", "tuned", "real"):
        if preds[key]:
            results.append(summary(what[key], y_all, np.concatenate(preds[key]), fold_f1[key], names))

    head = "| model | macro-F1 (pooled) | folds mean ± sd | " + " | ".join(f"`{n}`" for n in names) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(names)]
    for r in results:
        cells = " | ".join(f"{r['per_label'][n]:.3f}" for n in names)
        lines.append(f"| {r['name']} | {r['macro_f1']:.3f} | {r['fold_mean']:.3f} ± {r['fold_sd']:.3f} | {cells} |")
    if fold_f1["own"]:
        pairs = ", ".join(
            f"fold {k + 1} {a:.3f} → {b:.3f}" for k, a, b in zip(chosen, fold_f1["own"], fold_f1["real"], strict=True)
        )
        gains = sum(b > a for a, b in zip(fold_f1["own"], fold_f1["real"], strict=True))
        lines += [
            "",
            f"Per fold, the baseline with its own thresholds → trained: {pairs} (gains in {gains} of {len(chosen)}).",
        ]
    best = results[-1]["macro_f1"]
    body = (
        f"`python bench/team_cv.py {' '.join(sys.argv[1:])}` "
        f"with {args.folds} folds stratified by label set "
        f"(seed {args.seed}), folds run: {', '.join(str(k + 1) for k in chosen)}; {len(y_all)} gold dev posts "
        f"scored, each by a model that never saw it. Training: {np.mean(minutes):.1f} min a fold. {where}.\n\n"
        + "\n".join(lines)
        + f"\n\nTarget (issue #18, a team's own labels): macro-F1 >= {TARGET:.2f}: "
        + ("met" if best >= TARGET else "NOT met")
        + f" ({best:.3f}). Total {(time.time() - started) / 60:.0f} min.\n"
    )
    append_results("A team's own labels: cross-validation over gold dev (bench/team_cv.py)", body, not args.no_append)


if __name__ == "__main__":
    main()
