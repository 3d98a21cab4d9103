"""Training-step speed: fp32 against bf16 autocast, in one run, on the shipped corpus.

Times what ``givetake train`` repeats 984 times in the default recipe: forward, class-balanced BCE,
backward and an AdamW step of the default base model on 32 corpus posts, tokenised and truncated as
training does, in length-grouped batches (the trainer's ``group_by_length``, so padding stays
short). fp32 and bf16 rounds alternate, ``--rounds`` each, so a neighbour's load falls on both;
the table gives each round and the ratio of the medians. It also says whether this CPU computes bf16
in hardware (``givetake.core.resources.native_bf16``), which decides ``--bf16``'s default.
Needs no ``../shared``; prints the section and appends it to ``bench/RESULTS.md``.

    python bench/train_step.py [--base-model all-mpnet-base-v2] [--batches 24] [--rounds 3] [--no-append]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/<name>.py`, this folder comes first on the import path, where bench/http.py
# would shadow the standard library's http package: import from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import append_results, machine  # noqa: E402
from givetake.core.resources import available_cores, native_bf16  # noqa: E402
from givetake.labels.schema import load_schema  # noqa: E402
from givetake.training.config import ModelConfig, TrainConfig  # noqa: E402
from givetake.training.data import load_posts  # noqa: E402
from givetake.training.train import build_model, pos_weights, tokenize  # noqa: E402


def length_grouped_batches(lengths: list[int], batch: int, n: int, seed: int) -> list[list[int]]:
    """``n`` batches of row indices, each of rows of similar length, drawn across all lengths."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
    return random.Random(seed).sample(groups, min(n, len(groups)))


def step_rate(model: Any, batches: list[dict[str, Any]], pos_weight: Any, bf16: bool) -> float:
    """Rows per second of forward, loss, backward and optimiser step over ``batches``."""
    import torch

    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    model.train()
    rows = 0
    started = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = loss_fn(logits.float(), batch["labels"])
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        rows += len(batch["labels"])
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default=None, help="as `givetake train --base-model`; default: the default")
    parser.add_argument("--batches", type=int, default=24, help="length-grouped batches per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per precision, alternating")
    parser.add_argument("--no-append", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()

    import torch
    from transformers import DataCollatorWithPadding
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()  # the base model's load report: its new head is expected

    model_cfg = ModelConfig(base_model=args.base_model) if args.base_model else ModelConfig()
    train_cfg = TrainConfig()
    torch.set_num_threads(available_cores())
    torch.manual_seed(train_cfg.seed)
    schema = load_schema()
    posts = load_posts([], schema)
    tokenizer, model = build_model(model_cfg, schema)
    ds = tokenize(posts, tokenizer, model_cfg.max_length, model_cfg.head)
    collate = DataCollatorWithPadding(tokenizer)
    weight = pos_weights(posts.y, train_cfg.pos_weight_cap, posts.known)
    pos_weight = torch.tensor(weight, dtype=torch.float32) if weight is not None else None
    batches = []
    for rows in length_grouped_batches(ds["length"], train_cfg.batch_size, args.batches, train_cfg.seed):
        batch = collate([{k: ds[i][k] for k in ("input_ids", "attention_mask")} for i in rows])
        labels = torch.tensor([ds[i]["labels"][: len(schema.names)] for i in rows], dtype=torch.float32)
        batch["labels"] = torch.nan_to_num(labels)  # a label not judged on a row counts as 0 here
        batches.append(batch)
    padded = statistics.mean(b["input_ids"].shape[1] for b in batches)
    step_rate(model, batches[:2], pos_weight, bf16=False)  # warm-up: allocator, thread pool, kernels
    step_rate(model, batches[:2], pos_weight, bf16=True)
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for name in rates:
            rates[name].append(step_rate(model, batches, pos_weight, bf16=name == "bf16"))
    fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    native = "yes" if native_bf16() else "no"
    lines = [
        f"`python bench/train_step.py {' '.join(sys.argv[1:])}`: base model "
        f"`{model_cfg.base_model}`, {len(batches)} length-grouped batches of {train_cfg.batch_size} corpus posts "
        f"(mean padded length {padded:.0f} tokens), forward + BCE + backward + AdamW step, rounds alternating. "
        f"Machine: {machine()}. Native bf16 (AVX-512 BF16 or AMX): **{native}**, so "
        f"`givetake train` uses bf16 autocast by default here: **{native}**.",
        "",
        "| precision | rows/s per round | median rows/s |",
        "|---|---|---:|",
    ]
    for name, values in rates.items():
        lines.append(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
    lines += ["", f"bf16 / fp32: **{bf16 / fp32:.2f}x**."]
    append_results(
        "Training step: fp32 against bf16 autocast (bench/train_step.py)", "\n".join(lines), not args.no_append
    )


if __name__ == "__main__":
    main()
