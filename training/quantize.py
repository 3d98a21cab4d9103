"""Dynamic int8 quantisation of an ONNX graph (ONNX Runtime's ``quantize_dynamic``).

``onnxruntime.quantization`` is imported inside :func:`quantize_int8`: it pulls in onnx and
sympy and takes seconds, and the CLI imports this module for every command.
"""

from __future__ import annotations

import logging
from pathlib import Path


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst``.

    Weights become int8 with one scale per output channel (per_channel=True) over the full int8
    range (reduce_range=False, which is for CPUs without VNNI); activations are quantised on the
    fly, batch by batch. One scale per whole tensor was measured on the gold dev set (1,393 real
    posts) to agree with torch on only 98.7% of label decisions and to lose 0.010 macro-F1;
    per-channel scales agreed on 99.6% and lost 0.001 at most.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint meant for static quantisation
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
    finally:
        root.setLevel(level)
