"""Corpus statistics: counts per label and platform, and the near-duplicate check.

``python -m labels.stats`` prints the table; ``--write labels/README.md`` refreshes the
table between the ``<!-- counts -->`` markers of that file (``make labels-table``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from givetake.labels.schema import SEED_DIR, load_schema

START, END = "<!-- counts:start -->", "<!-- counts:end -->"
_WORD = re.compile(r"\w+")


def corpus_rows(seed_dir: str | Path = SEED_DIR) -> list[dict[str, Any]]:
    """Every row of every ``*.jsonl`` file in ``seed_dir``, with its file name as ``file``."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(seed_dir).glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            rows.extend({**json.loads(line), "file": path.name} for line in fh if line.strip())
    return rows


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def near_duplicate_pairs(texts: list[str], threshold: float = 0.6) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity) whose word-trigram Jaccard similarity exceeds ``threshold``.

    An inverted index over trigrams finds candidate pairs, so the check is fast on thousands
    of posts; only pairs sharing a trigram can be similar at all.
    """
    grams = [_trigrams(t) for t in texts]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, g in enumerate(grams):
        for gram in g:
            index[gram].append(i)
    out = []
    for i, g in enumerate(grams):
        if not g:
            continue
        shared = Counter(j for gram in g for j in index[gram] if j > i)
        for j, inter in shared.items():
            sim = inter / len(g | grams[j])
            if sim > threshold:
                out.append((i, j, round(sim, 3)))
    return out


def render_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: positives per label (rows) and platform (columns), with totals."""
    names = load_schema().names
    platforms = sorted({r["platform"] for r in rows})
    head = "| label | " + " | ".join(platforms) + " | all |"
    lines = [head, "|---|" + "---:|" * (len(platforms) + 1)]
    for name in [*names, "(no label)", "(2+ labels)", "(posts)"]:

        def hit(r: dict[str, Any], name: str = name) -> bool:
            if name == "(no label)":
                return not r["labels"]
            if name == "(2+ labels)":
                return len(r["labels"]) >= 2
            return name == "(posts)" or name in r["labels"]

        per = Counter(r["platform"] for r in rows if hit(r))
        label = f"`{name}`" if name in names else name
        lines.append(f"| {label} | " + " | ".join(str(per[p]) for p in platforms) + f" | {sum(per.values())} |")
    return "\n".join(lines)


def main() -> None:
    """Print the counts table, or write it into a README between the markers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed-dir", default=str(SEED_DIR))
    parser.add_argument("--write", help="README to update between the counts markers")
    args = parser.parse_args()
    rows = corpus_rows(args.seed_dir)
    table = render_table(rows)
    pairs = near_duplicate_pairs([r["text"] for r in rows])
    n = len(rows)
    summary = (
        f"{n} posts in {len({r['file'] for r in rows})} files; near-duplicate pairs (word-trigram "
        f"Jaccard > 0.6): {len(pairs)} of {n * (n - 1) // 2:,} pairs."
    )
    if not args.write:
        print(table + "\n\n" + summary)
        return
    path = Path(args.write)
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{path}: add the markers {START} and {END} where the table goes")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    path.write_text(f"{before}{START}\n{table}\n\n{summary}\n{END}{after}", encoding="utf-8")
    print(f"updated {path}")


if __name__ == "__main__":
    main()
