"""Constants folded before and after tracing, so that the exported step has fewer nodes.

A frame step of the default keyword model is a few thousand multiply-adds spread over about 150 graph
nodes; onnxruntime spends more on running each node than on its arithmetic (docs/performance.md). Two
per-frame affine maps sit next to a matrix product and fold into it exactly (up to float32 rounding):

- the frontend's normalisation ``(f - mean) / std`` into the input projection ``W f + b`` that follows:
  ``W' = W / std`` (per input column), ``b' = b - W' mean``; and with it the log-mel's cepstral smoothing
  ``f = L g`` (``frontend.cepstra``), a constant matrix before it: ``W'' = W' L``;
- Mamba-2's step-size bias ``Δ + dt_bias`` into its input projection's Δ rows (a bias the layer's
  projection otherwise lacks).

:func:`folded` does this on a copy of the model, leaving ``mean = 0``, ``std = 1`` and ``dt_bias = 0``;
:func:`drop_identity_arithmetic` then removes from the exported graph the nodes that add or subtract a
constant zero, or multiply or divide by a constant one, where that does not change the other operand's shape,
:func:`widen_matmul_biases` writes a scalar added to a product as a vector, which onnxruntime fuses with it, and
:func:`gemm_residuals` takes a residual sum into the Gemm before it.
The bundle's weights are untouched; the parity tests hold the exported graph to the torch model.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from onnx import helper as h
from torch import nn

from ssm_signal.layers.mamba2 import Mamba2
from ssm_signal.models import SignalModel
from ssm_signal.models.heads import AnomalyHead


@torch.no_grad()
def folded(model: SignalModel) -> SignalModel:
    """A copy of ``model`` with the normalisation and Mamba-2's ``dt_bias`` folded into the projections that
    read them. The anomaly head compares its forecasts with the normalised features themselves, so with it
    the normalisation stays."""
    m = copy.deepcopy(model)
    fe, proj = m.frontend, m.input_proj
    if not isinstance(m.head, AnomalyHead) and hasattr(fe, "mean") and isinstance(proj, nn.Linear):
        scale = 1.0 / fe.std.to(proj.weight.dtype)
        proj.weight.mul_(scale[None, :])
        proj.bias.sub_(proj.weight @ fe.mean.to(proj.weight.dtype))
        fe.mean.zero_()
        fe.std.fill_(1.0)
        if getattr(fe, "cepstra", 0):  # the log-mel's smoothing L (symmetric) comes before: W L
            proj.weight.copy_(proj.weight @ fe.lifter.to(proj.weight.dtype))
            fe.cepstra = 0
    for layer in m.modules():
        if isinstance(layer, Mamba2):
            inp = layer.in_proj
            with_bias = nn.Linear(inp.in_features, inp.out_features, bias=True).to(inp.weight)
            with_bias.weight.copy_(inp.weight)
            with_bias.bias.copy_(inp.bias if inp.bias is not None else torch.zeros_like(with_bias.bias))
            _, _, dt_rows = layer._split(with_bias.bias)  # the layer's own layout of z, xBC, Δ (views)
            dt_rows += layer.dt_bias.to(dt_rows.dtype)
            layer.in_proj = with_bias
            layer.dt_bias.zero_()
    return m


IDENTITY = {"Add": 0.0, "Sub": 0.0, "Mul": 1.0, "Div": 1.0}


def drop_identity_arithmetic(model: onnx.ModelProto) -> int:
    """Remove, in place, nodes ``x + 0``, ``x - 0``, ``x * 1``, ``x / 1`` (and ``0 + x``, ``1 * x``) with the
    constant an initializer, where shape inference shows the output has ``x``'s shape (the constant does not
    broadcast it up). Returns how many were removed."""
    graph = model.graph
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    shapes = _shapes(model)
    outputs = {v.name for v in graph.output}
    removed = 0
    for node in list(graph.node):
        if node.op_type not in IDENTITY or len(node.input) != 2 or node.output[0] in outputs:
            continue
        sides = [1, 0] if node.op_type in ("Add", "Mul") else [1]  # which input may be the constant
        for c in sides:
            value = consts.get(node.input[c])
            x = node.input[1 - c]
            if value is None or not np.all(value == IDENTITY[node.op_type]):
                continue
            if shapes.get(x) is None or shapes.get(x) != shapes.get(node.output[0]):
                continue
            for other in graph.node:  # consumers read x instead
                other.input[:] = [x if i == node.output[0] else i for i in other.input]
            graph.node.remove(node)
            removed += 1
            break
    _drop_unused_initializers(graph)
    return removed


def widen_matmul_biases(model: onnx.ModelProto) -> int:
    """``MatMul(a, W) + c`` with ``c`` a constant scalar -> the same with ``c`` repeated to W's N columns, in
    place, so that onnxruntime fuses the pair into one Gemm (it fuses only a bias of W's width). The log-mel's
    ``log(mel + eps)`` is one such. Returns how many."""
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    shapes = _shapes(model)
    widened = 0
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for c in (1, 0):
            t, mm = consts.get(node.input[c]), producer.get(node.input[1 - c])
            shape = shapes.get(node.input[1 - c])
            if t is None or mm is None or mm.op_type != "MatMul" or not shape or not isinstance(shape[-1], int):
                continue
            value = onnx.numpy_helper.to_array(t)
            if value.size != 1:
                continue
            n_out = shape[-1]
            name = f"{node.input[c]}_x{n_out}"
            graph.initializer.append(onnx.numpy_helper.from_array(np.full(n_out, value.reshape(()), value.dtype), name))
            node.input[c] = name
            widened += 1
            break
    _drop_unused_initializers(graph)
    return widened


def gemm_residuals(model: onnx.ModelProto) -> int:
    """``Gemm(a, W) + r`` -> ``Gemm(a, W, r)``, in place, where the Gemm has no bias and feeds only that Add and
    ``r`` has the product's shape: a block's output projection and its residual sum in one node (Gemm's third
    input may be any tensor; onnxruntime does not fuse the pair itself). Returns how many."""
    graph = model.graph
    shapes = _shapes(model)
    nodes = [onnx.NodeProto() for _ in graph.node]  # copies, edited and reordered, written back once
    for copy_, n in zip(nodes, graph.node, strict=True):
        copy_.CopyFrom(n)
    producer = {out: n for n in nodes for out in n.output}
    uses: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {v.name for v in graph.output}
    fused = 0
    for add in [n for n in nodes if n.op_type == "Add" and len(n.input) == 2]:
        for g_side in (0, 1):
            gemm, r = producer.get(add.input[g_side]), add.input[1 - g_side]
            if (gemm is None or gemm.op_type != "Gemm" or len(gemm.input) != 2 or uses.get(gemm.output[0]) != 1
                    or gemm.output[0] in outputs or shapes.get(r) is None
                    or shapes.get(r) != shapes.get(gemm.output[0])):
                continue
            attrs = {a.name: onnx.AttributeProto.FromString(a.SerializeToString()) for a in gemm.attribute}
            if "alpha" in attrs and attrs["alpha"].f != 1.0:
                continue
            gemm.input.append(r)
            del gemm.attribute[:]
            gemm.attribute.extend([a for name, a in attrs.items() if name != "beta"] + [h.make_attribute("beta", 1.0)])
            gemm.output[0] = add.output[0]
            # the Gemm moves to the Add's place, after r is computed, so the nodes stay in topological order
            g_at = next(i for i, n in enumerate(nodes) if n is gemm)
            del nodes[g_at]
            nodes[next(i for i, n in enumerate(nodes) if n is add)] = gemm
            fused += 1
            break
    del graph.node[:]
    graph.node.extend(nodes)
    return fused


def _shapes(model: onnx.ModelProto) -> dict[str, tuple | None]:
    """Every value's shape by onnx shape inference (:func:`_dims`): {name: shape or None}."""
    g = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: _dims(v) for v in list(g.value_info) + list(g.input) + list(g.output)}


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)


def _dims(value: onnx.ValueInfoProto) -> tuple | None:
    """A value's shape as a tuple of sizes and symbolic names, or None if any dimension is unknown."""
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            return None
    return tuple(out)
