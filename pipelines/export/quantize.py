"""int8 graphs: the frame graph's weight matrices quantized by onnxruntime's dynamic quantization.

``quantize_dynamic`` stores each chosen MatMul/Gemm weight as int8 with a scale per output channel
and quantizes that layer's input to uint8 on the fly, per call (no calibration data). Chosen: the
matrices of the model's own layers (input projection, every mixer's projections, the head), i.e. the
MatMul/Gemm nodes with a constant weight, except those the log-mel's ``Log`` depends on: its DFT and
mel filterbank stay float32, since a power spectrum spans ten decades, which an 8-bit activation
cannot hold. The chunk graph is then built around the quantized frame graph (``graphs.chunk_graph``),
so both precisions compute frame for frame what their frame graph does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

log = logging.getLogger("ssm_signal.pipelines")

METHOD = {"method": "dynamic", "weights": "int8, per output channel", "activations": "uint8, per call",
          "ops": ["MatMul", "Gemm"], "kept_float32": "the frontend (DFT, mel filterbank)"}


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
