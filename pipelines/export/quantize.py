"""int8 graphs: the frame graph's weight matrices quantized by onnxruntime's dynamic quantization.

``quantize_dynamic`` stores each chosen MatMul/Gemm weight as int8 with a scale per output channel
and quantizes that layer's input to uint8 on the fly, per call (no calibration data). Chosen: the
matrices of the model's own layers (input projection, every mixer's projections, the head), i.e. the
MatMul/Gemm nodes with a constant weight, except those the log-mel's ``Log`` depends on: its DFT and
mel filterbank stay float32, since a power spectrum spans ten decades, which an 8-bit activation
cannot hold. The float32 constants left are then stored small (:func:`compact_constants`: the mel
filterbank as int8 weights, the rest as float16, cast back at load), so the file is under a third of
the float32 one for the default keyword model (the graph's own structure is a fixed cost). The chunk
graph is built around the quantized frame graph (``graphs.chunk_graph``), so both precisions compute
frame for frame what their frame graph does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

log = logging.getLogger("ssm_signal.pipelines")

METHOD = {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8, per output channel",
          "activations": "uint8, per call", "ops": ["MatMul", "Gemm"],
          "frontend": "float32 compute; the mel filterbank stored int8 per column (weight-only)",
          "other constants": "stored float16, cast to float32 at load"}


def frontend_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes that a ``Log`` depends on (the log-mel's DFT and filterbank)."""
    g = model.graph
    producer = {out: n for n in g.node for out in n.output}
    frontend, todo = set(), [n for n in g.node if n.op_type == "Log"]
    while todo:  # every node a Log depends on
        n = todo.pop()
        for i in n.input:
            if i in producer and producer[i].name not in frontend:
                frontend.add(producer[i].name)
                todo.append(producer[i])
    return [n.name for n in g.node if n.op_type in ("MatMul", "Gemm") and n.name in frontend]


def quantize_int8(src: Path, dst: Path) -> None:
    """Quantize the frame graph ``src`` into ``dst``."""
    # named by exclusion: the quantizer renames the Gemm nodes it rewrites, so a list of nodes to
    # quantize would match none of them
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=frontend_matmuls(onnx.load(str(src))))
    model = onnx.load(str(dst))
    compact_constants(model)
    del model.graph.value_info[:]  # the quantizer's intermediate shapes (onnxruntime infers them)
    onnx.save(model, str(dst))


def compact_constants(model: onnx.ModelProto, min_elements: int = 64) -> None:
    """The float32 constants the quantizer left, stored small and turned back into float32 by Cast (and
    Mul) nodes of constants, which onnxruntime folds once, at load (no cost per call):

    - the frontend's matrices (the mel filterbank: it weighs the power spectrum) as int8 with one scale
      per column: weight-only, the power spectrum stays float32 (see the module docstring); a triangle's
      values lose at most 0.4 % of its peak. Not ``DequantizeLinear``: onnxruntime fuses that with the
      MatMul into a kernel that quantizes the activations too (1e-3 relative error on a power spectrum);
    - every other float32 constant of ``min_elements`` or more (convolution taps, norm weights, the
      window, the weights' scales) as float16: 5e-4 relative rounding, a tenth of int8's.
    """
    g = model.graph
    frontend = {n.input[1] for n in g.node if n.name in set(frontend_matmuls(model)) and n.op_type == "MatMul"}
    casts = []
    for t in list(g.initializer):
        if t.data_type != onnx.TensorProto.FLOAT or np.prod(t.dims) < min_elements:
            continue
        w = numpy_helper.to_array(t)
        g.initializer.remove(t)
        name = t.name
        if name in frontend and w.ndim == 2:
            scale = np.abs(w).max(axis=0) / 127  # (N,): per column
            scale[scale == 0] = 1.0
            g.initializer.extend([numpy_helper.from_array(np.round(w / scale).astype(np.int8), name + "_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), name + "_scale")])
            casts += [helper.make_node("Cast", [name + "_int8"], [name + "_float"], to=onnx.TensorProto.FLOAT),
                      helper.make_node("Mul", [name + "_float", name + "_scale"], [name])]
        else:
            g.initializer.append(numpy_helper.from_array(w.astype(np.float16), name + "_float16"))
            casts.append(helper.make_node("Cast", [name + "_float16"], [name], to=onnx.TensorProto.FLOAT))
    for node in reversed(casts):  # first in the graph: every consumer comes after
        g.node.insert(0, node)
