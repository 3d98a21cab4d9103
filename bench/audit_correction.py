"""Does the audit's correction bring counted shares closer to the truth? Checked on the real gold dev set.

Every source of ``../shared/data/gold/dev.jsonl`` (real posts labelled by the guide) is audited as if
it were one account: for each label, the share the model counts (raw), the share after adjusted
classify-and-count with the model's error rates from its training run's validation split (never
from gold), and the labelled share. The table, and how often and by how much the correction is
closer, go to ``bench/RESULTS.md``.

    python bench/audit_correction.py [--gold PATH] [--model givetake:latest] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the stdlib's http on `python bench/audit_correction.py`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from givetake.core.error_rates import VALIDATION, ErrorRates, LabelErrors, confusion_counts, load_error_rates  # noqa: E402
from givetake.core.predictor import Predictor  # noqa: E402
from givetake.core.resources import available_cores  # noqa: E402
from givetake.serving.audit import buckets, correct_share, interval, label_shares  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
GOLD = ROOT.parent / "shared" / "data" / "gold" / "dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", type=Path, default=GOLD)
    ap.add_argument("--model", default="givetake:latest")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = ap.parse_args()
    if not args.gold.is_file():
        sys.exit(f"skipped: {args.gold} not found (the gold set lives in ../shared, beside the project)")
    load = os.getloadavg()[0]
    rows = [json.loads(line) for line in args.gold.read_text(encoding="utf-8").splitlines() if line.strip()]
    predictor = Predictor(args.model)
    labels = predictor.labels
    errors = load_error_rates(predictor.model_dir, labels, VALIDATION)
    sides = {s.name: s.side for s in predictor.schema.labels}
    preds = predictor.predict([r["text"] for r in rows])
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_source[r["source"]].append(i)
    predicted = np.array([[int(n in p["labels"]) for n in labels] for p in preds], dtype=np.int8)
    truth = np.array([[int(n in r["labels"]) for n in labels] for r in rows], dtype=np.int8)
    take = buckets(labels, sides)["take"].labels
    probs = np.array([[p["scores"][n] for n in labels] for p in preds])

    table = [
        "| source | posts | label | labelled | raw count | corrected | 95% interval | covers | closer |",
        "|---|---:|---|---:|---:|---:|---:|:---:|:---:|",
    ]
    cells = []  # (source, label, raw error, corrected error, covered)
    for source in sorted(by_source, key=lambda s: -len(by_source[s])):
        idx = by_source[source]
        shares, draws = label_shares(predicted[idx], labels, errors, np.random.default_rng(0))
        entries = [(n, shares[n], float(truth[idx, labels.index(n)].mean()), draws[n]) for n in labels]
        take_draws = np.minimum(sum(draws[n] for n in take), 1.0)
        low, high = interval(np.asarray(take_draws))
        take_entry = {
            "raw": min(sum(shares[n]["raw"] for n in take), 1.0),
            "share": min(sum(shares[n]["share"] for n in take), 1.0),
            "low": low,
            "high": high,
        }
        entries.append(
            ("take (pitch+ask)", take_entry, float(truth[idx][:, [labels.index(n) for n in take]].sum(1).mean()), None)
        )
        for name, s, true, _ in entries:
            raw_err, cor_err = abs(s["raw"] - true), abs(s["share"] - true)
            covered = s["low"] - 1e-9 <= true <= s["high"] + 1e-9
            closer = "=" if abs(raw_err - cor_err) < 0.0005 else ("yes" if cor_err < raw_err else "no")
            if name in labels:
                cells.append((source, name, raw_err, cor_err, covered))
            table.append(
                f"| {source} | {len(idx)} | {name} | {true:.1%} | {s['raw']:.1%} | {s['share']:.1%} | "
                f"{s['low']:.1%}-{s['high']:.1%} | {'yes' if covered else 'no'} | {closer} |"
            )
    raw_mae = float(np.mean([c[2] for c in cells]))
    cor_mae = float(np.mean([c[3] for c in cells]))
    closer = sum(c[3] < c[2] - 0.0005 for c in cells)
    farther = sum(c[3] > c[2] + 0.0005 for c in cells)
    coverage = float(np.mean([c[4] for c in cells]))
    # Two alternatives, for the choice of method: the mean score (probabilistic classify-and-count),
    # and the same correction with error rates measured on real labelled posts of the OTHER sources
    # (what `givetake evaluate` on a labelled sample of one's own posts gives, never this source's posts).
    # And a labelled sample of the account's own posts: half of the source's posts measure the rates,
    # the other half is audited (both ways round, fixed shuffle), against the raw count of the same half.
    alt: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in ("pcc", "real", "own", "own_raw")}
    rng = np.random.default_rng(0)
    for source, idx in by_source.items():
        order = rng.permutation(idx)
        halves = [order[: len(order) // 2], order[len(order) // 2 :]]
        for sample, audited in (halves, halves[::-1]):
            counts = confusion_counts(truth[sample], predicted[sample], labels)
            for j, n in enumerate(labels):
                e = LabelErrors(**counts[n])
                true = float(truth[audited, j].mean())
                q = float(predicted[audited, j].mean())
                alt["own_raw"][source].append(abs(q - true))
                alt["own"][source].append(abs((correct_share(q, e.tpr, e.fpr) if e.positives else q) - true))
        rest = [i for i in range(len(rows)) if i not in set(idx)]
        counts = confusion_counts(truth[rest], predicted[rest], labels)
        other = ErrorRates("other sources", "", {n: LabelErrors(**c) for n, c in counts.items()})
        for j, n in enumerate(labels):
            true = float(truth[idx, j].mean())
            alt["pcc"][source].append(abs(float(probs[idx, j].mean()) - true))
            e = other.labels[n]
            alt["real"][source].append(abs(correct_share(float(predicted[idx, j].mean()), e.tpr, e.fpr) - true))
    per_source = []
    for source in sorted(by_source, key=lambda s: -len(by_source[s])):
        mine = [c for c in cells if c[0] == source]
        r, k = float(np.mean([c[2] for c in mine])), float(np.mean([c[3] for c in mine]))
        pcc, real = float(np.mean(alt["pcc"][source])), float(np.mean(alt["real"][source]))
        own, own_raw = float(np.mean(alt["own"][source])), float(np.mean(alt["own_raw"][source]))
        per_source.append(
            f"| {source} | {len(by_source[source])} | {r:.1%} | {k:.1%} | {'yes' if k < r else 'no'} | "
            f"{pcc:.1%} | {real:.1%} | {own_raw:.1%} | {own:.1%} |"
        )
    pcc_mae = float(np.mean([v for vs in alt["pcc"].values() for v in vs]))
    real_mae = float(np.mean([v for vs in alt["real"].values() for v in vs]))
    own_mae = float(np.mean([v for vs in alt["own"].values() for v in vs]))
    own_raw_mae = float(np.mean([v for vs in alt["own_raw"].values() for v in vs]))
    summary = [
        "| source | posts | raw count | corrected (validation rates) | corrected closer | mean score (PCC) "
        "| corrected with real-post rates (other sources) | half audited: raw count | half audited: corrected "
        "with rates from the other half |",
        "|---|---:|---:|---:|:---:|---:|---:|---:|---:|",
        *per_source,
        f"| **all sources** | {len(rows)} | **{raw_mae:.1%}** | **{cor_mae:.1%}** | "
        f"{'yes' if cor_mae < raw_mae else 'no'} | **{pcc_mae:.1%}** | **{real_mae:.1%}** | "
        f"**{own_raw_mae:.1%}** | **{own_mae:.1%}** |",
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rates = ", ".join(f"{n} {e.tpr:.3f}/{e.fpr:.3f}" for n, e in errors.labels.items())
    text = "\n".join(
        [
            f"## Feed audit: does the correction get closer to the labelled share? ({now})",
            "",
            f"`python bench/audit_correction.py --model {args.model}`: each source of the gold dev set "
            f"({len(rows)} real posts, `{args.gold.name}`) audited as one account with `givetake audit`'s "
            "arithmetic (`serving/audit.py`). Raw count: the share of posts the model flags. Corrected: adjusted "
            "classify-and-count with the model's TPR/FPR from its training run's validation split "
            f"({errors.description}; per label TPR/FPR: {rates}), not from gold. Labelled: the gold labels' share. "
            f"Machine: {available_cores()} cores, Python {platform.python_version()}, "
            f"load average {load:.2f} at start.",
            "",
            f"Over {len(cells)} source x label cells: the corrected share is closer to the labelled share in "
            f"{closer}, farther in {farther}, equal in {len(cells) - closer - farther}; mean absolute error "
            f"{raw_mae:.2%} raw against {cor_mae:.2%} corrected. The 95% interval covers the labelled share in "
            f"{coverage:.0%} of cells (it accounts for the feed's size and the validation counts, not for the shift "
            "from the validation split to these sources).",
            "Mean absolute error of the share, over the five labels, per source (lower is closer to the labels):",
            "",
            *summary,
            "",
            "<details><summary>Every source and label</summary>",
            "",
            *table,
            "",
            "</details>",
            "",
        ]
    )
    print(text)
    if not args.no_write:
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
