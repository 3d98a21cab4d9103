"""Export the transformer of a trained model to ONNX with ``torch.onnx.export`` (fp32).

The file has inputs ``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes)
and output ``logits``; :mod:`givetake.training.fusion` and :mod:`givetake.training.quantize` then
rewrite it, and :mod:`givetake.training.export` runs the whole pipeline.

torch and transformers are imported inside :func:`export_onnx`: they take seconds to import, and
the CLI imports this module for every command.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from givetake.errors import GivetakeError

OPSET = 18


class ExportError(GivetakeError, RuntimeError):
    """A model cannot be exported or checked as asked; the message says what to do."""


def export_onnx(model_dir: Path, path: Path) -> None:
    """Export the transformer of ``model_dir`` to ``path``: inputs ``input_ids`` and ``attention_mask``
    (int64, dynamic batch and sequence axes), output ``logits``.

    Uses the torch.export-based exporter: in this torch/transformers pair the legacy
    TorchScript exporter traces the attention mask wrongly (logits off by up to 0.9).
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=False
    ).eval()

    class Logits(torch.nn.Module):
        """The classifier as a function of token ids and mask, returning only the logits."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    # Sizes above 1 so torch.export does not specialise the batch or sequence axis to a constant.
    input_ids = torch.full((2, 8), 1, dtype=torch.long)
    attention_mask = torch.ones((2, 8), dtype=torch.long)
    attention_mask[1, 5:] = 0
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with quiet_exporters(), warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                Logits(model),
                (input_ids, attention_mask),
                dynamo=True,
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_shapes=({0: batch, 1: sequence}, {0: batch, 1: sequence}),
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
        if program is None:  # pragma: no cover - the dynamo exporter always returns a program
            raise ExportError(f"{model_dir}: torch.onnx.export returned nothing")
        program.save(str(path), external_data=False)
    except ExportError:
        raise
    except Exception as exc:  # the exporter raises many types; the message is what matters
        raise ExportError(f"{model_dir}: ONNX export failed ({type(exc).__name__}: {exc})") from exc


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Hold the exporter's and graph rewriter's loggers to errors: they narrate every pass at INFO."""
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
