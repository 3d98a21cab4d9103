"""The model card's lead: how well the model does on real posts, and why validation reads higher.

The validation split is held out from the shipped corpus, which the same people wrote as the
training rows, so its figure overstates quality on real feeds (bench/RESULTS.md, "Quality on real
posts"). The card therefore leads with a figure on real posts: the run's own ``givetake evaluate``
results when it has any (real labelled posts a team brought), else the figure ``bench/quality.py``
measured for the default recipe on the gold dev set, recorded in ``quality_reference.json`` beside
this module and named as such.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from givetake.training.config import LEARNING_RATE, DataConfig, ModelConfig, TrainConfig

REFERENCE_FILE = Path(__file__).with_name("quality_reference.json")
# Options that change where a run is written or how fast, not what it learns.
# bf16 is resolved per machine (core.resources.native_bf16); it moved gold dev by no more than seeds do.
_NOT_RECIPE = {"output_dir", "run_id", "register", "threads", "bf16"}

WHY_VALIDATION_IS_HIGHER = (
    "The validation figure below is higher because its posts are held out from the same hand-written "
    "corpus as the training rows: same authors, same phrasing habits, clean text. Real feeds bring "
    "typos, hashtag blocks, links, thread fragments and speakers the corpus does not cover, so read the "
    "real-post figure as the expected quality and the validation figure as a check that training worked."
)


def read_reference(path: Path = REFERENCE_FILE) -> dict[str, Any] | None:
    """The figures ``bench/quality.py --write-reference`` recorded, or None when absent or unreadable."""
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ref if isinstance(ref, dict) and isinstance(ref.get("gold"), dict) else None


def recipe_differences(config: dict[str, Any]) -> list[str]:
    """The options of a run's ``run_config.json`` that differ from the default recipe.

    The default recipe is ``givetake train`` with no options: the shipped corpus, the default base
    model and settings. Options that only change where the run goes or how many threads it uses
    do not count. An empty ``config`` (unknown) counts as one difference.
    """
    if not config:
        return ["run_config.json missing"]
    out = []
    for section, default in (("model", ModelConfig()), ("data", DataConfig()), ("train", TrainConfig())):
        given = config.get(section) or {}
        for key, value in dataclasses.asdict(default).items():
            mine = given.get(key)
            if key == "learning_rate":  # None is resolved when the run starts
                value, mine = value or LEARNING_RATE, mine or LEARNING_RATE
            if key not in _NOT_RECIPE and key in given and mine != value:
                out.append(f"{key}={mine!r}")
    return out


def quality_lead(
    metrics: dict[str, Any], config: dict[str, Any] | None = None, reference: dict[str, Any] | None = None
) -> list[str]:
    """Markdown lines that open the model card: real-post quality first, then why validation is higher.

    ``metrics`` is the run's ``metrics.json``, ``config`` its ``run_config.json`` (to tell whether
    it follows the default recipe); ``reference`` defaults to :func:`read_reference`.
    """
    lines = ["## Quality on real posts", ""]
    evaluations = metrics.get("evaluations") or {}
    validation = (metrics.get("validation") or {}).get("macro_f1")
    if evaluations:
        for name, m in evaluations.items():
            worst = min(m["per_label"].items(), key=lambda kv: kv[1]["f1"]) if m.get("per_label") else None
            lines.append(
                f"- **macro-F1 {m['macro_f1']:.3f}** on `{name}` ({m.get('rows', '?')} labelled posts, "
                f"`givetake evaluate`)" + (f"; weakest label `{worst[0]}` F1 {worst[1]['f1']:.3f}." if worst else ".")
            )
        lines += ["", "Per-label figures: the evaluation sections below.", ""]
    elif metrics.get("real_holdout"):
        m = metrics["real_holdout"]
        per_label = ", ".join(f"`{n}` {v['f1']:.2f}" for n, v in (m.get("per_label") or {}).items())
        lines += [
            f"**macro-F1 {m['macro_f1']:.3f}** on {m.get('rows', '?')} held-out real posts "
            "of the team's own (`--real`). "
            f"Per label: {per_label}. They picked the epoch and tuned the thresholds, so the figure reads "
            "a little high; `givetake evaluate MODEL --data FILE` on other labelled posts measures it cleanly.",
            "",
        ]
    else:
        ref = reference if reference is not None else read_reference()
        if ref:
            g = ref["gold"]
            per_label = ", ".join(f"`{n}` {f:.2f}" for n, f in g.get("per_label_f1", {}).items())
            differs = recipe_differences(config or {})
            whose = (
                "This run follows that recipe."
                if not differs
                else f"This run departs from it ({', '.join(differs)}), so the figure is a guide, not a measurement "
                "of this run."
            )
            lines += [
                f"This run has not been evaluated on real labelled posts (`givetake evaluate MODEL --data FILE`). "
                f"Measured for the {ref.get('recipe', 'default recipe')} by "
                f"`{ref.get('measured_by', 'bench/quality.py')}` ({ref.get('measured_at', '?')}): "
                f"**macro-F1 {g['macro_f1']:.3f}** on {g.get('rows', '?')} real posts "
                f"(`{g.get('name', 'gold dev')}`: {g.get('what', 'real posts labelled by the guide')}). "
                f"Per label: {per_label}. {whose}",
                "",
            ]
        else:
            lines += [
                "Not measured: this run has no evaluation on real labelled posts and no reference figure "
                "ships with the package. Run `givetake evaluate MODEL --data FILE` on posts of your own feed.",
                "",
            ]
    if validation is not None:
        lines += [f"Validation macro-F1: {validation:.3f}. {WHY_VALIDATION_IS_HIGHER}", ""]
    return lines
