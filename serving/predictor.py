"""The one predictor behind HTTP serving, archive scoring and evaluation.

``Predictor`` loads a saved model (a ``models/<run>`` directory or a BentoML store tag such as
``givetake:latest``) with the label schema and thresholds it was trained with, and turns texts
into predictions: per text the labels at or above their thresholds, an independent sigmoid
probability for every label, and whether the text was truncated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labels.schema import Schema, load_schema
from training.lexical import LexicalModel, has_lexical
from training.store import resolve_model
from training.text import normalize
from training.thresholds import load_thresholds


class ModelLoadError(RuntimeError):
    """A model directory is unusable; the message names the path and the problem."""


def _max_length(model_dir: Path) -> int:
    try:
        cfg = json.loads((model_dir / "run_config.json").read_text(encoding="utf-8"))
        return int(cfg["model"]["max_length"])
    except (OSError, KeyError, ValueError, TypeError):
        return 128


class Predictor:
    """Scores texts with a saved givetake model (torch engine)."""

    def __init__(self, model: str | Path, batch_size: int = 32, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers import logging as hf_logging

        from training.train import available_cores

        hf_logging.set_verbosity_error()
        self.model_dir = resolve_model(model)
        self.reference = str(model)
        self.schema: Schema = load_schema(self.model_dir / "schema.yaml")
        self.labels: list[str] = self.schema.names
        self.thresholds = load_thresholds(self.model_dir, self.labels)
        self.max_length = _max_length(self.model_dir)
        self.batch_size = batch_size
        if any(self.model_dir.glob("*.bin")) or any(self.model_dir.glob("*.pkl")):
            raise ModelLoadError(f"{self.model_dir} holds a pickle file (*.bin/*.pkl); only safetensors are loaded")
        torch.set_num_threads(threads or available_cores())
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=False)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                self.model_dir, use_safetensors=True, trust_remote_code=False
            ).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{self.model_dir}: cannot load model ({exc})") from exc
        id2label = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        if id2label != self.labels:
            raise ModelLoadError(
                f"{self.model_dir}: config.json labels {id2label} differ from its schema.yaml {self.labels}"
            )
        self.lexical: LexicalModel | None = None
        self.lexical_weight = 0.0
        if has_lexical(self.model_dir):
            try:
                self.lexical, weight = LexicalModel.load(self.model_dir)
            except (OSError, ValueError, KeyError) as exc:
                raise ModelLoadError(f"{self.model_dir}: cannot load the lexical half ({exc})") from exc
            if self.lexical.label_names != self.labels:
                raise ModelLoadError(f"{self.model_dir}: lexical.json labels differ from its schema.yaml")
            self.lexical_weight = float(weight or 0.0)

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text, cut to ``max_length`` (keeping the closing special token)."""
        ids = self.tokenizer([normalize(t) for t in texts], truncation=False)["input_ids"]
        out, truncated = [], []
        for seq in ids:
            cut = len(seq) > self.max_length
            out.append(seq[: self.max_length - 1] + seq[-1:] if cut else seq)
            truncated.append(cut)
        return out, truncated

    def predict_proba(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """Sigmoid probabilities, shape (len(texts), len(labels)), and the truncation flags.

        When the model has a lexical half, each probability is the weighted mean of the
        transformer's and the TF-IDF model's independent per-label probabilities.

        Texts are sorted by length and padded per batch, so a long post does not make every
        short post in its batch pay for its padding.
        """
        import torch

        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        ids, truncated = self._encode(texts)
        order = np.argsort([len(s) for s in ids], kind="stable")
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
                logits = self.model(**batch).logits
                probs[chunk] = torch.sigmoid(logits.float()).numpy()
        if self.lexical is not None and self.lexical_weight > 0:
            lexical = self.lexical.predict_proba(texts)
            probs = ((1 - self.lexical_weight) * probs + self.lexical_weight * lexical).astype(np.float32)
        return probs, truncated

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """For each text: ``labels`` (at or above threshold), ``scores`` per label, ``truncated``."""
        probs, truncated = self.predict_proba(texts)
        cut = np.array([self.thresholds[n] for n in self.labels])
        return [
            {
                "labels": [n for n, on in zip(self.labels, row >= cut) if on],
                "scores": {n: round(float(p), 4) for n, p in zip(self.labels, row)},
                "truncated": trunc,
            }
            for row, trunc in zip(probs, truncated)
        ]
