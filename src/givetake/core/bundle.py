"""A saved model, resolved and checked once: the one place that decides whether a model may load.

:func:`open_model` takes a ``models/<run>`` directory or a BentoML store tag (``givetake:latest``,
``givetake:live``), and refuses, each with a message naming the file: a directory that is missing
or lacks a required file; any pickle file (``*.bin``, ``*.pkl``, ...), which would run code when
loaded; a JSON or safetensors file that does not parse (a truncated download, a half-copied
directory); ``config.json`` labels that differ from the model's ``schema.yaml``; thresholds that do
not cover the labels; and, when a schema is given, a model trained on other labels. No weights
are read, so it is cheap; the :class:`~givetake.core.predictor.Predictor` takes the bundle and
loads the engine it names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from givetake.core.registry import read_metrics, resolve_model
from givetake.core.thresholds import load_thresholds
from givetake.errors import ModelLoadError
from givetake.labels.schema import Schema, SchemaError, load_schema

ENGINES = ("torch", "onnx", "onnx-int8")
ENGINE_CHOICES = ("auto", *ENGINES)
# The exported networks, beside the weights; written by ``givetake export`` (training/export.py).
ENGINE_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
# Where metrics.json records which engines passed the parity check against torch.
ENGINES_KEY = "engines"
ENGINE_ENV = "GIVETAKE_ENGINE"
SCHEMA_ENV = "GIVETAKE_SCHEMA"
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib")


def _schema(path: Path) -> Schema:
    try:
        return load_schema(path)
    except SchemaError as exc:
        raise ModelLoadError(str(exc)) from None


def _truncation(run_config: Any) -> tuple[int, int]:
    """``max_length`` and the tokens kept from the start of a longer post, as the run trained them.

    A run from before ``head_tokens`` existed kept only the start (and the closing token).
    """
    try:
        cfg = run_config["model"]
        max_length = int(cfg["max_length"])
    except (KeyError, ValueError, TypeError):
        return 128, 127
    if "head_tokens" not in cfg:
        return max_length, max_length - 1
    head = cfg["head_tokens"]
    return max_length, int(head) if isinstance(head, int) else max_length // 2


@dataclass(frozen=True)
class ModelBundle:
    """A checked model directory and what prediction needs from its files (no weights loaded)."""

    path: Path
    reference: str
    schema: Schema
    thresholds: dict[str, float]
    max_length: int
    head_tokens: int
    metrics: dict[str, Any] = field(repr=False)

    @property
    def labels(self) -> list[str]:
        return self.schema.names

    @property
    def engines(self) -> dict[str, Any]:
        """What ``givetake export`` recorded per engine (``usable``, parity figures); empty if never exported."""
        records = self.metrics.get(ENGINES_KEY)
        return records if isinstance(records, dict) else {}

    def engine(self, requested: str | None = None) -> str:
        """The engine to run: ``requested``, else ``$GIVETAKE_ENGINE``, else ``auto``.

        ``auto`` is ``onnx-int8`` when its file is there and passed the parity check, else ``onnx``
        on the same terms, else ``torch``. An ONNX engine asked for by name must have its file and a
        passed check; otherwise :class:`ModelLoadError` names the file and the command that makes it.
        """
        name = (requested or os.environ.get(ENGINE_ENV) or "auto").strip().lower()
        if name not in ENGINE_CHOICES:
            raise ModelLoadError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_CHOICES)}")
        records = self.engines
        if name == "auto":
            for engine in ("onnx-int8", "onnx"):
                if (self.path / ENGINE_FILES[engine]).is_file() and (records.get(engine) or {}).get("usable") is True:
                    return engine
            return "torch"
        if name == "torch":
            return name
        path = self.path / ENGINE_FILES[name]
        export = f"`givetake export {self.reference}`"
        if not path.is_file():
            raise ModelLoadError(
                f"engine {name!r} needs {path}, which does not exist; create it with {export} (or use --engine torch)"
            )
        record = records.get(name) or {}
        if "usable" not in record:
            raise ModelLoadError(f"{path} was never checked against torch; run {export} (or use --engine torch)")
        if record["usable"] is not True:
            raise ModelLoadError(
                f"{path} failed the parity check against torch ({record.get('reason', 'see metrics.json')}); "
                "use --engine torch or onnx"
            )
        return name


def open_model(model: str | Path | ModelBundle, schema: str | Path | None = None) -> ModelBundle:
    """Resolve ``model`` and check its files (see the module docstring); a bundle passes through.

    ``schema``: the label schema in use; a model trained on other labels is refused.
    """
    if isinstance(model, ModelBundle):
        bundle = model
    else:
        model_dir = resolve_model(model)
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"{model_dir} holds pickle files ({', '.join(pickles)}), which run code when loaded; "
                "only safetensors weights are loaded: remove them or re-save the model with safetensors"
            )
        parsed: dict[str, Any] = {}
        for path in sorted(model_dir.glob("*.json")):
            try:
                parsed[path.name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ModelLoadError(f"{path}: corrupt JSON ({exc}); copy or train the model again") from None
        for path in sorted(model_dir.glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="numpy"):
                    pass  # opening parses the header and checks the file covers every tensor
            except Exception as exc:  # safetensors raises its own SafetensorError, not an OSError
                raise ModelLoadError(
                    f"{path}: corrupt safetensors file ({exc}); copy or train the model again"
                ) from None
        model_schema = _schema(model_dir / "schema.yaml")
        labels = model_schema.names
        config = parsed.get("config.json")
        id2label = config.get("id2label") if isinstance(config, dict) else None
        if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(str(i) for i in range(len(labels))):
            raise ModelLoadError(
                f"{model_dir / 'config.json'}: id2label does not list the {len(labels)} labels of its schema.yaml"
            )
        config_labels = [id2label[str(i)] for i in range(len(labels))]
        if config_labels != labels:
            raise ModelLoadError(
                f"{model_dir}: config.json labels {config_labels} differ from its schema.yaml {labels}"
            )
        try:
            thresholds = load_thresholds(model_dir, labels)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
        max_length, head_tokens = _truncation(parsed.get("run_config.json"))
        bundle = ModelBundle(
            path=model_dir,
            reference=str(model),
            schema=model_schema,
            thresholds=thresholds,
            max_length=max_length,
            head_tokens=head_tokens,
            metrics=read_metrics(model_dir),
        )
    if schema is not None:
        wanted = _schema(Path(schema)).names
        if wanted != bundle.labels:
            raise ModelLoadError(
                f"{bundle.path} was trained on the labels {bundle.labels}, but the schema in use ({schema}) has "
                f"{wanted}: serve a model trained on that schema, or drop --schema/{SCHEMA_ENV}"
            )
    return bundle
