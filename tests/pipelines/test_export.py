"""``ssm-signal export --format onnx``: the graphs' names and order are the State dataclasses' fields, the
sidecar carries what a runtime needs (the bundle's calibrated thresholds included), and what cannot be
exported is refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.shape_inference
import onnxruntime as ort
import pytest
import torch

from pipelines.cli import main
from pipelines.export import ExportError, export_onnx
from pipelines.export import job as export_job
from pipelines.export.graphs import unguarded_softplus
from ssm_signal import load_bundle, save_bundle
from ssm_signal.bundle import Bundle
from ssm_signal.events import DetectorConfig
from ssm_signal.runtime import ExportedModelError, OnnxModel, OnnxSession, RuntimeConfig, read_sidecar
from tests.streaming.conftest import kws_model


def test_graph_io_follows_the_state_dataclasses(exported):
    """Every state tensor is an input and an output, named by its State field path, in State.tensors()
    order; the sidecar lists the same, with shapes and dtypes, and the graphs run at any batch size."""
    bundle, out = exported("attention")
    sc = read_sidecar(out)
    with torch.no_grad():
        state = bundle.model.init_state(3)
    flat = {k: v for k, v in state.state_dict().items() if not k.endswith(".__len__")}
    assert [s.name for s in sc.state] == list(flat)
    assert [s.name for s in sc.state][:2] == ["frontend.LogMelState.history", "frontend.LogMelState.phase"]
    assert "backbone.BackboneState.layers.0.AttentionState.k" in flat
    assert [(s.shape, s.dtype) for s in sc.state] == [(tuple(v.shape[1:]), str(v.dtype)[6:]) for v in flat.values()]
    assert sc.state_markers == {"backbone.BackboneState.layers.__len__": 1, "head.__len__": 0}
    for graph, first in (("frame", "frame"), ("chunk", "samples")):
        s = ort.InferenceSession(str(sc.graph_path(graph, "float32")), providers=["CPUExecutionProvider"])
        assert [i.name for i in s.get_inputs()] == [first] + [f"state.{n}" for n in flat]
        assert [o.name for o in s.get_outputs()] == ["y"] + [f"next_state.{n}" for n in flat]
        listed = sc.raw["graphs"][graph]
        assert [i["name"] for i in listed["inputs"]] == [i.name for i in s.get_inputs()]
        assert sc.graphs[graph] == {"float32": f"{graph}.onnx"}  # no int8 asked for this one
    m = OnnxModel(out)
    x = np.random.default_rng(0).standard_normal((3, 5 * 160, 1)).astype(np.float32)
    y, new = m.run(x, {k: v.numpy() for k, v in flat.items()})
    ref, ref_state = bundle.model._forward(torch.from_numpy(x), state, phase=0)
    assert y.shape == (3, 5, 4) and np.abs(y - ref.detach().numpy()).max() <= 1e-4
    assert int(new["backbone.BackboneState.layers.0.AttentionState.t"][2]) == 5


def test_sidecar_carries_rates_labels_and_calibrated_thresholds(tmp_path, exported):
    bundle, out = exported("mamba2")
    sc = read_sidecar(out)
    assert (sc.sample_rate, sc.samples_per_frame, sc.in_channels, sc.frame_rate) == (16000, 160, 1, 100.0)
    assert (sc.frontend, sc.audio, sc.head, sc.kind) == ("logmel", True, "classify", "keyword")
    assert sc.labels == ["yes", "no", "_silence_", "_unknown_"]
    assert sc.bundle == {"name": "tiny_mamba2", "version": "1", "fingerprint": bundle.fingerprint}
    # a bundle with calibrated thresholds: the sidecar's detector and the runtime's thresholds are the bundle's
    det = DetectorConfig(smoothing_frames=3, threshold={"yes": 0.71}, default_threshold=0.6, refractory_s=0.4)
    b = load_bundle(save_bundle(kws_model(("mamba2",)), tmp_path / "b", name="cal", version="2", detector=det))
    side = export_job.build_sidecar(b, {"frame": {"float32": "f.onnx"}, "chunk": {"float32": "c.onnx"}}, "parallel")
    assert side["detector"]["config"] == det.to_dict()
    assert side["detector"]["resolved"] == {"smoothing_frames": 3, "refractory_s": 0.4,
                                            "threshold": {"yes": 0.71, "no": 0.6}, "reported": ["yes", "no"]}
    assert json.loads(json.dumps(side)) == side  # plain JSON


def test_refusals(tmp_path, monkeypatch):
    m = kws_model(("mamba2",)).double()
    with pytest.raises(ExportError, match="float64; export a float32 model"):
        export_onnx(Bundle(m, m.config, "d", "1", {}), tmp_path / "out")
    b = load_bundle(save_bundle(kws_model(("mamba2",)), tmp_path / "b"))

    def unlowerable(model, path=None):
        raise RuntimeError("Unsupported: aten::frobnicate\nmore lines")

    monkeypatch.setattr(export_job, "export_frame_graph", unlowerable)
    with pytest.raises(ExportError, match="does not export to ONNX: RuntimeError: Unsupported: aten::frobnicate$"):
        export_onnx(b, tmp_path / "out")
    assert not (tmp_path / "out" / "model.json").exists()
    monkeypatch.undo()
    monkeypatch.setattr(export_job, "TOLERANCE", 0.0)  # any float difference now counts as disagreement
    with pytest.raises(ExportError, match="graph disagrees with the torch model"):
        export_onnx(b, tmp_path / "out", int8=False)
    assert not (tmp_path / "out" / "model.json").exists()  # no sidecar: not a complete export
    with pytest.raises(ExportedModelError, match="holds no exported model"):
        OnnxSession(tmp_path / "out")


def test_a_parallel_chunk_graph_that_disagrees_gives_way_to_the_scan(tmp_path, monkeypatch, caplog):
    """A parallel chunk graph that is not the model's function (here: another model's, of the same architecture)
    is not kept: the export warns and writes the Scan form, which then agrees."""
    torch.manual_seed(5)
    b = load_bundle(save_bundle(kws_model(("mamba2",)), tmp_path / "b"))
    other = kws_model(("mamba2",)).eval()
    real = export_job.export_chunk_graph
    monkeypatch.setattr(export_job, "export_chunk_graph", lambda model: real(other))
    with caplog.at_level("WARNING", logger="ssm_signal.pipelines"):
        export_onnx(b, tmp_path / "out", int8=False)
    assert "parallel chunk graph disagrees with the torch model" in caplog.text
    sc = read_sidecar(tmp_path / "out")
    assert sc.raw["graphs"]["chunk"]["form"] == "scan"
    assert "Scan" in {n.op_type for n in onnx.load(str(sc.graph_path("chunk", "float32"))).graph.node}


def test_cli_exports_and_refuses_other_formats(tmp_path, capsys):
    b = save_bundle(kws_model(("s4d",)), tmp_path / "bundle", name="cli", version="3")
    assert main(["export", "--model", str(b), "--format", "onnx", "--no-int8"]) == 0
    assert "exported cli v3" in capsys.readouterr().out
    sc = read_sidecar(b / "onnx")
    assert sc.bundle["version"] == "3" and sc.precisions == ["float32"]
    with pytest.raises(ExportedModelError, match="no int8 frame graph"):
        OnnxModel(b, RuntimeConfig(precision="int8"))
    with pytest.raises(SystemExit) as e:
        main(["export", "--model", str(b), "--format", "tflite"])
    assert e.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_softplus_guard_dropped_where_onnxruntime_needs_none(exported):
    """The exporter's ``Where(x > 20, x, Softplus(x))`` becomes ``Softplus(x)``: onnxruntime's Softplus is
    the overflow-safe form, equal to torch's softplus in float32 from -100 to 1e4 (checked here, the
    assumption the rewrite rests on); a guard at a threshold where the two differ is kept."""
    _, out = exported("mamba2")
    g = onnx.load(str(read_sidecar(out).graph_path("frame", "float32"))).graph
    ops = [n.op_type for n in g.node]
    assert ops.count("Softplus") == 1 and "Where" not in ops  # one Mamba-2 layer

    x = np.concatenate([np.linspace(-100, 100, 2001), [15.0, 19.9, 20.0, 20.1, 88.0, 89.0, 1e3, 1e4]]).astype(np.float32)
    node = onnx.helper.make_node("Softplus", ["x"], ["y"])
    io = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [x.size]) for n in ("x", "y")]
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "sp", io[:1], io[1:]),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = torch.nn.functional.softplus(torch.from_numpy(x)).numpy()
    assert np.isfinite(got).all() and np.abs(got - want).max() <= 2e-6 * np.maximum(1, np.abs(want)).max()

    for threshold, dropped in ((20.0, 1), (5.0, 0)):
        nodes = [onnx.helper.make_node("Greater", ["x", "t"], ["c"]), onnx.helper.make_node("Softplus", ["x"], ["s"]),
                 onnx.helper.make_node("Where", ["c", "x", "s"], ["y"])]
        graph = onnx.helper.make_graph(nodes, "guard", io[:1], io[1:],
                                       initializer=[onnx.numpy_helper.from_array(np.float32(threshold), "t")])
        assert unguarded_softplus(graph) == dropped
        assert [n.op_type for n in graph.node] == (["Softplus"] if dropped else ["Greater", "Softplus", "Where"])
        assert graph.node[-1].output[0] == "y"


def test_int8_quantizes_only_wide_products_and_stays_under_a_third(tmp_path, exported):
    """Dynamic quantization only where the product's input is MIN_QUANTIZED_INPUT wide (where int8 pays on
    a CPU); every other weight matrix and every convolution's weights stored int8 (weight-only), so the keyword
    models' files stay under a third of float32's."""
    from pipelines.export.quantize import MIN_QUANTIZED_INPUT, quantize_int8

    rng = np.random.default_rng(0)
    wide, narrow = MIN_QUANTIZED_INPUT, MIN_QUANTIZED_INPUT - 1
    h = onnx.helper
    nodes = [h.make_node("Gemm", ["x", "w_wide"], ["a"], name="wide", transB=1),
             h.make_node("Gemm", ["a", "w_narrow"], ["y"], name="narrow", transB=1)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, wide])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
                         initializer=[onnx.numpy_helper.from_array(rng.standard_normal((narrow, wide)).astype(np.float32), "w_wide"),
                                      onnx.numpy_helper.from_array(rng.standard_normal((8, narrow)).astype(np.float32), "w_narrow")])
    model = onnx.shape_inference.infer_shapes(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]))
    onnx.save(model, tmp_path / "f.onnx")
    quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx")
    q = onnx.load(str(tmp_path / "q.onnx")).graph
    assert [n.op_type for n in q.node].count("MatMulInteger") == 1
    # the narrow one stored int8 (weight-only), nothing large left in float32
    assert any(t.name.startswith("w_narrow") and t.data_type == onnx.TensorProto.INT8 for t in q.initializer)
    assert not [t.name for t in q.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) >= 64]
    x = rng.standard_normal((1, wide)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    ref, got = run(tmp_path / "f.onnx"), run(tmp_path / "q.onnx")
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()

    for name in ("kws_default", "speech_embedding"):  # d_model 64 and 8: no product is wide enough
        sc = read_sidecar(exported(name)[1])
        int8 = onnx.load(str(sc.graph_path("frame", "int8"))).graph
        assert "MatMulInteger" not in [n.op_type for n in int8.node]
        for g in ("frame", "chunk"):  # the speech encoder's convolution weights stored int8 too
            assert sc.graph_path(g, "int8").stat().st_size <= sc.graph_path(g, "float32").stat().st_size / 3, name


@pytest.mark.parametrize("name,form", [("mamba2", "parallel"), ("kws_default", "parallel"), ("sensor", "parallel"),
                                       ("mamba", "scan"), ("s4d", "scan"), ("attention", "scan"), ("pcen", "scan"),
                                       ("speech_embedding", "scan")])
def test_chunk_graph_is_the_parallel_forward_where_it_exports(exported, name, form):
    """The chunk graph is the model's parallel forward (no Scan: one pass over T frames) where its sequence
    forms export, and the frame graph in a Scan elsewhere; the sidecar says which. Either way it gives the
    torch forward's outputs and state over 1 to 60 frames from a state mid-stream, as the frame graph does
    frame by frame (the runtime takes pushes below ``min_chunk_frames`` through the frame graph)."""
    bundle, out = exported(name)
    sc = read_sidecar(out)
    assert sc.raw["graphs"]["chunk"]["form"] == form
    assert ("Scan" in {n.op_type for n in onnx.load(str(sc.graph_path("chunk", "float32"))).graph.node}) == (form == "scan")
    m, hop, C = bundle.model, bundle.model.samples_per_frame, bundle.model.in_channels
    rng = np.random.default_rng(0)
    with torch.no_grad():
        _, state = m._forward(torch.from_numpy(0.3 * rng.standard_normal((2, 11 * hop, C)).astype(np.float32)),
                              m.init_state(2), phase=0)
    flat = {k: v.numpy() for k, v in state.state_dict().items() if not k.endswith(".__len__")}
    chunk_only = OnnxModel(out, RuntimeConfig(min_chunk_frames=1))
    frames_only = OnnxModel(out, RuntimeConfig(min_chunk_frames=1000))
    for T in (1, 2, 7, 60):
        x = (0.3 * rng.standard_normal((2, T * hop, C))).astype(np.float32)
        with torch.no_grad():
            ref, ref_state = m._forward(torch.from_numpy(x), state, phase=0)
        want = {k: v.numpy() for k, v in ref_state.state_dict().items() if not k.endswith(".__len__")}
        for runtime in (chunk_only, frames_only):
            y, got = runtime.run(x, flat)
            assert y.shape == ref.shape and np.abs(y - ref.numpy()).max() <= 1e-4 * max(1.0, np.abs(ref.numpy()).max())
            for k, v in want.items():
                assert got[k].shape == v.shape and (v.size == 0 or np.abs(got[k] - v).max() <= 1e-4 * max(
                    1.0, np.abs(v).max())), (name, T, k)


def test_refusal_lines_carry_no_terminal_colour_codes():
    """The exporter colours its messages for a terminal; a refusal or a log line quotes them plain."""
    e = RuntimeError("\n  Failed to export the model. \x1b[96mThis is step 1/3\x1b[0m of exporting\nmore")
    assert export_job._first_line(e) == "Failed to export the model. This is step 1/3 of exporting"
