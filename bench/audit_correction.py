"""Does the audit's correction bring counted shares closer to the truth? Checked on the real gold dev set.

Every source of ``../shared/data/gold/dev.jsonl`` (real posts labelled by the guide) is audited as if
it were one account, with ``givetake audit``'s arithmetic (``serving/audit.py``), and its shares are
compared with the labelled shares:

- raw: the share of posts the model flags;
- corrected: the count plus the label's count bias on real posts, measured on the OTHER sources
  (leave one source out: the audited posts never measure their own correction), with its 95%
  prediction interval;
- adjusted classify-and-count with the validation split's TPR/FPR, the audit's first design, for
  the record;
- a labelled sample of the account's own posts (``givetake evaluate``): half of the source's posts
  (random, 100 times) are labelled, the other half is audited, corrected with the other sources'
  reference updated by that sample, against the raw count of the same half.

The tables go to ``bench/RESULTS.md``. ``--write-reference`` also measures the count bias on every
source and writes it to ``src/givetake/core/count_bias.json``, the reference the product ships
(numbers only, no posts), for the model given (the default recipe's).

    python bench/audit_correction.py [--gold PATH] [--model givetake:latest] [--no-write] [--write-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the stdlib's http on `python bench/audit_correction.py`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from givetake.core.count_bias import feed_bias, measure_count_bias  # noqa: E402
from givetake.core.error_rates import VALIDATION, load_error_rates  # noqa: E402
from givetake.core.predictor import Predictor  # noqa: E402
from givetake.core.resources import available_cores  # noqa: E402
from givetake.serving.audit import corrected_share, interval, share_draws  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
GOLD = ROOT.parent / "shared" / "data" / "gold" / "dev.jsonl"
REFERENCE = ROOT / "src" / "givetake" / "core" / "count_bias.json"
SPLITS = 100


def acc(q: float, tpr: float, fpr: float) -> float:
    """Adjusted classify-and-count (the first design), clipped; the count when TPR - FPR < 0.1."""
    return float(np.clip((q - fpr) / (tpr - fpr), 0, 1)) if tpr - fpr >= 0.1 else q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", type=Path, default=GOLD)
    ap.add_argument("--model", default="givetake:latest")
    ap.add_argument("--no-write", action="store_true", help="print the tables, leave bench/RESULTS.md alone")
    ap.add_argument("--write-reference", action="store_true", help=f"write the count-bias reference to {REFERENCE}")
    args = ap.parse_args()
    if not args.gold.is_file():
        sys.exit(f"skipped: {args.gold} not found (the gold set lives in ../shared, beside the project)")
    load = os.getloadavg()[0]
    rows = [json.loads(line) for line in args.gold.read_text(encoding="utf-8").splitlines() if line.strip()]
    predictor = Predictor(args.model)
    labels = predictor.labels
    validation = load_error_rates(predictor.model_dir, labels, VALIDATION)
    preds = predictor.predict([r["text"] for r in rows])
    flagged = np.array([[int(n in p["labels"]) for n in labels] for p in preds], dtype=np.int8)
    truth = np.array([[int(n in r["labels"]) for n in labels] for r in rows], dtype=np.int8)
    source = np.array([r["source"] for r in rows])
    names = sorted(set(source.tolist()), key=lambda s: (-(source == s).sum(), s))
    rng = np.random.default_rng(0)

    detail = [
        "| source | posts | label | labelled | raw count | corrected | 95% interval | covers | closer |",
        "|---|---:|---|---:|---:|---:|---:|:---:|:---:|",
    ]
    per_source, cells, own_cells = [], [], []
    for name in names:
        here = np.flatnonzero(source == name)
        others = source != name
        reference = measure_count_bias(truth[others], flagged[others], source[others], labels, "other sources")
        errs: dict[str, list[float]] = {k: [] for k in ("raw", "cor", "acc", "own_raw", "own")}
        for j, label in enumerate(labels):
            true, count, n = float(truth[here, j].mean()), int(flagged[here, j].sum()), len(here)
            bias = feed_bias(reference.labels[label], None)
            share = corrected_share(count, n, bias)
            low, high = interval(share_draws(count, n, bias, rng))
            e = validation.labels[label]
            raw_err, cor_err = abs(count / n - true), abs(share - true)
            covered = low - 1e-9 <= true <= high + 1e-9
            errs["raw"].append(raw_err)
            errs["cor"].append(cor_err)
            errs["acc"].append(abs(acc(count / n, e.tpr, e.fpr) - true))
            cells.append((raw_err, cor_err, covered))
            closer = "=" if abs(raw_err - cor_err) < 0.0005 else ("yes" if cor_err < raw_err else "no")
            detail.append(
                f"| {name} | {n} | {label} | {true:.1%} | {count / n:.1%} | {share:.1%} | "
                f"{low:.1%}-{high:.1%} | {'yes' if covered else 'no'} | {closer} |"
            )
            # A labelled half of this source's own posts refines the other sources' reference.
            for _ in range(SPLITS):
                order = rng.permutation(here)
                sample, audited = order[: n // 2], order[n // 2 :]
                ts, ps = truth[sample, j], flagged[sample, j]
                fp, fn = int(((ts == 0) & (ps == 1)).sum()), int(((ts == 1) & (ps == 0)).sum())
                own = feed_bias(reference.labels[label], (fp, fn, len(sample)))
                t_half, c_half = float(truth[audited, j].mean()), int(flagged[audited, j].sum())
                s_half = corrected_share(c_half, len(audited), own)
                errs["own_raw"].append(abs(c_half / len(audited) - t_half))
                errs["own"].append(abs(s_half - t_half))
                lo, hi = interval(share_draws(c_half, len(audited), own, rng, draws=400))
                own_cells.append(lo - 1e-9 <= t_half <= hi + 1e-9)
        m = {k: float(np.mean(v)) for k, v in errs.items()}
        per_source.append((name, len(here), m))

    def mark(a: float, b: float) -> str:
        return "=" if abs(a - b) < 0.0005 else ("yes" if b < a else "no")

    raw_mae, cor_mae = float(np.mean([c[0] for c in cells])), float(np.mean([c[1] for c in cells]))
    own_raw_mae = float(np.mean([m["own_raw"] for _, _, m in per_source]))
    own_mae = float(np.mean([m["own"] for _, _, m in per_source]))
    overall = {k: float(np.mean([m[k] for _, n, m in per_source for _ in range(n)])) for k in per_source[0][2]}
    summary = [
        "| source | posts | raw count | corrected (reference from the other sources) | closer | "
        "classify-and-count, validation rates (first design) | half audited: raw count | "
        "half audited: corrected with a labelled half | closer |",
        "|---|---:|---:|---:|:---:|---:|---:|---:|:---:|",
        *(
            f"| {name} | {n} | {m['raw']:.1%} | {m['cor']:.1%} | {mark(m['raw'], m['cor'])} | {m['acc']:.1%} | "
            f"{m['own_raw']:.1%} | {m['own']:.1%} | {mark(m['own_raw'], m['own'])} |"
            for name, n, m in per_source
        ),
        f"| **all sources (mean over cells)** | {len(rows)} | **{raw_mae:.2%}** | **{cor_mae:.2%}** | "
        f"{mark(raw_mae, cor_mae)} | **{float(np.mean([m['acc'] for _, _, m in per_source])):.2%}** | "
        f"**{own_raw_mae:.2%}** | **{own_mae:.2%}** | {mark(own_raw_mae, own_mae)} |",
        f"| all sources, weighted by posts | {len(rows)} | {overall['raw']:.2%} | {overall['cor']:.2%} | "
        f"{mark(overall['raw'], overall['cor'])} | {overall['acc']:.2%} | {overall['own_raw']:.2%} | "
        f"{overall['own']:.2%} | {mark(overall['own_raw'], overall['own'])} |",
    ]
    closer_sources = sum(m["cor"] < m["raw"] - 0.0005 for _, _, m in per_source)
    farther_sources = sum(m["cor"] > m["raw"] + 0.0005 for _, _, m in per_source)
    closer_cells = sum(c[1] < c[0] - 0.0005 for c in cells)
    farther_cells = sum(c[1] > c[0] + 0.0005 for c in cells)
    coverage = float(np.mean([c[2] for c in cells]))
    own_coverage = float(np.mean(own_cells))

    if args.write_reference:
        reference = measure_count_bias(
            truth,
            flagged,
            source,
            labels,
            f"measured for the default recipe on {len(rows)} real posts labelled by the guide, "
            f"{len(names)} sources, model {args.model}",
        )
        REFERENCE.write_text(json.dumps(reference.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {REFERENCE}")

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            f"## Feed audit: does the correction get closer to the labelled share? ({now})",
            "",
            f"`python bench/audit_correction.py --model {args.model}`: each source of the gold dev set "
            f"({len(rows)} real posts, `{args.gold.name}`) audited as one account with `givetake audit`'s "
            "arithmetic. Corrected: the count plus the label's count bias on real posts (random-effects "
            "mean, `src/givetake/core/count_bias.py`), measured on the other nine sources only. Machine: "
            f"{available_cores()} cores, Python {platform.python_version()}, load average {load:.2f} at start.",
            "",
            f"Per source (mean absolute error over the five labels): the corrected share is closer to the labelled "
            f"share in {closer_sources} of {len(per_source)} sources, farther in {farther_sources}; over the "
            f"{len(cells)} source x label cells closer in {closer_cells}, farther in {farther_cells}; mean absolute "
            f"error {raw_mae:.2%} raw against {cor_mae:.2%} corrected. The 95% prediction interval covers the "
            f"labelled share in {coverage:.0%} of cells. With a labelled half of the account's own posts "
            f"({SPLITS} random halves per source): its interval covers the audited half's labelled share in "
            f"{own_coverage:.0%} of {len(own_cells)} draws.",
            "",
            *summary,
            "",
            "<details><summary>Every source and label (reference from the other sources)</summary>",
            "",
            *detail,
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
