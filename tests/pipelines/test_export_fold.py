"""pipelines.export.fold: the folded copy computes the model's step; identity arithmetic leaves the graph only
where it changes nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper as h
from onnx import numpy_helper

from pipelines.export.fold import drop_identity_arithmetic, folded
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
