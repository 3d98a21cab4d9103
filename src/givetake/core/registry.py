"""The model store: run directories under ``models/`` and their twins in the BentoML store.

A run directory holds everything needed to predict: weights (safetensors), tokenizer,
``config.json`` (id2label/label2id), ``schema.yaml`` (the labels it was trained on),
``thresholds.json``, ``run_config.json``, ``metrics.json`` and the model card ``README.md``.
The same files are registered in the BentoML model store as ``givetake:<run-id>``.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException

from givetake.errors import ModelNotFound

MODEL_NAME = "givetake"
METRICS_FILE = "metrics.json"
LIVE_FILE = "givetake-live.json"
LIVE_ALIAS = f"{MODEL_NAME}:live"
REQUIRED_FILES = ("config.json", "model.safetensors", "schema.yaml", "thresholds.json")


def new_run_id() -> str:
    """A sortable, store-safe run id such as ``20261123-221530``."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of a run (empty if the run has none)."""
    path = Path(run_dir, METRICS_FILE)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, json.JSONDecodeError):
        return {}


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics.json`` into a run directory."""
    Path(run_dir, METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The flat figures kept as BentoML metadata (metadata values must be simple)."""
    out: dict[str, Any] = {}
    for split in ("validation", "dev"):
        m = metrics.get(split) or {}
        for key in ("macro_f1", "micro_f1", "exact_match"):
            if isinstance(m.get(key), (int, float)):
                out[f"{split}_{key}"] = round(float(m[key]), 4)
    return out


def register(run_dir: str | Path, run_id: str) -> str:
    """Copy a run into the BentoML model store as ``givetake:<run_id>``; return the tag."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    metadata = {"run_id": run_id, **_summary(metrics)}
    labels = {"source": "givetake-train"}
    with bentoml.models.create(f"{MODEL_NAME}:{run_id}", labels=labels, metadata=metadata) as ref:
        shutil.copytree(run_dir, ref.path, dirs_exist_ok=True)
    return f"{MODEL_NAME}:{run_id}"


def resolve_model(ref: str | Path) -> Path:
    """The directory of a model given as a run directory or a BentoML tag (``givetake:latest``).

    ``givetake:live`` is the promoted model (``givetake promote``). Raises
    :class:`ModelNotFound` naming the reference and what is missing.
    """
    if str(ref) == f"{MODEL_NAME}:live":
        promoted = live_tag()
        if promoted is None:
            raise ModelNotFound("givetake:live: no model has been promoted yet; run `givetake promote TAG`")
        ref = promoted
    path = Path(ref)
    if path.is_dir():
        model_dir = path
    elif os.sep in str(ref) or str(ref).startswith("."):
        raise ModelNotFound(f"model directory {path} does not exist")
    else:
        try:
            model_dir = Path(bentoml.models.get(str(ref)).path)
        except BentoMLException as exc:
            raise ModelNotFound(
                f"{ref!r} is neither a model directory nor a model in the BentoML store "
                f"({exc}); train one with `givetake train`"
            ) from None
    missing = [f for f in REQUIRED_FILES if not (model_dir / f).is_file()]
    if missing:
        raise ModelNotFound(f"{model_dir} is not a givetake model: missing {', '.join(missing)}")
    return model_dir


def exact_tag(ref: str) -> str:
    """The exact store tag of a reference (``givetake:latest`` -> ``givetake:<run-id>``)."""
    if ref == f"{MODEL_NAME}:live":
        resolve_model(ref)  # raises when nothing is promoted
        return str(live_tag())
    try:
        return str(bentoml.models.get(ref).tag)
    except BentoMLException as exc:
        raise ModelNotFound(f"{ref!r} is not a model in the BentoML store ({exc})") from None


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


def write_live(record: dict[str, Any]) -> None:
    """Replace the promotion record atomically."""
    path = live_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(path)  # atomic: a server starting meanwhile reads the old record or the new one


def promotion_info(tag: str | None) -> dict[str, Any]:
    """For ``GET /labels``: whether the model ``tag`` is the promoted one, and which one is."""
    record = read_live()
    promoted = record["tag"] if record else None
    return {
        "promoted": tag is not None and tag == promoted,
        "promoted_tag": promoted,
        "promoted_at": record.get("promoted_at") if record else None,
    }


def list_runs(models_dir: str | Path = "models") -> list[dict[str, Any]]:
    """One row per run directory under ``models_dir``, newest first, with its metrics."""
    rows: list[dict[str, Any]] = []
    root = Path(models_dir)
    if not root.is_dir():
        return rows
    for run in sorted((p for p in root.iterdir() if p.is_dir() and (p / METRICS_FILE).is_file()), reverse=True):
        metrics = read_metrics(run)
        rows.append(
            {"run": run.name, "path": str(run), "kind": metrics.get("kind", "transformer"), **_summary(metrics)}
        )
    return rows
