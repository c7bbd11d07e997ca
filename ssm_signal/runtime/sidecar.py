"""The sidecar of an exported model: ``model.json`` beside its ONNX graphs.

A graph says how to compute a frame; the sidecar says everything else a runtime needs, so that
numpy and onnxruntime alone run the stream (``ssm_signal.runtime``) and other runtimes can too:

    format, format_version        "ssm-signal-onnx", 1
    bundle                        name, version and fingerprint of the bundle it was exported from
    sample_rate, samples_per_frame, in_channels, frontend ("logmel", "speech_embedding" or "sensor"), audio
    head, kind, labels            the head ("classify", "anomaly", "forecast"), the detector's kind
                                  ("keyword", "anomaly", "none") and the score columns' names
    detector                      config: the bundle's detector settings (calibrated thresholds) as
                                  ``DetectorConfig.to_dict`` writes them; default_threshold: the
                                  head's (anomaly); resolved: the window, per-label thresholds and
                                  refractory period those give (for readers; the runtime re-derives them)
    state                         every state tensor: name, shape without the batch dim, dtype, in
                                  the order of the graphs' inputs and outputs
    state_markers                 the tuple lengths a snapshot records (``State.state_dict``'s
                                  ``__len__`` entries), so snapshots match the torch session's
    graphs                        frame: one frame per call; chunk: any whole number of frames per
                                  call, its form "parallel" (the model's sequence form) or "scan" (the
                                  frame graph in a Scan); each with its files per precision ("float32",
                                  "int8") and its inputs and outputs (name, shape, dtype)

Graph inputs: ``frame`` (B, samples_per_frame, C) or ``samples`` (B, T * samples_per_frame, C), then
``state.<name>`` for each state tensor; outputs: ``y`` (B, out_dim) or (B, T, out_dim), then
``next_state.<name>``. ``<name>`` is the tensor's key in ``SignalModelState.state_dict()``: the State
dataclasses' field names, e.g. ``backbone.BackboneState.layers.0.Mamba2State.ssm``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ssm_signal.versioned_json import read_versioned

FORMAT = "ssm-signal-onnx"
FORMAT_VERSION = 1
SIDECAR_FILE = "model.json"
FRAME_INPUT, CHUNK_INPUT, OUTPUT = "frame", "samples", "y"
STATE_IN, STATE_OUT = "state.", "next_state."
GRAPHS = ("frame", "chunk")
PRECISIONS = ("float32", "int8")
#: where a bundle runs: its own torch model, or its ONNX export in this runtime
RUNTIMES = ("torch", "onnx")


def runtime_label(runtime: str, precision: str = "float32") -> str:
    """How logs and summaries name where a bundle ran: "torch", or "onnx float32" / "onnx int8"."""
    return runtime if runtime == "torch" else f"{runtime} {precision}"
DTYPES = ("float32", "int64")


class ExportedModelError(ValueError):
    """An exported model directory that cannot be used, with the reason."""


@dataclasses.dataclass(frozen=True)
class StateTensor:
    """One state tensor: its name, shape without the batch dimension, and dtype ("float32" or "int64")."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class Sidecar:
    """A parsed, checked ``model.json`` (see the module docstring); ``root`` is its directory."""

    root: Path
    bundle: dict[str, str]
    sample_rate: int
    samples_per_frame: int
    in_channels: int
    frontend: str
    audio: bool
    head: str
    kind: str
    labels: list[str]
    detector: dict[str, Any]
    default_threshold: float | None
    state: tuple[StateTensor, ...]
    state_markers: dict[str, int]
    graphs: dict[str, dict[str, str]]
    raw: dict[str, Any]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_frame

    @property
    def fingerprint(self) -> str:
        return self.bundle["fingerprint"]

    @property
    def precisions(self) -> list[str]:
        """The precisions both graphs exist in."""
        return [p for p in PRECISIONS if all(p in self.graphs[g] for g in GRAPHS)]

    def graph_path(self, graph: str, precision: str) -> Path:
        if precision not in self.graphs[graph]:
            raise ExportedModelError(f"{self.root}: no {precision} {graph} graph (exported: "
                                     f"{', '.join(self.precisions) or 'none'}); export with int8 to get one")
        return self.root / self.graphs[graph][precision]


def read_sidecar(path: str | Path) -> Sidecar:
    """The sidecar of the exported model in directory ``path``; ExportedModelError says what is wrong."""
    root = Path(path)
    file = root / SIDECAR_FILE
    if not file.is_file():
        raise ExportedModelError(f"{root} is not an exported model: no {SIDECAR_FILE} "
                                 "(write one with `ssm-signal export --format onnx`)")
    d = read_versioned(file, format=FORMAT, version=FORMAT_VERSION, what="ssm-signal ONNX export",
                       error=ExportedModelError)
    try:
        state = tuple(StateTensor(str(s["name"]), tuple(int(n) for n in s["shape"]), str(s["dtype"]))
                      for s in d["state"])
        graphs = {g: {p: str(f) for p, f in d["graphs"][g]["files"].items()} for g in GRAPHS}
        det = d["detector"]
        out = Sidecar(
            root=root, bundle={k: str(v) for k, v in d["bundle"].items()}, sample_rate=int(d["sample_rate"]),
            samples_per_frame=int(d["samples_per_frame"]), in_channels=int(d["in_channels"]),
            frontend=str(d["frontend"]), audio=bool(d["audio"]), head=str(d["head"]), kind=str(d["kind"]),
            labels=[str(x) for x in d["labels"]], detector=dict(det["config"]),
            default_threshold=None if det.get("default_threshold") is None else float(det["default_threshold"]),
            state=state, state_markers={str(k): int(v) for k, v in d["state_markers"].items()}, graphs=graphs, raw=d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ExportedModelError(f"{file}: malformed sidecar ({type(e).__name__}: {e})") from e
    if "fingerprint" not in out.bundle:
        raise ExportedModelError(f"{file}: malformed sidecar (no bundle fingerprint)")
    bad = [s.name for s in state if s.dtype not in DTYPES]
    if bad or out.samples_per_frame < 1 or out.in_channels < 1 or out.sample_rate < 1:
        raise ExportedModelError(f"{file}: malformed sidecar (state dtypes {bad}, or a rate, hop or channel count < 1)")
    unknown = {p for files in graphs.values() for p in files} - set(PRECISIONS)
    if unknown:
        raise ExportedModelError(f"{file}: unknown precisions {sorted(unknown)} (known: {list(PRECISIONS)})")
    return out

