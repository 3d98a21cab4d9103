"""Mark one model in the BentoML store as the one served (``givetake promote TAG``).

BentoML's ``givetake:latest`` is simply the newest model, so training a model would change
what a restarted server loads. Promotion instead records an exact tag in a small file in the
BentoML home, ``$BENTOML_HOME/givetake-live.json`` (beside the ``models/`` store, so it
lives and moves with the store). ``givetake serve`` without ``--model`` serves that model
when there is one, else ``givetake:latest``; ``givetake:live`` names it anywhere a model is
taken (``serve``, ``score``, ``evaluate``, ``compare``).

By default a model is promoted only when its macro-F1 on the given labelled data is not
lower than the current model's (the promoted one, or ``givetake:latest`` before any
promotion), measured by ``training.compare`` on the labels both have; ``--force`` skips the
check. Every promotion is appended to the file's ``history``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from givetake.core.registry import MODEL_NAME, exact_tag, live_file, read_live, write_live
from givetake.errors import GivetakeError, ModelNotFound
from givetake.training.compare import compare_models


class PromotionRefused(GivetakeError, ValueError):
    """Promotion was refused (lower macro-F1, or nothing to compare on); the message says why.

    ``report`` holds the comparison behind a refusal (printed before the one-line error).
    """

    def __init__(self, message: str, report: str = "") -> None:
        super().__init__(message)
        self.report = report


def _store_tag(ref: str) -> str:
    if Path(ref).is_dir():
        raise ModelNotFound(
            f"{ref} is a run directory; promote its BentoML tag instead (givetake:<run-id>, "
            "see its metrics.json 'bentoml_tag')"
        )
    return exact_tag(ref)


def promote(
    tag: str,
    data: list[str | Path] | None = None,
    force: bool = False,
    text_column: str = "text",
    labels_column: str = "labels",
    resamples: int = 1000,
) -> tuple[str, list[str]]:
    """Promote the store model ``tag``; return its exact tag and the lines to print.

    Raises :class:`PromotionRefused` when the candidate's macro-F1 on ``data`` is lower than
    the current model's, or when there is a current model but no data to compare on (unless
    ``force``).
    """
    candidate = _store_tag(tag)
    previous = read_live()
    current: str | None = previous["tag"] if previous else None
    if current is None:
        try:
            current = exact_tag(f"{MODEL_NAME}:latest")
        except ModelNotFound:
            current = None
    lines: list[str] = []
    record: dict[str, Any] = {"tag": candidate, "previous": previous["tag"] if previous else None, "forced": force}
    if previous and current == candidate:
        return candidate, [f"{candidate} is already the promoted model; nothing changed"]
    if current is None or current == candidate:
        lines.append(f"no model was promoted before and {candidate} is givetake:latest: promoted without comparison")
    elif data:
        cmp = compare_models(current, candidate, list(data), text_column, labels_column, resamples=resamples)
        lines.append(cmp.format())
        record["comparison"] = {
            "data": [str(d) for d in data],
            "current": current,
            "labels": cmp.shared,
            "macro_f1_current": round(cmp.macro_a, 4),
            "macro_f1_candidate": round(cmp.macro_b, 4),
            "ci": [round(cmp.low, 4), round(cmp.high, 4)],
        }
        if cmp.difference < 0 and not force:
            raise PromotionRefused(
                f"refused: {candidate} has a lower macro-F1 than the current model {current} on "
                f"{', '.join(map(str, data))} ({cmp.macro_b:.3f} < {cmp.macro_a:.3f}); "
                "pass --force to promote it anyway",
                report="\n".join(lines),
            )
        if cmp.difference < 0:
            lines.append(f"--force: promoting despite a lower macro-F1 ({cmp.macro_b:.3f} < {cmp.macro_a:.3f})")
    elif not force:
        raise PromotionRefused(
            f"{current} is the current model; give --data FILE (labelled posts) to check that {candidate} "
            "is not worse, or pass --force"
        )
    else:
        lines.append(f"--force: promoting without comparing with the current model {current}")
    record["promoted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    history = list(previous.get("history", [])) if previous else []
    history.append({k: record[k] for k in ("tag", "promoted_at", "forced")})
    record["history"] = history
    write_live(record)
    lines.append(
        f"promoted {candidate} (recorded in {live_file()}); a running `givetake serve` started without --model "
        "swaps it in within seconds, once it has loaded and passed its checks"
    )
    return candidate, lines
