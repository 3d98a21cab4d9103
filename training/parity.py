"""The parity check: does each exported engine predict what torch predicts?

Each engine's full predictions (transformer blended with the lexical half, then the thresholds)
are compared with torch's on the validation split: an engine is marked usable only when its labels
agree with torch's on at least 99% of the label decisions and its macro-F1 is at most 0.01 lower.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from givetake.core.bundle import ENGINE_FILES
from givetake.core.predictor import Predictor
from givetake.core.registry import read_metrics
from givetake.core.thresholds import apply_thresholds
from givetake.errors import DataError
from givetake.labels.schema import load_schema
from givetake.training.data import LabelledPosts, load_posts, stratified_split
from givetake.training.evaluate import compute_metrics
from givetake.training.onnx_export import ExportError

MIN_AGREEMENT = 0.99
MAX_F1_DROP = 0.01
PARITY_BATCH_SIZES = (32, 1)


def validation_posts(model_dir: Path, data: list[Path] | None = None) -> tuple[LabelledPosts, str]:
    """The posts the parity check runs on, and a description of them.

    With ``data``, every row of those labelled files. Otherwise the run's validation split,
    recomputed from ``run_config.json`` (its data, validation fraction and seed).
    """
    schema = load_schema(model_dir / "schema.yaml")
    if data:
        posts = load_posts(data, schema)
        return posts, f"{', '.join(p.name for p in data)} ({len(posts)} posts)"
    try:
        config = json.loads((model_dir / "run_config.json").read_text(encoding="utf-8"))
        data_cfg, seed = config["data"], int(config["train"]["seed"])
        fraction = float(data_cfg["validation_fraction"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ExportError(
            f"{model_dir}: cannot read the data settings in run_config.json ({exc}); "
            "pass --data FILE (labelled posts) for the parity check"
        ) from None
    sources = data_cfg.get("data") or None
    try:
        text_column, labels_column = data_cfg.get("text_column", "text"), data_cfg.get("labels_column", "labels")
        posts = load_posts(sources, schema, text_column, labels_column)
    except DataError as exc:
        raise ExportError(
            f"the training data of {model_dir} is not available to recompute its validation split ({exc}); "
            "pass --data FILE (labelled posts) for the parity check"
        ) from None
    _, val_idx = stratified_split(posts, fraction, seed)
    described = f"validation split ({len(val_idx)} posts)"
    trained_on = (read_metrics(model_dir).get("data") or {}).get("validation", {}).get("rows")
    if trained_on is not None and trained_on != len(val_idx):
        # Agreement with torch is still measured; the F1s are then partly on training posts.
        described = (
            f"validation split recomputed from today's data ({len(val_idx)} posts; the run's had {trained_on}, "
            "so the data changed since training)"
        )
    return posts.subset(val_idx), described


def check_parity(
    model_dir: Path,
    posts: LabelledPosts,
    data: str,
    torch_probs: np.ndarray | None = None,
    min_agreement: float = MIN_AGREEMENT,
    max_f1_drop: float = MAX_F1_DROP,
) -> dict[str, dict[str, Any]]:
    """Compare each exported engine's predictions with torch's on ``posts``; one record per engine.

    Each engine runs twice: in batches of 32 and one post at a time. Dynamic int8 quantisation
    scales activations per batch, so a post's int8 scores depend a little on its batch-mates;
    the server answers in both shapes, and both must pass. A record holds the worse of the two
    runs: the label agreement (share of post x label decisions equal to torch's), the post
    agreement (share of posts whose whole label set is equal), the macro-F1 and its drop from
    torch's, the largest probability difference, and ``usable`` with the ``reason`` when it is not.
    """
    known = getattr(posts, "mask", None)
    reference = torch_probs
    if reference is None:
        reference = Predictor(model_dir, engine="torch").predict_proba(posts.texts)[0]
    thresholds = json.loads((model_dir / "thresholds.json").read_text(encoding="utf-8"))
    labels = load_schema(model_dir / "schema.yaml").names
    ref_pred = apply_thresholds(reference, thresholds, labels)
    ref_f1 = compute_metrics(posts.y, ref_pred, labels, known)["macro_f1"]
    records: dict[str, dict[str, Any]] = {}
    for engine in ENGINE_FILES:
        predictor = Predictor(model_dir, engine=engine, unchecked=True)
        runs = []
        for batch_size in PARITY_BATCH_SIZES:
            predictor.batch_size = batch_size
            probs, _ = predictor.predict_proba(posts.texts)
            pred = apply_thresholds(probs, thresholds, labels)
            runs.append(
                {
                    "label_agreement": float((pred == ref_pred).mean()),
                    "post_agreement": float((pred == ref_pred).all(axis=1).mean()),
                    "macro_f1": compute_metrics(posts.y, pred, labels, known)["macro_f1"],
                    "max_abs_prob_diff": float(np.abs(probs - reference).max()),
                }
            )
        agreement = min(r["label_agreement"] for r in runs)
        f1 = min(r["macro_f1"] for r in runs)
        drop = ref_f1 - f1
        problems = []
        if agreement < min_agreement:
            problems.append(f"label agreement {agreement:.2%} < {min_agreement:.0%}")
        if drop > max_f1_drop:
            problems.append(f"macro-F1 drop {drop:.4f} > {max_f1_drop}")
        records[engine] = {
            "file": ENGINE_FILES[engine],
            "usable": not problems,
            **({"reason": "; ".join(problems) + f" on {data}"} if problems else {}),
            "label_agreement": round(agreement, 5),
            "post_agreement": round(min(r["post_agreement"] for r in runs), 5),
            "macro_f1": round(f1, 5),
            "macro_f1_torch": round(ref_f1, 5),
            "macro_f1_drop": round(drop, 5),
            "max_abs_prob_diff": round(max(r["max_abs_prob_diff"] for r in runs), 5),
            "batch_sizes": list(PARITY_BATCH_SIZES),
            "posts": len(posts),
            "data": data,
            "size_mb": round((model_dir / ENGINE_FILES[engine]).stat().st_size / 1e6, 1),
        }
    return records


def parity_table(records: dict[str, Any]) -> str:
    """The parity figures as a small text table."""
    lines = [f"{'engine':<11}{'label agr.':>11}{'post agr.':>10}{'macro-F1':>9}{'drop':>8}{'max |dp|':>9}  usable"]
    for engine in ENGINE_FILES:
        r = records[engine]
        lines.append(
            f"{engine:<11}{r['label_agreement']:>11.2%}{r['post_agreement']:>10.2%}{r['macro_f1']:>9.4f}"
            f"{r['macro_f1_drop']:>8.4f}{r['max_abs_prob_diff']:>9.4f}  "
            + ("yes" if r["usable"] else "NO: " + r["reason"])
        )
    return "\n".join(lines)
