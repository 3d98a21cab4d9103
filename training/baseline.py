"""The yardstick: TF-IDF word + character n-grams with one-vs-rest logistic regression.

The model is ``training.lexical.LexicalModel`` used alone (the default givetake model blends
it with the fine-tuned transformer).

Trained on the same split as the transformer, thresholds tuned the same way on the same
validation rows, evaluated by the same code (``training.evaluate``). Only its metrics and
reports are saved: it is a measure to beat, not a model to serve.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from givetake.core.lexical import LexicalModel
from givetake.core.registry import new_run_id, write_metrics
from givetake.core.thresholds import save_thresholds, tune_thresholds
from givetake.labels.schema import load_schema
from givetake.training.card import write_card
from givetake.training.config import DataConfig, ModelConfig, TrainConfig, save_configs
from givetake.training.data import load_posts, stratified_split
from givetake.training.evaluate import write_report


def run_baseline(
    data_cfg: DataConfig, train_cfg: TrainConfig, eval_files: list[str] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Train the baseline on the split the transformer would use; save metrics and reports."""
    started = time.time()
    schema = load_schema(data_cfg.schema)
    posts = load_posts(data_cfg.data, schema, data_cfg.text_column, data_cfg.labels_column)
    train_idx, val_idx = stratified_split(posts, data_cfg.validation_fraction, train_cfg.seed)
    train_posts, val_posts = posts.subset(train_idx), posts.subset(val_idx)
    model = LexicalModel(schema.names, seed=train_cfg.seed).fit(train_posts.texts, train_posts.y, train_posts.known)
    val_probs = model.predict_proba(val_posts.texts)
    thresholds = tune_thresholds(val_posts.y, val_probs, schema.names, val_posts.known)

    run_id = (train_cfg.run_id or new_run_id()) + "-baseline"
    run_dir = Path(train_cfg.output_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    schema.save(run_dir / "schema.yaml")
    save_thresholds(run_dir, thresholds)
    save_configs(run_dir / "run_config.json", ModelConfig(base_model="tfidf-logreg"), data_cfg, train_cfg)
    metrics: dict[str, Any] = {
        "kind": "baseline",
        "run_id": run_id,
        "base_model": "tfidf-logreg",
        "schema_version": schema.version,
        "labels": schema.names,
        "validation": write_report(
            run_dir / "eval" / "validation",
            val_posts.y,
            val_probs,
            thresholds,
            schema.names,
            title=f"baseline {run_id}: validation split",
            known=val_posts.known,
        ),
        "data": {
            "train": train_posts.counts(),
            "validation": val_posts.counts(),
            "sources": sorted(set(posts.sources)),
        },
        "evaluations": {},
    }
    for path in eval_files or []:
        other = load_posts([path], schema, data_cfg.text_column, data_cfg.labels_column)
        metrics["evaluations"][Path(path).name] = write_report(
            run_dir / "eval" / Path(path).stem,
            other.y,
            model.predict_proba(other.texts),
            thresholds,
            schema.names,
            title=f"baseline {run_id}: {path}",
            known=other.known,
        )
    metrics["training"] = {"seconds": round(time.time() - started, 1)}
    write_metrics(run_dir, metrics)
    write_card(run_dir)
    model.save(run_dir)
    return run_dir, metrics
