"""pipelines.export.fold: the folded copy computes the model's step; identity arithmetic leaves the graph only
where it changes nothing."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper as h
from onnx import numpy_helper

from pipelines.export.fold import drop_identity_arithmetic, folded, gemm_residuals, widen_matmul_biases
from ssm_signal.models import SignalModel
from tests.streaming.conftest import kws_model


@pytest.mark.parametrize("cepstra", [0, 5])
def test_folded_copy_steps_as_the_model(cepstra, seed):
    """Normalisation, cepstral smoothing and Mamba-2's dt_bias folded into the projections: the same frame
    outputs over 30 steps (float64, so only the algebra is compared), and the bundle's model is untouched."""
    base = kws_model(("mamba2", "mamba2"))
    cfg = dataclasses.replace(base.config, frontend=dataclasses.replace(base.config.frontend, cepstra=cepstra))
    model = SignalModel(cfg).eval()
    model.load_state_dict(base.state_dict())
    with torch.no_grad():
        for layer in (model.backbone.blocks[0].mixer, model.backbone.blocks[1].mixer):
            layer.dt_bias.normal_()  # a dt_bias far from zero, so a lost one shows
    model = model.double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold = folded(model)
    assert float(fold.frontend.std.sub(1).abs().max()) == 0 and float(fold.frontend.mean.abs().max()) == 0
    assert all(float(b.mixer.dt_bias.detach().abs().max()) == 0 for b in fold.backbone.blocks)
    assert fold.frontend.cepstra == 0
    x = torch.randn(2, 30 * 160, 1, dtype=torch.float64)
    with torch.no_grad():
        s1, s2 = model.init_state(2, dtype=torch.float64), fold.init_state(2, dtype=torch.float64)
        for t in range(30):
            y1, s1 = model._step(x[:, t * 160:(t + 1) * 160], s1)
            y2, s2 = fold._step(x[:, t * 160:(t + 1) * 160], s2)
            assert float((y1 - y2).abs().max()) < 1e-10, t
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_identity_arithmetic_dropped_only_where_shape_is_kept():
    """x + 0, x * 1, 0 + x and x / 1 go; x + zeros(3, 4), which broadcasts x (4,) up to (3, 4), and x - 2 stay.
    The graph computes what it did."""
    zeros4, zeros34 = np.zeros(4, np.float32), np.zeros((3, 4), np.float32)
    nodes = [h.make_node("Add", ["x", "z4"], ["a"]), h.make_node("Mul", ["a", "one"], ["b"]),
             h.make_node("Add", ["z4", "b"], ["c"]), h.make_node("Div", ["c", "one"], ["d"]),
             h.make_node("Sub", ["d", "two"], ["e"]), h.make_node("Add", ["e", "z34"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                         initializer=[numpy_helper.from_array(zeros4, "z4"),
                                      numpy_helper.from_array(np.ones(1, np.float32), "one"),
                                      numpy_helper.from_array(np.full(1, 2, np.float32), "two"),
                                      numpy_helper.from_array(zeros34, "z34")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    want = run(model)
    assert drop_identity_arithmetic(model) == 4
    assert [n.op_type for n in model.graph.node] == ["Sub", "Add"]
    assert {t.name for t in model.graph.initializer} == {"two", "z34"}
    np.testing.assert_array_equal(run(model), want)
    assert want.shape == (3, 4)


def test_a_scalar_added_to_a_product_becomes_a_bias_onnxruntime_fuses():
    """MatMul + scalar: the scalar written as a vector of the product's width, the sum unchanged, and
    onnxruntime then runs the two as one Gemm; a scalar added to something else stays."""
    rng = np.random.default_rng(0)
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "eps"], ["a"]),
             h.make_node("Add", ["a", "eps"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 6])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 5])],
                         initializer=[numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w"),
                                      numpy_helper.from_array(np.array(0.25, np.float32), "eps")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    x = rng.standard_normal((2, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert widen_matmul_biases(model) == 1
    bias = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}[model.graph.node[1].input[1]]
    assert bias.shape == (5,) and np.all(bias == 0.25)
    assert model.graph.node[2].input[1] == "eps"
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(Path(tempfile.mkdtemp()) / "opt.onnx")
    got = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node] == ["Gemm", "Add"]


def test_a_residual_sum_joins_the_gemm_before_it():
    """Gemm(a, W) + r -> Gemm(a, W, r), placed after r's producer, twice in a row; a Gemm with a bias or a second
    reader is left alone."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((5, 6)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    nodes = [h.make_node("Gemm", ["x", "w"], ["g"], transB=1), h.make_node("Relu", ["x5"], ["r"]),
             h.make_node("Add", ["r", "g"], ["s"]),  # fused, and the Gemm moves after Relu
             h.make_node("Gemm", ["x", "w"], ["g1"], transB=1), h.make_node("Add", ["g1", "s"], ["s1"]),  # fused
             h.make_node("Gemm", ["x", "w", "b"], ["gb"], transB=1), h.make_node("Add", ["gb", "s1"], ["t"]),  # bias
             h.make_node("Gemm", ["x", "w"], ["g2"], transB=1), h.make_node("Add", ["g2", "t"], ["u"]),
             h.make_node("Mul", ["g2", "u"], ["v"])]  # g2 read twice
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 6]),
                                      h.make_tensor_value_info("x5", onnx.TensorProto.FLOAT, ["batch", 5])],
                         [h.make_tensor_value_info("v", onnx.TensorProto.FLOAT, ["batch", 5])], initializer=[w, b])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    feeds = {"x": rng.standard_normal((3, 6)).astype(np.float32), "x5": rng.standard_normal((3, 5)).astype(np.float32)}

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    want = run(model)
    assert gemm_residuals(model) == 2
    onnx.checker.check_model(model)  # topological order kept
    assert [n.op_type for n in model.graph.node] == ["Relu", "Gemm", "Gemm", "Gemm", "Add", "Gemm", "Add", "Mul"]
    assert [list(n.input) for n in model.graph.node[1:3]] == [["x", "w", "r"], ["x", "w", "s"]]
    np.testing.assert_allclose(run(model), want, rtol=1e-5)


def test_a_cepstral_frontend_exports_and_steps_as_torch(tmp_path, seed):
    """A log-mel frontend with cepstral smoothing through the whole export (folded into the input projection):
    the frame graph's outputs equal the torch step's over 40 frames."""
    from pipelines.export import export_onnx
    from ssm_signal import load_bundle, save_bundle
    from ssm_signal.runtime import OnnxModel, RuntimeConfig

    base = kws_model(("mamba2",))
    cfg = dataclasses.replace(base.config, frontend=dataclasses.replace(base.config.frontend, cepstra=5))
    model = SignalModel(cfg).eval()
    model.load_state_dict(base.state_dict())
    bundle = load_bundle(save_bundle(model, tmp_path / "bundle", name="tiny_cepstra", version="1"))
    export_onnx(bundle, tmp_path / "onnx", int8=False)
    onnx_model = OnnxModel(tmp_path / "onnx", RuntimeConfig(precision="float32"))
    x = (0.1 * torch.randn(1, 40 * 160, 1)).numpy()
    st, ys = onnx_model.init_model_state(1), []
    for t in range(40):
        y, st = onnx_model.frame(x[:, t * 160:(t + 1) * 160], st)
        ys.append(np.array(y))
    with torch.no_grad():
        want, _ = bundle.model(torch.from_numpy(x))
    np.testing.assert_allclose(np.concatenate(ys), want[0].numpy(), atol=1e-4, rtol=1e-4)
