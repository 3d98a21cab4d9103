"""Export a trained model to ONNX, fp32 and int8, and check both against torch (``givetake export``).

The pipeline, one step per module: :mod:`~givetake.training.onnx_export` writes ``model.onnx``
beside the weights (torch -> ONNX, dynamic batch and sequence axes), :mod:`~givetake.training.fusion`
rewrites it with ONNX Runtime's fused operators, :mod:`~givetake.training.quantize` writes
``model.int8.onnx`` (int8 weights, dynamic quantisation) and :mod:`~givetake.training.parity`
checks both engines against torch. The figures go to ``metrics.json`` under ``engines``, which is
what :func:`givetake.core.bundle.open_model` reads; :func:`sync_store_copy` copies them to the
run's BentoML store twin.

Training runs this at the end of every run; ``givetake export MODEL`` does it for older runs.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException

from givetake.core.bundle import ENGINE_FILES, ENGINES_KEY
from givetake.core.registry import MODEL_NAME, read_metrics, resolve_model, write_metrics
from givetake.training.data import LabelledPosts
from givetake.training.fusion import fuse_for_ort
from givetake.training.onnx_export import ExportError, export_onnx
from givetake.training.parity import MAX_F1_DROP, MIN_AGREEMENT, check_parity, parity_table, validation_posts
from givetake.training.quantize import quantize_int8

__all__ = ["ExportError", "export_model", "parity_table", "sync_store_copy"]

log = logging.getLogger("givetake.export")


def export_model(
    model: str | Path,
    posts: LabelledPosts | None = None,
    torch_probs: np.ndarray | None = None,
    data: list[Path] | None = None,
    min_agreement: float = MIN_AGREEMENT,
    max_f1_drop: float = MAX_F1_DROP,
) -> dict[str, Any]:
    """Export ``model`` to ONNX and int8 ONNX, check both against torch, record the figures.

    ``posts`` (with ``torch_probs``, torch's blended probabilities for them, when already known)
    are the parity posts; without them, ``data`` files or the recomputed validation split.
    Returns the ``engines`` record written to ``metrics.json``.
    """
    model_dir = resolve_model(model)
    if posts is not None:
        described = f"validation split ({len(posts)} posts)"
    else:
        posts, described = validation_posts(model_dir, data)
    started = time.perf_counter()
    onnx_path, int8_path = model_dir / ENGINE_FILES["onnx"], model_dir / ENGINE_FILES["onnx-int8"]
    # Files of an earlier export would be read as checked until the new record is written.
    _write_records(model_dir, None)
    export_onnx(model_dir, onnx_path)
    try:
        fused = fuse_for_ort(onnx_path)
    except Exception as exc:  # an optimisation only: the plain export still runs, and is checked
        log.warning("%s: fusing the ONNX graph failed (%s: %s); keeping it unfused", model_dir, type(exc).__name__, exc)
        fused = {}
    quantize_int8(onnx_path, int8_path)
    exported = time.perf_counter() - started
    records: dict[str, Any] = {"torch": {"usable": True}}
    records.update(check_parity(model_dir, posts, described, torch_probs, min_agreement, max_f1_drop))
    records["exported_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    records["export_seconds"] = round(exported, 1)
    records["fused"] = fused
    records["check_seconds"] = round(time.perf_counter() - started - exported, 1)
    _write_records(model_dir, records)
    for engine in ENGINE_FILES:
        if not records[engine]["usable"]:
            log.warning("%s: engine %s is NOT usable: %s", model_dir, engine, records[engine]["reason"])
    return records


def _write_records(model_dir: Path, records: dict[str, Any] | None) -> None:
    metrics = read_metrics(model_dir)
    if records is None:
        metrics.pop(ENGINES_KEY, None)
    else:
        metrics[ENGINES_KEY] = records
    write_metrics(model_dir, metrics)


def sync_store_copy(run_dir: Path) -> str | None:
    """Copy a run's ONNX files and engine record to its BentoML store twin; return the tag, if any.

    A run registered before it was exported would otherwise be served from the store on torch.
    """
    tag = read_metrics(run_dir).get("bentoml_tag") or f"{MODEL_NAME}:{run_dir.name}"
    try:
        store_dir = Path(bentoml.models.get(tag).path)
    except (BentoMLException, ValueError):
        return None
    if store_dir.resolve() == run_dir.resolve():
        return None
    for name in ENGINE_FILES.values():
        shutil.copy2(run_dir / name, store_dir / name)
    _write_records(store_dir, read_metrics(run_dir)[ENGINES_KEY])
    return str(tag)
