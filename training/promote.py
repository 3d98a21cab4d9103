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

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.store import MODEL_NAME, ModelNotFound, exact_tag

LIVE_FILE = "givetake-live.json"
LIVE_ALIAS = f"{MODEL_NAME}:live"


class PromotionRefused(ValueError):
    """Promotion was refused (lower macro-F1, or nothing to compare on); the message says why.

    ``report`` holds the comparison behind a refusal (printed before the one-line error).
    """

    def __init__(self, message: str, report: str = "") -> None:
        super().__init__(message)
        self.report = report


def bentoml_home() -> Path:
    """The BentoML home directory (``$BENTOML_HOME``, default ``~/bentoml``, as BentoML uses)."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def live_file() -> Path:
    """Where the promotion record is kept."""
    return bentoml_home() / LIVE_FILE


def read_live() -> dict[str, Any] | None:
    """The promotion record (``tag``, ``promoted_at``, ``history``...), or None before any promotion."""
    try:
        data = json.loads(live_file().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("tag"), str) else None


def live_tag() -> str | None:
    """The exact tag of the promoted model, or None."""
    record = read_live()
    return record["tag"] if record else None


def default_model() -> str:
    """What a server started without ``--model`` serves: the promoted model, else ``givetake:latest``."""
    return live_tag() or f"{MODEL_NAME}:latest"


def _write_live(record: dict[str, Any]) -> None:
    path = live_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(path)  # atomic: a server starting meanwhile reads the old record or the new one


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
        from training.compare import compare_models

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
    _write_live(record)
    lines.append(f"promoted {candidate} (recorded in {live_file()}); `givetake serve` serves it from its next start")
    return candidate, lines


def promotion_info(tag: str | None) -> dict[str, Any]:
    """For ``GET /labels``: whether the model ``tag`` is the promoted one, and which one is."""
    record = read_live()
    promoted = record["tag"] if record else None
    return {
        "promoted": tag is not None and tag == promoted,
        "promoted_tag": promoted,
        "promoted_at": record.get("promoted_at") if record else None,
    }
