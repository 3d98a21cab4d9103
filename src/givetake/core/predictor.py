"""The one predictor behind HTTP serving, archive scoring and evaluation.

``Predictor`` loads a saved model (a ``models/<run>`` directory or a BentoML store tag such as
``givetake:latest``) with the label schema and thresholds it was trained with, and turns texts
into predictions: per text the labels at or above their thresholds, an independent sigmoid
probability for every label, and whether the text was truncated.

The transformer half runs on one of three engines: ``torch`` (the saved weights), ``onnx`` (the
same network exported to ONNX, run by ONNX Runtime) or ``onnx-int8`` (that export with int8
weights, dynamic quantisation). ``givetake export`` writes the ONNX files and checks each one
against torch; only an engine that passed is picked by ``auto``, and asking for one that did not
is an error. The lexical half, thresholds and truncation are the same whatever the engine.

Each engine's library is imported when that engine is loaded, on purpose: torch and transformers
take seconds and hundreds of MB, which the ONNX engines (what the server runs) never need, and
onnxruntime is not needed by the torch engine; ``tokenizers`` goes with the light tokenizer path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from givetake.core.bundle import ENGINE_CHOICES, ENGINE_ENV, ENGINE_FILES, ENGINES, ModelBundle, open_model
from givetake.core.lexical import LexicalModel, has_lexical
from givetake.core.resources import available_cores
from givetake.core.text import normalize, truncate_ids
from givetake.errors import ModelLoadError
from givetake.labels.schema import Schema

__all__ = ["ENGINES", "ENGINE_CHOICES", "ENGINE_ENV", "ENGINE_FILES", "ModelLoadError", "Predictor"]

SPIN_ENV = "GIVETAKE_ORT_SPIN"
# Padded tokens per forward pass (see Predictor._batches); the measurements behind 512 are in
# bench/RESULTS.md (engine runs): 512 and 256 measured alike, 1024 slower.
TOKEN_BUDGET = 512
# The cost model of Predictor._batches, fitted by timing the int8 MiniLM on one thread for 1-32 rows
# of 8-128 tokens: a pass costs a fixed overhead worth PASS_COST_TOKENS padded tokens, and a token's
# cost grows with the width by width/ATTENTION_WIDTH (attention).
PASS_COST_TOKENS = 10.0
ATTENTION_WIDTH = 186.0


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50))), dtype=np.float32)


class Predictor:
    """Scores texts with a saved givetake model on the torch, onnx or onnx-int8 engine.

    ``engine`` is ``auto`` (the default, also read from ``$GIVETAKE_ENGINE``), ``torch``, ``onnx``
    or ``onnx-int8``; :attr:`engine` is the one running. ``threads`` defaults to the cores this
    process may use. ``spin``: whether ONNX Runtime's idle threads spin between operators (faster
    when the engine has the cores to itself); default ``$GIVETAKE_ORT_SPIN`` (0 or 1), else yes.
    ``calls``: how many :meth:`predict` calls the caller makes at once, from as many threads (at
    most ``threads``). With more than one, each ONNX call runs on its caller's thread alone; torch
    cannot share out its threads, so :attr:`calls` is 1 there and calls should not overlap.
    ``unchecked`` lets ``givetake export`` load an ONNX file before its parity check has been recorded.
    """

    def __init__(
        self,
        model: str | Path | ModelBundle,
        batch_size: int = 32,
        threads: int | None = None,
        engine: str | None = None,
        unchecked: bool = False,
        spin: bool | None = None,
        calls: int = 1,
    ) -> None:
        self.bundle = open_model(model)
        self.model_dir = self.bundle.path
        self.reference = self.bundle.reference
        self.schema: Schema = self.bundle.schema
        self.labels: list[str] = self.schema.names
        self.thresholds = self.bundle.thresholds
        self.max_length, self.head_tokens = self.bundle.max_length, self.bundle.head_tokens
        self.batch_size = batch_size
        self.threads = threads or available_cores()
        if calls < 1:
            raise ValueError("calls must be at least 1")
        self.spin = spin if spin is not None else os.environ.get(SPIN_ENV, "1").strip() != "0"
        if unchecked and engine in ENGINE_FILES:
            self.engine = engine
            if not (self.model_dir / ENGINE_FILES[engine]).is_file():
                raise ModelLoadError(f"{self.model_dir / ENGINE_FILES[engine]} does not exist")
        else:
            self.engine = self.bundle.engine(engine)
        self._load_tokenizer(light=self.engine != "torch")
        self.model: Any = None
        self.session: Any = None
        self.calls = 1 if self.engine == "torch" else min(calls, self.threads)
        if self.engine == "torch":
            self._load_torch()
        else:
            self._load_onnx(self.model_dir / ENGINE_FILES[self.engine])
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

    _tokenize: Callable[[list[str]], list[list[int]]]
    pad_id: int

    def _load_tokenizer(self, light: bool) -> None:
        """The tokenizer as ``self._tokenize`` (texts -> token ids) and the padding id.

        ``light``: read ``tokenizer.json`` with the ``tokenizers`` library alone, when there is one.
        transformers' AutoTokenizer wraps the same file but imports torch (about 220 MB and
        seconds of start-up), which the ONNX engines do not need; their parity check against
        torch, which tokenizes with AutoTokenizer, covers the tokenizer too.
        """
        path = self.model_dir / "tokenizer.json"
        if light and path.is_file():
            from tokenizers import Tokenizer

            try:
                fast = Tokenizer.from_file(str(path))
            except Exception as exc:  # tokenizers raises a bare Exception for a bad file
                raise ModelLoadError(f"{path}: cannot load the tokenizer ({exc})") from exc
            try:
                config = json.loads((self.model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                config = {}
            fast.no_truncation()  # truncation is done in _encode, keeping the closing token
            fast.no_padding()  # padding is done per batch in _pad
            pad = config.get("pad_token")
            pad = pad.get("content") if isinstance(pad, dict) else pad
            self.pad_id = int(fast.token_to_id(pad) or 0) if isinstance(pad, str) else 0
            self._tokenize = lambda texts: [e.ids for e in fast.encode_batch(texts)]
            return
        from transformers import AutoTokenizer
        from transformers import logging as hf_logging

        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{self.model_dir}: cannot load the tokenizer ({exc})") from exc
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self._tokenize = lambda texts: tokenizer(texts, truncation=False)["input_ids"]

    def _load_torch(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification
        from transformers import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars on every load
        torch.set_num_threads(self.threads)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                self.model_dir, use_safetensors=True, trust_remote_code=False
            ).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{self.model_dir}: cannot load model ({exc})") from exc

    def _load_onnx(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One call spreads over every core; concurrent calls (self.calls > 1) run one per caller's
        # thread, as the pool of intra_op_num_threads - 1 threads would be shared between them.
        options.intra_op_num_threads = self.threads if self.calls == 1 else 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Between operators, idle pool threads spin (self.spin) or sleep. Spinning is faster for the
        # engine alone (torch's OpenMP threads spin too), but a spinning thread takes a core from
        # whatever else runs: beside an HTTP server on the same cores it cost latency, so the
        # service asks for sleeping threads (figures: bench/RESULTS.md, "Moved from code comments").
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise ModelLoadError(
                f"{path}: cannot load ONNX model ({exc}); re-create it with `givetake export`"
            ) from None
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != {"input_ids", "attention_mask"}:
            raise ModelLoadError(f"{path}: expected inputs input_ids and attention_mask, found {sorted(inputs)}")

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text, cut to ``max_length``: the first ``head_tokens`` and the rest from the end."""
        ids = self._tokenize([normalize(t) for t in texts])
        out = [truncate_ids(seq, self.max_length, self.head_tokens) for seq in ids]
        return out, [len(seq) > self.max_length for seq in ids]

    def _pad(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded to the longest of ``seqs``."""
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return input_ids, mask

    def _batches(self, ids: list[list[int]]) -> list[list[int]]:
        """Indices of ``ids`` in forward passes: sorted by length, then cut where padding costs more
        than another pass, with at most ``batch_size`` texts and, beyond one text, at most
        ``TOKEN_BUDGET`` padded tokens each.

        A pass costs about a fixed ``PASS_COST_TOKENS`` plus its padded tokens, each dearer as the
        pass gets wider (attention): the cuts minimise that sum over the sorted texts (dynamic
        programming, ``batch_size`` steps per text). Real posts mix 5-token replies with 120-token
        threads, and a few posts padded to the longest of them cost several times their own length.
        Measured faster on real posts than cutting only at ``TOKEN_BUDGET``, which was itself faster
        than one pass per call (bench/RESULTS.md, "Moved from code comments").
        """
        order = np.argsort([len(s) for s in ids], kind="stable").tolist()
        lengths = [len(ids[i]) for i in order]
        # best[j]: the least cost of passes over the j shortest texts; start[j]: where its last pass starts.
        best = [0.0] + [float("inf")] * len(order)
        start = [0] * (len(order) + 1)
        for j in range(1, len(order) + 1):
            width = lengths[j - 1]  # the widest of any pass ending at j
            per_text = width * (1 + width / ATTENTION_WIDTH)
            for i in range(j - 1, max(0, j - self.batch_size) - 1, -1):
                rows = j - i
                if rows > 1 and rows * width > TOKEN_BUDGET:
                    break
                cost = best[i] + PASS_COST_TOKENS + rows * per_text
                if cost < best[j]:
                    best[j], start[j] = cost, i
        batches: list[list[int]] = []
        j = len(order)
        while j > 0:
            batches.append(order[start[j] : j])
            j = start[j]
        return batches[::-1]

    def _transformer_proba(self, ids: list[list[int]]) -> np.ndarray:
        """The transformer half's sigmoid probabilities, batch by batch in order of length."""
        probs = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        batches = self._batches(ids)
        if self.session is not None:
            for chunk in batches:
                input_ids, mask = self._pad([ids[i] for i in chunk])
                logits = self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
                probs[chunk] = _sigmoid(logits)
            return probs
        import torch

        with torch.inference_mode():
            for chunk in batches:
                input_ids, mask = self._pad([ids[i] for i in chunk])
                logits = self.model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits
                probs[chunk] = torch.sigmoid(logits.float()).numpy()
        return probs

    def predict_proba(self, texts: list[str], lexical: bool = True) -> tuple[np.ndarray, list[bool]]:
        """Sigmoid probabilities, shape (len(texts), len(labels)), and the truncation flags.

        When the model has a lexical half (and ``lexical``), each probability is the weighted mean
        of the transformer's and the TF-IDF model's independent per-label probabilities.

        Texts are sorted by length and padded per batch, and a batch holds at most
        ``TOKEN_BUDGET`` padded tokens, so a long post does not make short posts pay for its padding.
        """
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        ids, truncated = self._encode(texts)
        probs = self._transformer_proba(ids)
        if lexical and self.lexical is not None and self.lexical_weight > 0:
            words = self.lexical.predict_proba(texts)
            probs = ((1 - self.lexical_weight) * probs + self.lexical_weight * words).astype(np.float32)
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
