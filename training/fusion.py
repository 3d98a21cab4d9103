"""Fuse an exported ONNX graph into ONNX Runtime's transformer operators (onnxscript's rewriter).

onnx_ir and onnxscript are imported inside the functions: they load onnx and take about a second,
and the CLI imports this module (through :mod:`givetake.training.export`) for every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from givetake.training.onnx_export import quiet_exporters


def fuse_for_ort(path: Path) -> dict[str, int]:
    """Rewrite the exported graph at ``path`` in place with ONNX Runtime's fused transformer operators.

    The torch.export graph spells attention, layer norm and GELU out in dozens of small operators,
    each a separate pass over memory and a separate hand-over between threads. onnxscript's
    rewriter replaces them with ``MultiHeadAttention``, ``SkipLayerNormalization`` and
    ``BiasGelu``. Attention is fused up to ``MultiHeadAttention`` only, leaving the Q/K/V
    projections as plain MatMuls: the fuller ``Attention`` operator carries those weights inside
    it, where dynamic quantisation does not reach them, and int8 with ``MultiHeadAttention`` measured
    faster than with ``Attention`` (bench/RESULTS.md, "ONNX graph fusion").

    Returns the count of each fusion applied; empty when attention did not fuse, and the graph
    is then left as it was.
    """
    import onnx_ir as ir

    with quiet_exporters():
        return _fuse(ir.load(str(path)), path)


def _fuse(model: Any, path: Path) -> dict[str, int]:
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import ORT_PATTERN_REWRITE_RULES, shape_optimization
    from onnxscript.rewriter.ort_fusions.bias_gelu import fuse_bias_gelu
    from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu
    from onnxscript.rewriter.ort_fusions.mha import fuse_mha1, fuse_mha2
    from onnxscript.rewriter.ort_fusions.mha_bias import fuse_mha_bias
    from onnxscript.rewriter.ort_fusions.mha_scale import fuse_mha_scale
    from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa
    from onnxscript.rewriter.ort_fusions.skip_normalization import fuse_skip_layer_normalization

    # The order of onnxscript's own optimize_for_ort, without the rotary/GQA/RMS rules (not in
    # BERT) and without the final Attention fusion.
    common_passes.ShapeInferencePass()(model)
    optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimize(model)
    counts = {
        "erf_gelu": fuse_erfgelu(model),
        "skip_layer_normalization": fuse_skip_layer_normalization(model),
    }
    common_passes.CommonSubexpressionEliminationPass()(model)
    counts |= {
        "sdpa": fuse_sdpa(model, apply_shape_inference=True),
        "mha": fuse_mha1(model) + fuse_mha2(model),
        "mha_scale": fuse_mha_scale(model),
        "mha_bias": fuse_mha_bias(model),
        "bias_gelu": fuse_bias_gelu(model),
    }
    if not counts["mha"]:
        return {}
    optimize(model)
    rewrite(model, ORT_PATTERN_REWRITE_RULES)
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1)(model)
    common_passes.RemoveInitializersFromInputsPass()(model)
    common_passes.ShapeInferencePass()(model)
    ir.save(model, str(path))
    return counts
