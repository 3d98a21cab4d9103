"""Fine-tune a transformer for multi-label post classification (``givetake train``).

Recipe (measured defaults, see README): class-balanced BCE (positive weight =
negatives/positives, capped), frozen word embeddings, length-grouped batches with dynamic
padding, evaluation each epoch with early stopping on validation macro-F1, best epoch kept,
then per-label thresholds tuned on the validation predictions.

torch and transformers (seconds and hundreds of MB to import) are imported inside the functions
that train: the CLI imports this module for every command.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from givetake.core.lexical import LexicalModel
from givetake.core.predictor import Predictor
from givetake.core.registry import MODEL_NAME, new_run_id, register, resolve_model, write_metrics
from givetake.core.resources import available_cores, native_bf16
from givetake.core.text import normalize, truncate_ids
from givetake.core.thresholds import apply_thresholds, save_thresholds, tune_thresholds
from givetake.errors import ConfigError
from givetake.labels.schema import Schema, load_schema
from givetake.training.augment import variants
from givetake.training.base_models import resolve_base_model
from givetake.training.card import write_card
from givetake.training.config import (
    INIT_FROM_LEARNING_RATE,
    LEARNING_RATE,
    DataConfig,
    ModelConfig,
    TrainConfig,
    save_configs,
)
from givetake.training.data import LabelledPosts, label_warnings, load_posts, stratified_split
from givetake.training.distill import SHIPPED, read_texts, teacher_targets
from givetake.training.evaluate import compute_metrics, write_report
from givetake.training.export import ExportError, export_model

log = logging.getLogger("givetake.train")
# A label needs this many positives among the held-out real posts before its threshold is tuned there.
MIN_HOLDOUT_POSITIVES = 5
# ...and this many held-out real posts before they pick the best epoch.
MIN_HOLDOUT_ROWS = 50


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, stable for large negative inputs."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -50, 50))))


def pos_weights(y: np.ndarray, cap: float, known: np.ndarray | None = None) -> np.ndarray | None:
    """Per-label BCE positive weights: negatives/positives, capped at ``cap`` (None if cap == 0).

    With ``known`` (0/1, shape like ``y``), only the rows where a label was judged count.
    """
    if cap <= 0:
        return None
    judged = np.ones_like(y) if known is None else np.asarray(known)
    pos = (y * judged).sum(axis=0).astype(np.float64)
    neg = judged.sum(axis=0) - pos
    return np.minimum(neg / np.maximum(pos, 1.0), cap).clip(min=1.0)


def tokenize(
    posts: LabelledPosts,
    tokenizer: Any,
    max_length: int,
    head: int,
    soft: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Any:
    """A ``datasets.Dataset`` of token ids (normalised text, no padding) and float labels.

    A post longer than ``max_length`` keeps its first ``head`` tokens and the rest from its end,
    as every prediction path does (:func:`training.text.truncate_ids`). ``soft`` and ``weights``
    ride in the labels column (see :meth:`LabelledPosts.to_dataset`).
    """
    ds = posts.to_dataset(soft, weights)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = dict(tokenizer([normalize(t) for t in batch["text"]], truncation=False))
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in enc:
                enc[key] = [truncate_ids(seq, max_length, head) for seq in enc[key]]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return ds.map(encode, batched=True, remove_columns=["text"])


def build_model(model_cfg: ModelConfig, schema: Schema) -> tuple[Any, Any]:
    """Tokenizer and a fresh multi-label classification model with the schema's labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = schema.names
    previous_labels: list[str] | None = None
    if model_cfg.init_from:
        source = str(resolve_model(model_cfg.init_from))
        previous_labels = load_schema(Path(source) / "schema.yaml").names
    else:
        source = resolve_base_model(model_cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        num_labels=len(names),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=previous_labels is not None,
        trust_remote_code=False,
    )
    if previous_labels is not None and previous_labels != names:
        kept = _carry_over_head(model, Path(source), previous_labels, names)
        log.info(
            "label set changed (%s -> %s): classifier head rebuilt, the rows of %s kept from %s",
            previous_labels,
            names,
            ", ".join(kept) or "no label",
            model_cfg.init_from,
        )
    if model_cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return tokenizer, model


def _carry_over_head(model: Any, source: Path, previous: list[str], names: list[str]) -> list[str]:
    """Rebuild the classifier head for ``names``, keeping the earlier model's rows for the labels it had.

    A label kept keeps its weights: only a new label starts from random ones. Starting the whole
    head afresh cost the old labels 0.012 macro-F1 on gold dev after one epoch (bench/RESULTS.md,
    "A new label"). Returns the labels whose rows were kept.
    """
    import torch
    from safetensors.torch import load_file

    head = getattr(model, "classifier", None)
    if head is None or not hasattr(head, "reset_parameters"):
        raise RuntimeError(f"cannot rebuild the classifier head of {type(model).__name__}")
    head.reset_parameters()
    last = head.out_proj if hasattr(head, "out_proj") else head  # RoBERTa-style heads end in out_proj
    state = load_file(str(source / "model.safetensors"))
    prefix = "classifier.out_proj." if hasattr(head, "out_proj") else "classifier."
    weight, bias = state.get(prefix + "weight"), state.get(prefix + "bias")
    if weight is None or bias is None or weight.shape[0] != len(previous) or weight.shape[1] != last.weight.shape[1]:
        return []
    kept = []
    with torch.no_grad():
        for row, name in enumerate(names):
            if name in previous:
                last.weight[row] = weight[previous.index(name)]
                last.bias[row] = bias[previous.index(name)]
                kept.append(name)
        if hasattr(head, "out_proj"):  # its dense layer belongs to the old model too
            for key in ("weight", "bias"):
                if f"classifier.dense.{key}" in state:
                    getattr(head.dense, key).copy_(state[f"classifier.dense.{key}"])
    return kept


def _trainer_class() -> type:
    import torch
    from transformers import Trainer

    class BalancedTrainer(Trainer):  # type: ignore[misc]
        """Trainer whose loss is BCE with per-label positive weights.

        A label value of -1 marks a cell that was not judged (data labelled before the label
        existed): it is masked out of the loss instead of being read as a negative. With
        ``row_weights``, the training rows' labels end in one loss weight per row (a team's real
        posts count more than the written corpus); evaluation rows never carry one.
        """

        def __init__(
            self,
            *args: Any,
            pos_weight: np.ndarray | None = None,
            distill_weight: float = 0.0,
            row_weights: bool = False,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.pos_weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32)
            self.distill_weight = distill_weight
            self.row_weights = row_weights

        def _bce(self, logits: Any, targets: Any, weights: Any = None) -> Any:
            """Weighted BCE over the cells whose target is known (a negative target marks an unknown one).

            ``weights`` (one per row) make the mean a weighted one.
            """
            if weights is None and not bool((targets < 0).any()):
                return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)
            mask = (targets >= 0).float()
            cells = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, targets.clamp(min=0), pos_weight=self.pos_weight, reduction="none"
            )
            if weights is None:
                return (cells * mask).sum() / mask.sum().clamp(min=1.0)
            mask = mask * weights.unsqueeze(1)
            return (cells * mask).sum() / mask.sum().clamp(min=1e-6)

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            labels = inputs.pop("labels").float()
            outputs = model(**inputs)
            logits = outputs.logits.float()
            width = logits.shape[1]
            weights = None
            if self.row_weights and model.training:  # the last column of a training row is its weight
                labels, weights = labels[:, :-1], labels[:, -1]
            if labels.shape[1] == 2 * width:  # labels, then a teacher's scores (training rows only)
                hard, soft = labels[:, :width], labels[:, width:]
                # A cell the teacher has no score for learns from its label alone.
                soft = torch.where(soft < 0, hard, soft)
                loss = (1 - self.distill_weight) * self._bce(logits, hard, weights) + self.distill_weight * self._bce(
                    logits, soft, weights
                )
            else:
                loss = self._bce(logits, labels, weights)
            return (loss, outputs) if return_outputs else loss

    return BalancedTrainer


def real_thresholds(
    holdout: LabelledPosts, probs: np.ndarray, fallback: dict[str, float], minimum: int = MIN_HOLDOUT_POSITIVES
) -> tuple[dict[str, float], dict[str, str]]:
    """Thresholds tuned on a team's held-out real posts, and where each came from.

    A label with fewer than ``minimum`` judged positives among them keeps its ``fallback``
    (validation-split) threshold: a cut tuned on two or three positives is noise.
    """
    tuned = tune_thresholds(holdout.y, probs, holdout.label_names, holdout.known)
    out, source = {}, {}
    for j, name in enumerate(holdout.label_names):
        positives = int(holdout.y[holdout.mask[:, j] > 0, j].sum())
        if positives >= minimum:
            out[name], source[name] = tuned[name], "real_holdout"
        else:
            out[name], source[name] = fallback[name], "validation"
            log.info(
                "label %r: %d positive(s) among the held-out real posts, fewer than %d: "
                "its threshold comes from the validation split",
                name,
                positives,
                minimum,
            )
    return out, source


def _threshold_metrics(label_names: list[str]) -> Any:
    def metrics(pred: Any) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        probs = sigmoid(logits)
        y = pred.label_ids.astype(int)
        known = (y >= 0).astype(np.int8)  # -1 marks a cell that was not judged
        y = y.clip(min=0)
        th = tune_thresholds(y, probs, label_names, known)
        m = compute_metrics(y, apply_thresholds(probs, th, label_names), label_names, known)
        return {"macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"]}

    return metrics


def train(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    progress: bool = True,
    callbacks: list[Any] | None = None,
) -> Path:
    """Fine-tune, tune thresholds, evaluate on validation and save the run; return its directory.

    ``callbacks`` are extra transformers ``TrainerCallback`` objects (e.g. for experiments).
    """
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    started = time.time()
    torch.set_num_threads(train_cfg.threads or available_cores())
    if train_cfg.learning_rate is None:  # recorded resolved in run_config.json
        train_cfg.learning_rate = INIT_FROM_LEARNING_RATE if model_cfg.init_from else LEARNING_RATE
    if train_cfg.bf16 is None:  # likewise; bench/RESULTS.md, "Training step", has the speed and quality
        train_cfg.bf16 = native_bf16()
    schema = load_schema(data_cfg.schema)
    posts = load_posts(data_cfg.data, schema, data_cfg.text_column, data_cfg.labels_column)
    train_idx, val_idx = stratified_split(posts, data_cfg.validation_fraction, train_cfg.seed)
    train_posts, val_posts = posts.subset(train_idx), posts.subset(val_idx)
    corpus_rows = len(train_posts)
    real_holdout, real_sources = None, []
    if data_cfg.real:
        real = load_posts(data_cfg.real, schema, data_cfg.text_column, data_cfg.labels_column)
        real_sources = sorted(set(real.sources))
        real_train_idx, real_holdout_idx = stratified_split(real, data_cfg.real_holdout, train_cfg.seed)
        real_holdout = real.subset(real_holdout_idx)
        train_posts = train_posts.followed_by(real.subset(real_train_idx))
        log.info(
            "real posts: %d train (loss weight %g), %d held out to pick the epoch and tune the thresholds",
            len(real_train_idx),
            train_cfg.real_weight,
            len(real_holdout_idx),
        )
    real_rows = len(train_posts) - corpus_rows
    if train_cfg.augment > 0:
        train_posts = train_posts.with_variants(*variants(train_posts.texts, train_cfg.augment, train_cfg.seed))
    if data_cfg.unlabelled:
        if train_cfg.teacher == "none":
            raise ConfigError("--unlabelled needs a --teacher (a model) to score the unlabelled posts")
        pool = read_texts(data_cfg.unlabelled, data_cfg.text_column, data_cfg.unlabelled_limit, train_cfg.seed)
        log.info("unlabelled: %d posts, learnt from the teacher's scores", len(pool))
        train_posts = train_posts.with_unlabelled(pool)
    log.info("data: %d train, %d validation rows", len(train_posts), len(val_posts))
    data_warnings = label_warnings(posts)
    for line in data_warnings:
        log.warning("WARNING: %s", line)
    for name, n in (posts.counts().get("unknown") or {}).items():
        if n:
            log.info("label %r: %d rows labelled before it existed count as unknown, not negative", name, n)

    torch.manual_seed(train_cfg.seed)
    tokenizer, model = build_model(model_cfg, schema)
    soft, teacher_name = None, None
    if train_cfg.teacher != "none":
        teacher = str(SHIPPED) if train_cfg.teacher == "shipped" else train_cfg.teacher
        soft, teacher_name = teacher_targets(teacher, train_posts.texts, schema.names)
        covered = float(np.isfinite(soft).any(axis=1).mean()) if len(soft) else 0.0
        taught = [n for j, n in enumerate(schema.names) if np.isfinite(soft[:, j]).any()]
        log.info(
            "teacher %s: scores for %.0f%% of the training rows, labels %s (the others learn from labels alone)",
            teacher_name,
            100 * covered,
            ", ".join(taught) or "none",
        )
    weights = None
    if real_rows and train_cfg.real_weight != 1:
        weights = np.ones(len(train_posts), dtype=np.float32)
        weights[corpus_rows : corpus_rows + real_rows] = train_cfg.real_weight
    train_ds = tokenize(train_posts, tokenizer, model_cfg.max_length, model_cfg.head, soft, weights)
    # With a team's real posts, their held-out part picks the best epoch: it is what the model is for.
    # Too few of them would make that choice a coin toss, so the written validation split keeps it.
    eval_posts = val_posts
    if real_holdout is not None and len(real_holdout) >= MIN_HOLDOUT_ROWS:
        eval_posts = real_holdout
    elif real_holdout is not None:
        few = (
            f"only {len(real_holdout)} held-out real posts (fewer than {MIN_HOLDOUT_ROWS}): the written validation "
            "split picks the epoch; label more posts or raise --real-holdout"
        )
        log.warning("WARNING: %s", few)
        data_warnings.append(few)
    eval_ds = tokenize(eval_posts, tokenizer, model_cfg.max_length, model_cfg.head)

    run_id = train_cfg.run_id or new_run_id()
    run_dir = Path(train_cfg.output_dir) / run_id
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} already exists; choose another --run-id")
    work_dir = Path(train_cfg.output_dir) / f".{run_id}.checkpoints"
    args = TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=train_cfg.epochs,
        max_steps=train_cfg.max_steps,
        learning_rate=train_cfg.learning_rate,
        per_device_train_batch_size=train_cfg.batch_size,
        per_device_eval_batch_size=64,
        weight_decay=train_cfg.weight_decay,
        warmup_steps=train_cfg.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if train_cfg.max_steps < 0 else "steps",
        save_strategy="epoch" if train_cfg.max_steps < 0 else "steps",
        # Only read with the "steps" strategy, i.e. for --max-steps smoke runs.
        eval_steps=max(train_cfg.max_steps, 1),
        save_steps=max(train_cfg.max_steps, 1),
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=True,
        seed=train_cfg.seed,
        data_seed=train_cfg.seed,
        train_sampling_strategy="group_by_length",
        bf16=train_cfg.bf16,
        use_cpu=True,
        report_to=[],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    callbacks = list(callbacks or [])
    if train_cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=train_cfg.early_stopping_patience))
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_threshold_metrics(schema.names),
        callbacks=callbacks,
        pos_weight=pos_weights(train_posts.y, train_cfg.pos_weight_cap, train_posts.known),
        distill_weight=train_cfg.distill_weight if soft is not None else 0.0,
        row_weights=weights is not None,
    )
    try:
        result = trainer.train()
        run_dir.mkdir(parents=True)
        trainer.save_model(str(run_dir))
        tokenizer.save_pretrained(str(run_dir))
        # Trainer pickles its arguments; model directories hold no pickle (see SECURITY.md).
        (run_dir / "training_args.bin").unlink(missing_ok=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    schema.save(run_dir / "schema.yaml")
    save_configs(run_dir / "run_config.json", model_cfg, data_cfg, train_cfg)
    save_thresholds(run_dir, {n: 0.5 for n in schema.names})  # provisional, tuned below
    if model_cfg.lexical_weight > 0:
        lexical = LexicalModel(schema.names, seed=train_cfg.seed)
        lexical.fit(train_posts.texts, train_posts.y, train_posts.known).save(
            run_dir, blend_weight=model_cfg.lexical_weight
        )
    # Validation probabilities come from the saved run through the serving predictor, so the
    # thresholds are tuned on exactly what every prediction path will compute.
    predictor = Predictor(run_dir, threads=train_cfg.threads or None, engine="torch")
    probs, _ = predictor.predict_proba(val_posts.texts)
    thresholds = tune_thresholds(val_posts.y, probs, schema.names, val_posts.known)
    real_metrics, thresholds_from = None, dict.fromkeys(schema.names, "validation")
    if real_holdout is not None:
        real_probs, _ = predictor.predict_proba(real_holdout.texts)
        thresholds, thresholds_from = real_thresholds(real_holdout, real_probs, thresholds)
        real_metrics = write_report(
            run_dir / "eval" / "real_holdout",
            real_holdout.y,
            real_probs,
            thresholds,
            schema.names,
            title=f"givetake {run_id}: held-out real posts ({len(real_holdout)} rows; they tuned the thresholds)",
            known=real_holdout.known,
        )
    del predictor
    save_thresholds(run_dir, thresholds)
    val_metrics = write_report(
        run_dir / "eval" / "validation",
        val_posts.y,
        probs,
        thresholds,
        schema.names,
        title=f"givetake {run_id}: validation split ({len(val_posts)} rows)",
        known=val_posts.known,
    )
    history = [h for h in trainer.state.log_history if "eval_macro_f1" in h]
    metrics: dict[str, Any] = {
        "kind": "transformer",
        "run_id": run_id,
        "base_model": model_cfg.base_model,
        "lexical_weight": model_cfg.lexical_weight,
        "teacher": {"name": teacher_name, "distill_weight": train_cfg.distill_weight} if teacher_name else None,
        "schema_version": schema.version,
        "labels": schema.names,
        "validation": val_metrics,
        "thresholds_from": thresholds_from,
        "data": {
            "train": train_posts.counts(),
            "validation": val_posts.counts(),
            "sources": sorted(set(posts.sources)),
        },
        "warnings": data_warnings,
        "training": {
            "seconds": round(time.time() - started, 1),
            "steps": int(result.global_step),
            "epochs_run": float(trainer.state.epoch or 0),
            "best_checkpoint_metric": trainer.state.best_metric,
            "eval_history": [{"epoch": h.get("epoch"), "macro_f1": h["eval_macro_f1"]} for h in history],
            "best_epoch_on": "real_holdout" if eval_posts is real_holdout else "validation",
            "threads": torch.get_num_threads(),
        },
    }
    if real_holdout is not None:
        metrics["real_holdout"] = real_metrics
        metrics["data"]["real"] = {
            "train_rows": real_rows,
            "holdout": real_holdout.counts(),
            "loss_weight": train_cfg.real_weight,
            "sources": real_sources,
        }
    if train_cfg.register:
        metrics["bentoml_tag"] = f"{MODEL_NAME}:{run_id}"
    write_metrics(run_dir, metrics)
    write_card(run_dir)
    # ONNX engines before registering, so the store copy holds them too.
    try:
        export_model(run_dir, posts=val_posts, torch_probs=probs)
    except ExportError as exc:
        log.warning("WARNING: %s; the model runs on torch until `givetake export %s` succeeds", exc, run_dir)
    if train_cfg.register:
        register(run_dir, run_id)
    return run_dir
