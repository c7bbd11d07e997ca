"""``ssm-signal export --format onnx``: a bundle -> ONNX graphs, their int8 twins and the sidecar.

    export_onnx("artifacts/kws_default", "artifacts/kws_default/onnx")

writes into the output directory:

    frame.onnx, chunk.onnx             float32: one frame per call, any number of frames per call (the
                                       model's parallel forward, or the frame graph in a Scan; see graphs)
    frame.int8.onnx, chunk.int8.onnx   the same with int8 weights (``int8=True``, the default)
    model.json                         the sidecar (:mod:`ssm_signal.runtime.sidecar`)

Every graph is run against the torch model before the sidecar is written (a float32 graph must
agree within :data:`TOLERANCE`); a model the exporter cannot lower, or a graph that disagrees, is
refused with :class:`ExportError` and nothing is left half written. The sidecar goes last, so a
directory with a sidecar is a complete export.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch

from pipelines.errors import UsageError
from pipelines.export.graphs import (
    OPSET,
    export_chunk_graph,
    export_frame_graph,
    scan_chunk_graph,
    short_names,
    state_layout,
)
from pipelines.export.quantize import METHOD, quantize_int8
from ssm_signal.bundle import Bundle, load_bundle
from ssm_signal.models import SignalModel
from ssm_signal.runtime.model import GraphRunner, OnnxModel, RuntimeConfig, find_export
from ssm_signal.runtime.sidecar import (
    CHUNK_INPUT,
    FORMAT,
    FORMAT_VERSION,
    FRAME_INPUT,
    OUTPUT,
    SIDECAR_FILE,
    STATE_IN,
    STATE_OUT,
    ExportedModelError,
    read_sidecar,
)
from ssm_signal.streaming.engine import StreamConfig, StreamEngine

log = logging.getLogger("ssm_signal.pipelines")

FORMATS = ("onnx",)
# float32 graphs against the torch model: relative error of outputs and states (onnxruntime's
# kernels sum in other orders than torch's; measured 1e-6 to 1e-5)
TOLERANCE = 1e-4
# frames of the check, at least: and past two chunks of every Mamba-2 layer's SSD (check_frames), so that a chunk graph
# whose length the exporter took for at most one chunk cannot pass
CHECK_FRAMES = 60


class ExportError(UsageError):
    """A model that cannot be exported, or an export that does not match its model, with the reason
    (the command exits with 2: it asked for something impossible)."""


def export_onnx(model: str | Path | Bundle, out: str | Path, *, int8: bool = True) -> Path:
    """Export a bundle (directory, URI or loaded) to ``out``; returns the sidecar's path."""
    bundle = model if isinstance(model, Bundle) else load_bundle(model)
    out = Path(out)
    check_exportable(bundle.model)
    out.mkdir(parents=True, exist_ok=True)
    (out / SIDECAR_FILE).unlink(missing_ok=True)  # an export in progress is not a complete one
    model_ = bundle.model.cpu().eval()
    try:
        frame = export_frame_graph(model_)
    except Exception as e:  # the exporter's own error types, from torch.export to onnxscript
        raise ExportError(f"{bundle.name}: the frame step does not export to ONNX: {type(e).__name__}: "
                          f"{_first_line(e)}") from e
    try:
        chunk, form = _lean(export_chunk_graph(model_)), "parallel"
    except Exception as e:  # a sequence form that branches on data or computes in complex numbers
        log.info("%s: the parallel forward does not export (%s: %s); the chunk graph scans the frame graph",
                 bundle.name, type(e).__name__, _first_line(e))
        chunk, form = None, "scan"
    frame = _lean(frame)
    files = {"frame": {"float32": "frame.onnx"}, "chunk": {"float32": "chunk.onnx"}}
    _save(frame, out / "frame.onnx")
    ref = Reference.of(model_)
    if chunk is not None:
        _save(chunk, out / "chunk.onnx")
        wrong = graph_error(ref, out / "chunk.onnx", CHUNK_INPUT)
        if wrong:  # an exporter that took a free length for a fixed one: the Scan form is right by construction
            log.warning("%s: the parallel chunk graph disagrees with the torch model (%s); the chunk graph scans the "
                        "frame graph", bundle.name, wrong)
            chunk, form = None, "scan"
    if int8:  # from the graphs with the exporter's node names: quantization picks nodes by name
        quantize_int8(out / "frame.onnx", out / "frame.int8.onnx")
        if chunk is not None:
            quantize_int8(out / "chunk.onnx", out / "chunk.int8.onnx")
        files["frame"]["int8"], files["chunk"]["int8"] = "frame.int8.onnx", "chunk.int8.onnx"
    for precision, name in files["frame"].items():
        lean = short_names(frame if precision == "float32" else onnx.load(str(out / name)))
        _save(lean, out / name)
        chunk_file = out / files["chunk"][precision]
        if chunk is not None:
            _save(short_names(chunk if precision == "float32" else onnx.load(str(chunk_file))), chunk_file)
        else:
            _save(scan_chunk_graph(lean, model_.samples_per_frame, model_.in_channels), chunk_file)
    check_graphs(ref, out, files["frame"]["float32"], files["chunk"]["float32"])
    sidecar = build_sidecar(bundle, files, form)
    if int8:
        sidecar["int8"] = METHOD
    tmp = out / (SIDECAR_FILE + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    tmp.replace(out / SIDECAR_FILE)
    read_sidecar(out)  # what was written reads back
    log.info("exported %s v%s to %s (%s)", bundle.name, bundle.version, out,
             ", ".join(f"{f} {os.path.getsize(out / f) / 1024:.0f} KB" for g in files.values() for f in g.values()))
    return out / SIDECAR_FILE


def open_export(bundle: Bundle, export: str | Path | None = None, precision: str = "float32",
                option: str = "--runtime onnx") -> OnnxModel:
    """The ONNX export of ``bundle`` loaded in the runtime: ``export`` its folder (default: the bundle
    directory's onnx/), ``precision`` "float32" or "int8". UsageError (naming ``option``) when there is
    none, or when it was exported from another model (its sidecar's fingerprint)."""
    if export is None and bundle.path is None:
        raise UsageError(f"{option}: name the exported model with --onnx DIR (the bundle has no local folder)")
    try:
        model = OnnxModel(find_export(export or bundle.path), RuntimeConfig(precision=precision))
    except ExportedModelError as e:
        raise UsageError(f"{option}: {e}") from e
    if model.sidecar.fingerprint != bundle.fingerprint:
        raise UsageError(f"{option}: {model.sidecar.root} was exported from another model ({model.name} "
                         f"v{model.version}); export {bundle.name} v{bundle.version} again")
    return model


def check_exportable(model: SignalModel) -> None:
    """Refuse what the graphs cannot carry: non-float32 weights, or a state tensor that is neither
    float32 nor int64 (the sidecar's dtypes)."""
    odd = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if odd:
        raise ExportError(f"the model's weights are {', '.join(odd)}; export a float32 model (bundles load as float32)")
    tensors, _ = state_layout(model)
    bad = [f"{n} ({d})" for n, _, d in tensors if d not in ("float32", "int64")]
    if bad:
        raise ExportError(f"state tensors of other dtypes than float32 and int64 cannot be exported: {', '.join(bad)}")


class Reference(NamedTuple):
    """A random stream of two streams from a zero state and the torch model's outputs and final state on it
    (its chunked forward), which every exported graph is checked against: x (2, frames * hop, C), the zero
    state's tensors by name, y (2, frames, out_dim), the final state's tensors by name."""

    x: np.ndarray
    state: dict[str, np.ndarray]
    y: np.ndarray
    final: dict[str, np.ndarray]
    hop: int

    @classmethod
    def of(cls, model: SignalModel) -> Reference:
        gen = torch.Generator().manual_seed(0)
        hop, C = model.samples_per_frame, model.in_channels
        x = 0.3 * torch.randn(2, check_frames(model) * hop, C, generator=gen)
        with torch.no_grad():
            state = model.init_state(2)
            y, final = model._forward(x, state, phase=0)
        names = [n for n, _, _ in state_layout(model)[0]]
        named = lambda s: {n: t.numpy() for n, t in zip(names, s.tensors(), strict=True)}  # noqa: E731
        return cls(x.numpy(), named(state), y.numpy(), named(final), hop)


def check_graphs(ref: Reference, out: Path, frame_file: str, chunk_file: str) -> None:
    """Both graphs against the torch model (:func:`graph_error`): within :data:`TOLERANCE` or :class:`ExportError`."""
    for what, first, file in (("chunk", CHUNK_INPUT, chunk_file), ("frame", FRAME_INPUT, frame_file)):
        wrong = graph_error(ref, out / file, first)
        if wrong:
            raise ExportError(f"the exported {what} graph disagrees with the torch model: {wrong}")


def graph_error(ref: Reference, path: Path, first: str) -> str | None:
    """Run the graph at ``path`` (first input ``first``: the frame graph frame by frame, the chunk graph in one
    call) on the reference stream and compare its outputs and final state with the torch model's: None within
    :data:`TOLERANCE`, else the worst relative error, named."""
    runner = GraphRunner(path, first, list(ref.state))
    if first == CHUNK_INPUT:
        y, s = runner(ref.x, ref.state)
    else:
        ys, s, hop = [], ref.state, ref.hop
        for t in range(ref.x.shape[1] // hop):
            y_t, s = runner(ref.x[:, t * hop:(t + 1) * hop], s)
            ys.append(y_t)
        y = np.stack(ys, 1)
    errs = {OUTPUT: _rel_err(y, ref.y)} | {n: _rel_err(s[n], want) for n, want in ref.final.items()}
    worst = max(errs, key=errs.get)
    return None if errs[worst] <= TOLERANCE else f"{worst} relative error {errs[worst]:.2e} > {TOLERANCE:g}"


def check_frames(model: SignalModel) -> int:
    """Frames of the :class:`Reference` stream: :data:`CHECK_FRAMES`, or more, past two chunks of the longest SSD
    chunk."""
    longest = max((m.chunk_size for m in model.modules() if isinstance(getattr(m, "chunk_size", None), int)), default=0)
    return max(CHECK_FRAMES, 2 * longest + 3)


def build_sidecar(bundle: Bundle, files: dict[str, dict[str, str]], chunk_form: str) -> dict:
    """The sidecar's content (:mod:`ssm_signal.runtime.sidecar`) for ``bundle``, its graph files and the chunk
    graph's form ("parallel" or "scan", :mod:`pipelines.export.graphs`)."""
    engine = StreamEngine(bundle, "cpu", StreamConfig(compile=False))  # the labels, kind and detector a session uses
    det = engine.detector
    model = engine.model
    tensors, markers = state_layout(model)
    state = [{"name": n, "shape": list(s), "dtype": d} for n, s, d in tensors]

    def io(first: str, first_shape: list, out_shape: list) -> dict:
        return {"inputs": [{"name": first, "shape": first_shape, "dtype": "float32"}]
                + [{"name": STATE_IN + s["name"], "shape": ["batch", *s["shape"]], "dtype": s["dtype"]} for s in state],
                "outputs": [{"name": OUTPUT, "shape": out_shape, "dtype": "float32"}]
                + [{"name": STATE_OUT + s["name"], "shape": ["batch", *s["shape"]], "dtype": s["dtype"]} for s in state]}

    hop, C, out_dim = model.samples_per_frame, model.in_channels, model.d_output
    resolved = {"smoothing_frames": det.window, "refractory_s": det.refractory_frames / det.frame_rate,
                "threshold": None if det.kind == "none" else {lb: float(t) for lb, t in
                                                               zip(det.reportable_labels, det.thresholds, strict=True)},
                "reported": det.reportable_labels if det.kind == "keyword" else []}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "bundle": {"name": bundle.name, "version": bundle.version, "fingerprint": bundle.fingerprint},
        "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
        "sample_rate": bundle.sample_rate, "samples_per_frame": hop, "in_channels": C,
        "frontend": bundle.config.frontend.kind, "audio": engine.audio, "frame_rate": engine.frame_rate,
        "head": bundle.config.head.kind, "kind": engine.kind, "labels": engine.labels, "out_dim": out_dim,
        "detector": {"config": bundle.detector.to_dict(), "default_threshold": bundle.config.head.threshold,
                     "resolved": resolved},
        "state": state, "state_markers": markers,
        "graphs": {"frame": {"files": files["frame"], **io(FRAME_INPUT, ["batch", hop, C], ["batch", out_dim])},
                   "chunk": {"files": files["chunk"], "form": chunk_form,
                             **io(CHUNK_INPUT, ["batch", "samples", C], ["batch", "frames", out_dim])}},
    }


def _lean(model: onnx.ModelProto) -> onnx.ModelProto:
    """Without the exporter's per-node metadata (source lines, stack traces: a third of the file, and the
    exporting machine's paths) and the intermediate shapes (onnxruntime infers them)."""
    for node in model.graph.node:
        node.ClearField("metadata_props")
    del model.graph.value_info[:]
    return model


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` next to ``path`` and rename it into place (never a half-written graph)."""
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    onnx.save(model, tmp)
    os.replace(tmp, path)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) if b.size else 0.0


def _first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, without terminal colour codes (the exporter's)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__
