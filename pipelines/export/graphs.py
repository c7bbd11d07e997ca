"""The model's frame step as ONNX graphs: one frame per call, and any number of frames per call.

- The frame graph is ``SignalModel._step`` itself (through ``FlatStep``, the wrapper AOTInductor
  compiles too; affine constants folded into the products next to them, :mod:`pipelines.export.fold`),
  exported by torch's ONNX exporter (``torch.onnx.export(dynamo=True)``: torch.export, then onnxscript)
  with the kernel backend ``export`` forced, whose log-mel power spectrum is real matmuls (ONNX has no
  complex type). The batch dimension is dynamic; the trace uses a batch of 2 so that no size-1
  dimension is taken for a constant.
- The chunk graph takes T whole frames per call (T free per call). Where the model's parallel forward
  exports (``SignalModel._forward`` through ``FlatForward``; e.g. the log-mel and sensor frontends with
  Mamba-2 layers), it is that forward, with the export backend's SSD (every contraction a MatMul over
  chunks of time): T frames cost one pass of a few hundred nodes, not T passes of the frame graph's.
  Elsewhere (Mamba-1, S4D, PCEN, the speech encoder: sequence forms that loop over a number of blocks that
  depends on the chunk's length, branch on it, or compute in complex numbers) it is the frame graph,
  unchanged, in an ONNX ``Scan`` over the frames:
  ``samples`` (B, T * samples_per_frame, C) is reshaped to (B, T, samples_per_frame, C), the state tensors
  are the scan's carried values and ``y`` is stacked along axis 1. Either way the two graphs compute the
  same function (the state contract; the export checks both against the torch model), and the sidecar names
  the chunk graph's form.

Input and output names: see :mod:`ssm_signal.runtime.sidecar`.
"""

from __future__ import annotations

import copy
import logging
import warnings

import onnx
import onnx.numpy_helper
import onnxscript.optimizer
import torch
from onnx import helper

from pipelines.export.fold import drop_identity_arithmetic, folded, gemm_residuals, widen_matmul_biases
from ssm_signal import kernels
from ssm_signal.models import SignalModel
from ssm_signal.runtime.sidecar import CHUNK_INPUT, FRAME_INPUT, OUTPUT, STATE_IN, STATE_OUT
from ssm_signal.streaming.step import FlatForward, FlatStep

log = logging.getLogger("ssm_signal.pipelines")

OPSET = 23  # 23: RMSNormalization, one node where opset 18 spells rms_norm out in seven
# constant folding at export stops at tables this large (elements): bigger ones, such as the DFT basis
# the log-mel computes from ranges, stay computed in the graph (onnxruntime folds them at load), so
# the file holds the weights and little else
FOLD_LIMIT = 4096
# a batch of 2 when tracing: torch.export specialises dimensions of size 1; and 3 frames for the chunk
# graph's trace (not 1, and not the batch's size, so that the two are not taken for one symbol)
TRACE_BATCH = 2
TRACE_FRAMES = 3


def state_layout(model: SignalModel) -> tuple[list[tuple[str, tuple[int, ...], str]], dict[str, int]]:
    """The model state's tensors as (name, shape without batch, dtype), in the graphs' order, and
    its tuple-length markers (``State.state_dict``'s ``__len__`` keys, with their values)."""
    with torch.no_grad():
        flat = model.init_state(1).state_dict()
    tensors = [(k, tuple(v.shape[1:]), str(v.dtype).removeprefix("torch.")) for k, v in flat.items()
               if not k.endswith(".__len__")]
    markers = {k: int(v) for k, v in flat.items() if k.endswith(".__len__")}
    return tensors, markers


def export_frame_graph(model: SignalModel) -> onnx.ModelProto:
    """``model._step`` as an ONNX graph (the model proto)."""
    frame = torch.zeros(TRACE_BATCH, model.samples_per_frame, model.in_channels)
    return _export(model, FlatStep, frame, {}, FRAME_INPUT)


def export_chunk_graph(model: SignalModel) -> onnx.ModelProto:
    """``model._forward`` over whole frames from phase 0 as an ONNX graph whose ``samples`` input takes any
    whole number of frames. Raises what the exporter raises where the model's sequence forms do not export."""
    hop = model.samples_per_frame
    samples = torch.zeros(TRACE_BATCH, TRACE_FRAMES * hop, model.in_channels)
    frames = torch.export.Dim("frames", min=2, max=1 << 24)
    proto = _export(model, FlatForward, samples, {1: hop * frames}, CHUNK_INPUT)
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "samples"  # the exporter's symbols: "5*s1"
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "frames"
    return proto


def _export(model: SignalModel, wrapper: type[torch.nn.Module], first: torch.Tensor, first_dims: dict,
            first_name: str) -> onnx.ModelProto:
    """``wrapper(folded(model))`` over (``first``, the state's tensors) as an ONNX graph, batch dynamic (and
    ``first``'s ``first_dims``), named ``first_name`` and the state names, with the graph passes below."""
    names = [n for n, _, _ in state_layout(model)[0]]
    with torch.no_grad():
        template = model.init_state(TRACE_BATCH)
    flat = tuple(t.clone() for t in template.tensors())
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dynamic = ({0: batch, **first_dims}, tuple({0: batch} for _ in flat))
    module = wrapper(folded(model), template).eval()
    with torch.no_grad(), kernels.use("export"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and progress chatter
        program = torch.onnx.export(
            module, (first, *flat), None, dynamo=True, dynamic_shapes=dynamic, opset_version=OPSET,
            input_names=[first_name] + [STATE_IN + n for n in names],
            output_names=[OUTPUT] + [STATE_OUT + n for n in names], verbose=False, optimize=False)
    onnxscript.optimizer.optimize(program.model, output_size_limit=FOLD_LIMIT)
    proto = program.model_proto
    _name_batch(proto.graph)
    unguarded_softplus(proto.graph)
    drop_identity_arithmetic(proto)
    widen_matmul_biases(proto)
    gemm_residuals(proto)
    return proto


def unguarded_softplus(graph: onnx.GraphProto) -> int:
    """``Where(Greater(x, t), x, Softplus(x))`` -> ``Softplus(x)``, in place; returns how many.

    torch's softplus returns x itself above a threshold (20) because ``log1p(exp(x))`` overflows in a
    naive kernel; the exporter spells that guard out as two more nodes per softplus. onnxruntime's
    Softplus kernel is the stable form already (``x + log1p(exp(-x))`` for x > 0), which at x > 20
    rounds to x in float32, so the guard is dropped (a test runs the kernel against torch's softplus
    out to 1e4).
    """
    producer = {out: n for n in graph.node for out in n.output}
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    for v in graph.output:
        uses[v.name] = uses.get(v.name, 0) + 1
    drop = []
    for where in graph.node:
        if where.op_type != "Where":
            continue
        cond, x, sp = (producer.get(i) for i in where.input)
        if (cond is None or sp is None or cond.op_type != "Greater" or sp.op_type != "Softplus"
                or cond.input[0] != where.input[1] or sp.input[0] != where.input[1] or uses[cond.output[0]] != 1
                or uses[sp.output[0]] != 1):
            continue
        if not _constant_at_least(graph, cond.input[1], 15.0):  # below 15, x and softplus(x) differ in float32
            continue
        sp.output[0] = where.output[0]  # the Softplus now writes what the Where did
        drop += [where, cond]
    for n in drop:
        graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:  # the thresholds, if nothing else reads them
        graph.initializer.remove(t)
    return len(drop) // 2


def _constant_at_least(graph: onnx.GraphProto, name: str, least: float) -> bool:
    """Whether value ``name`` is a constant (an initializer or a Constant node's) whose every element is >= least."""
    for t in graph.initializer:
        if t.name == name:
            return bool((onnx.numpy_helper.to_array(t) >= least).all())
    for n in graph.node:
        if n.op_type == "Constant" and n.output[0] == name and n.attribute and n.attribute[0].name == "value":
            return bool((onnx.numpy_helper.to_array(n.attribute[0].t) >= least).all())
    return False


def _name_batch(graph: onnx.GraphProto) -> None:
    """Every input's and output's first dimension named "batch" (the exporter names it after the
    symbol it traced, e.g. "s0")."""
    for v in list(graph.input) + list(graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"


def scan_chunk_graph(frame: onnx.ModelProto, samples_per_frame: int, channels: int) -> onnx.ModelProto:
    """The frame graph in a ``Scan`` over the frames of ``samples`` (see the module docstring): the chunk graph
    of a model whose parallel forward does not export."""
    g = frame.graph
    body = _prefixed(g, "step/")
    n_state = len(g.input) - 1
    # Scan's body takes the carried values first, then one slice of each scanned input
    body_inputs = list(body.input)
    del body.input[:]
    body.input.extend(body_inputs[1:] + body_inputs[:1])
    body_outputs = list(body.output)
    del body.output[:]
    body.output.extend(body_outputs[1:] + body_outputs[:1])
    for v in list(body.input) + list(body.output):  # a slice of the scan has no batch name to share
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = ""
    state_in = [v.name for v in g.input[1:]]
    state_out = [v.name for v in g.output[1:]]
    shape = helper.make_tensor("chunk_shape", onnx.TensorProto.INT64, [4], [0, -1, samples_per_frame, channels])
    nodes = [
        helper.make_node("Reshape", [CHUNK_INPUT, "chunk_shape"], ["chunk_frames"], name="frames"),
        helper.make_node("Scan", state_in + ["chunk_frames"], state_out + [OUTPUT], name="steps", body=body,
                         num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1]),
    ]
    samples = helper.make_tensor_value_info(CHUNK_INPUT, onnx.TensorProto.FLOAT, ["batch", "samples", channels])
    out_dim = g.output[0].type.tensor_type.shape.dim[1]
    y = helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch", "frames", out_dim.dim_value])
    graph = helper.make_graph(nodes, "chunk", [samples] + [copy.deepcopy(v) for v in g.input[1:]],
                              [y] + [copy.deepcopy(v) for v in g.output[1:]], initializer=[shape])
    model = helper.make_model(graph, opset_imports=list(frame.opset_import), producer_name="ssm-signal")
    model.ir_version = frame.ir_version
    assert len(state_in) == n_state == len(state_out)
    return model


def _prefixed(graph: onnx.GraphProto, prefix: str) -> onnx.GraphProto:
    """A copy of ``graph`` with every value name prefixed (a subgraph may not reuse its outer graph's names)."""
    g = copy.deepcopy(graph)
    rename = lambda n: prefix + n if n else n  # noqa: E731  ("" is an omitted optional input)
    for node in g.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = rename(node.name)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"the frame graph has a nested subgraph ({node.op_type}); cannot wrap it in a Scan")
    for t in g.initializer:
        t.name = rename(t.name)
    for v in list(g.input) + list(g.output) + list(g.value_info):
        v.name = rename(v.name)
    return g


def short_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its intermediate values renamed v0, v1, ... and its nodes unnamed: the exporter's
    names ("node_linear_3", "mul_168", "..._Transposed_quantized") are a tenth of a small model's file.
    The graph's inputs and outputs, and the weights (named after the bundle's parameters), keep theirs."""
    g = model.graph
    keep = {v.name for v in list(g.input) + list(g.output)} | {t.name for t in g.initializer}
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"v{len(mapping)}"
        return mapping[name]

    for node in g.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for v in g.value_info:
        v.name = short(v.name)
    return model
