"""int8 graphs: the frame graph's wide weight matrices quantized by onnxruntime's dynamic quantization,
every other weight matrix stored int8 and computed in float32.

``quantize_dynamic`` stores each chosen MatMul/Gemm weight as int8 with a scale per output channel
and quantizes that layer's input to uint8 on the fly, per call (no calibration data). Chosen: the
matrices of the model's own layers whose input is :data:`MIN_QUANTIZED_INPUT` wide or wider: there
the int8 product clearly pays on a CPU thread (onnxruntime 1.32, per product: 384 -> 64 3.8 us
faster, 256 -> 1024 25 us faster). At narrower inputs quantizing the input costs about what the
product saves (40 -> 64, 128 -> 64 and 64 -> 22: 1.0-1.5 us slower; 64 -> 292: 1.1 us faster, within a
shared machine's noise; ``benchmarks/bench_onnx.py``'s ``int8_products``). So the default keyword model (d_model 64: inputs 40 to 128 wide) has
no product quantized, and a model of d_model 256 has its projections quantized. Never chosen: the
matrices a ``Log`` depends on (the log-mel's DFT and filterbank), since a power spectrum spans ten
decades, which an 8-bit activation cannot hold.

The float32 constants left are then stored small (:func:`compact_constants`): the weight matrices not
quantized (the narrow projections, the head, the mel filterbank) as int8 weights with a scale per
output channel, computed in float32 (weight-only), the rest as float16, cast back at load, so the
file is under a third of the float32 one for the default keyword model. The chunk graph is quantized
the same way where it is the model's parallel forward, and built around the quantized frame graph where it
scans it (``graphs``): both choose the same matrices by the same rule.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

log = logging.getLogger("ssm_signal.pipelines")

# the narrowest input (elements per row) whose product dynamic quantization speeds up (module docstring)
MIN_QUANTIZED_INPUT = 256

METHOD = {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8, per output channel",
          "activations": "uint8, per call", "ops": ["MatMul", "Gemm"],
          "quantized": f"weight matrices with inputs {MIN_QUANTIZED_INPUT} wide or wider, outside the frontend",
          "other weight matrices": "stored int8 per output channel (weight-only), float32 compute",
          "convolution weights": "stored int8 per output channel (weight-only), float32 compute",
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


def weight_matrices(model: onnx.ModelProto) -> dict[str, tuple[str, int]]:
    """{node name: (weight initializer, its output-channel axis)} of the MatMul/Gemm nodes whose second
    input is a 2-D float32 initializer (MatMul's (in, out): axis 1; Gemm's, (out, in) with transB: 0);
    the other axis is the input's width."""
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        t = inits.get(n.input[1]) if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 else None
        if t is None or t.data_type != onnx.TensorProto.FLOAT or len(t.dims) != 2:
            continue
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        out[n.name] = (t.name, 0 if n.op_type == "Gemm" and trans_b else 1)
    return out


def conv_weights(model: onnx.ModelProto) -> dict[str, int]:
    """{initializer: 0} for the float32 weight tensors of Conv nodes ((out, in / groups, *kernel): output
    channels on axis 0)."""
    inits = {t.name: t for t in model.graph.initializer}
    return {n.input[1]: 0 for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and n.input[1] in inits and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT}


def quantize_int8(src: Path, dst: Path) -> None:
    """Quantize the graph ``src`` (a frame graph, or a parallel chunk graph) into ``dst``."""
    model = onnx.load(str(src))
    frontend = set(frontend_matmuls(model))
    inits = {t.name: t for t in model.graph.initializer}
    small = [n for n, (w, axis) in weight_matrices(model).items() if inits[w].dims[1 - axis] < MIN_QUANTIZED_INPUT]
    # named by exclusion, and a Gemm by its name with "_MatMul" too: the quantizer first rewrites every
    # Gemm as a MatMul so named (and an Add), so a list of nodes to quantize would match none of them
    exclude = frontend | set(small) | {n + "_MatMul" for n in small}
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=sorted(exclude))
    model = onnx.load(str(dst))
    compact_constants(model)
    del model.graph.value_info[:]  # the quantizer's intermediate shapes (onnxruntime infers them)
    onnx.save(model, str(dst))


def compact_constants(model: onnx.ModelProto, min_elements: int = 64) -> None:
    """The float32 constants the quantizer left, stored small and turned back into float32 by Cast (and
    Mul) nodes of constants, which onnxruntime folds once, at load (no cost per call):

    - the weight matrices of MatMul/Gemm nodes (those not quantized: the narrow projections, the head, the
      mel filterbank) and the weights of Conv nodes (the speech encoder's convolutions) as int8 with one scale
      per output channel: weight-only, their inputs stay float32 (the power spectrum, see the module
      docstring); a value loses at most 0.4 % of its channel's largest. Not ``DequantizeLinear``:
      onnxruntime fuses that with the MatMul into a kernel that quantizes the activations too (1e-3 relative
      error on a power spectrum);
    - every other float32 constant of ``min_elements`` or more (a Mamba layer's causal-convolution taps, which
      the export writes as products, norm weights, the window, the weights' scales) as float16: 5e-4
      relative rounding, a tenth of int8's.
    """
    g = model.graph
    matrices = {**dict(weight_matrices(model).values()), **conv_weights(model)}  # {initializer: out-channel axis}
    casts = []
    for t in list(g.initializer):
        if t.data_type != onnx.TensorProto.FLOAT or np.prod(t.dims) < min_elements:
            continue
        w = numpy_helper.to_array(t)
        g.initializer.remove(t)
        name = t.name
        if name in matrices:
            axis = matrices[name]
            others = tuple(a for a in range(w.ndim) if a != axis)
            scale = np.abs(w).max(axis=others, keepdims=True) / 127  # one per output channel
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
