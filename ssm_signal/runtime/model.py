"""An exported model loaded in onnxruntime: what a torch ``StreamEngine`` is to a bundle, without torch.

    model = OnnxModel("artifacts/kws_default/onnx")            # or the bundle directory that holds onnx/
    session = model.new_session()                              # ssm_signal.runtime.session.OnnxSession
    y, state = model.run(frames, model.init_model_state(1))    # whole frames (B, F * hop, C) -> (B, F, out_dim)

Frames run through the chunk graph (pushes of ``min_chunk_frames`` frames or more; in windows of
``window_frames``, so memory stays bounded by the window) or, one at a time, the frame graph: the same
function (the chunk graph is the model's parallel forward, or the frame graph in an ONNX Scan:
``pipelines.export.graphs``). A parallel chunk graph costs a few hundred nodes per call whatever its length,
so below a handful of frames stepping them one at a time is faster. The scores, the detector and its settings are the torch engine's:
softmax posteriors for keyword models, :class:`~ssm_signal.events.EventDetector` over the bundle's
detector configuration from the sidecar (calibrated thresholds included), unless ``detector`` overrides.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnxruntime as ort

from ssm_signal.events import DetectorConfig, EventDetector
from ssm_signal.runtime.sidecar import (
    CHUNK_INPUT,
    FRAME_INPUT,
    OUTPUT,
    PRECISIONS,
    SIDECAR_FILE,
    STATE_IN,
    STATE_OUT,
    ExportedModelError,
    Sidecar,
    read_sidecar,
)

# the folder a bundle's export is written to by default (``ssm-signal export``): a bundle directory
# with this subfolder loads here too
EXPORT_SUBDIR = "onnx"


def find_export(path: str | Path) -> Path:
    """The exported model's directory: ``path`` itself if it holds the sidecar, else ``path``/onnx."""
    p = Path(path)
    if (p / SIDECAR_FILE).is_file():
        return p
    if (p / EXPORT_SUBDIR / SIDECAR_FILE).is_file():
        return p / EXPORT_SUBDIR
    raise ExportedModelError(f"{p} holds no exported model ({SIDECAR_FILE}, or {EXPORT_SUBDIR}/{SIDECAR_FILE} in a "
                             "bundle directory): run `ssm-signal export --model BUNDLE --format onnx` first")


class GraphRunner:
    """One graph of an exported model in an onnxruntime session on the CPU: ``(x, state) -> (y, new state)``.

    x: the first input (``frame`` (B, hop, C) or ``samples`` (B, T hop, C)) as float32; state: {name:
    array} with every state tensor; returns y and the new state as a new dict. ``threads``: intra-op
    threads (1: one core per stream, the latency setting)."""

    def __init__(self, path: str | Path, first_input: str, state_names: list[str], threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # warnings about fusions it skips are not the caller's business
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types for a missing or broken file
            raise ExportedModelError(f"{path}: onnxruntime cannot load it: {' '.join(str(e).split())[:300]}") from e
        self.names = list(state_names)
        self.first = first_input
        self.inputs = [first_input] + [STATE_IN + n for n in self.names]
        self.outputs = [OUTPUT] + [STATE_OUT + n for n in self.names]
        have = [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()]
        if have != (self.inputs, self.outputs):
            raise ExportedModelError(f"{path}: its inputs and outputs are not those its sidecar names")

    def __call__(self, x: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feeds = {self.first: x}
        for n in self.names:
            feeds[STATE_IN + n] = state[n]
        out = self.session.run(self.outputs, feeds)
        return out[0], dict(zip(self.names, out[1:], strict=True))


class FrameLoop:
    """One stream stepped frame by frame through the frame graph, its state in buffers bound to
    onnxruntime once: the fast path of a session's one-frame pushes, :class:`GraphRunner`'s call its
    reference twin (a test holds them equal, frame for frame).

        loop = FrameLoop(runner, batch=1)
        y, state = loop(frame, state)        # as runner(frame, state): (B, hop, C) -> y (B, out), new state

    Two sets of state buffers, each bound as the inputs of one IOBinding and the outputs of the other,
    so a step reads one set and writes the other, which the next step reads: no feeds are built and no
    arrays made per step (a GraphRunner call builds a feed per state tensor and receives new arrays,
    about a sixth of the default model's step). The state a call returns is the set just written, as a
    read-only mapping of read-only views; passed back to the next call it is used where it lies, and any
    other state (a restored snapshot, the chunk graph's output) is copied in first. Those views are
    overwritten by the step after next, so a caller keeps only the latest state (a session does); a
    step reads only the set it is given, so one that raises leaves that state as it was.
    """

    def __init__(self, runner: GraphRunner, batch: int = 1):
        s = runner.session
        self.runner, self.batch = runner, batch

        def buffer(arg) -> np.ndarray:
            shape = [batch] + [int(d) for d in arg.shape[1:]]
            return np.zeros(shape, np.int64 if arg.type == "tensor(int64)" else np.float32)

        inputs, outputs = s.get_inputs(), s.get_outputs()
        self._x, self._y = buffer(inputs[0]), buffer(outputs[0])
        self._sets = [{n: buffer(a) for n, a in zip(runner.names, inputs[1:], strict=True)} for _ in range(2)]
        self._bindings = []
        for src, dst in ((0, 1), (1, 0)):
            b = s.io_binding()
            b.bind_cpu_input(runner.first, self._x)
            b.bind_output(OUTPUT, "cpu", 0, self._y.dtype, self._y.shape, self._y.ctypes.data)
            for n in runner.names:
                b.bind_cpu_input(STATE_IN + n, self._sets[src][n])
                a = self._sets[dst][n]
                b.bind_output(STATE_OUT + n, "cpu", 0, a.dtype, a.shape, a.ctypes.data)
            self._bindings.append(b)
        self._views = [MappingProxyType({n: _read_only(a) for n, a in st.items()}) for st in self._sets]
        self._current = 0  # the set that holds the latest state

    def __call__(self, x: np.ndarray, state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        if x.shape != self._x.shape:
            raise ValueError(f"FrameLoop: a frame of shape {tuple(self._x.shape)}, got {tuple(x.shape)}")
        cur = self._current
        if state is not self._views[cur]:  # a state from elsewhere: into the set this step reads
            for n, a in self._sets[cur].items():
                if state[n].shape != a.shape:
                    raise ValueError(f"FrameLoop: state {n} of shape {a.shape}, got {state[n].shape}")
                np.copyto(a, state[n])
        self._x[...] = x
        self.runner.session.run_with_iobinding(self._bindings[cur])
        self._current = cur ^ 1
        return self._y.copy(), self._views[cur ^ 1]


def _read_only(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


@dataclasses.dataclass
class RuntimeConfig:
    """How an exported model runs. precision: "float32" or "int8" (the quantized graphs); threads:
    onnxruntime's intra-op threads; detector: overrides of the bundle's detector settings (fields
    left None keep them); window_frames: frames per chunk-graph call (memory is bounded by it);
    min_chunk_frames: fewer frames in a push step through the frame graph one at a time (the log-mel keyword
    model on one CPU thread, docs/performance.md: the frame graph 0.080 ms a frame, its parallel chunk graph
    0.099 ms a frame in calls of 4 frames and 0.069 ms in calls of 6);
    max_chunk_seconds: longer pushes are refused (push them in parts)."""

    precision: str = "float32"
    threads: int = 1
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    window_frames: int = 1000
    min_chunk_frames: int = 6
    max_chunk_seconds: float = 3600.0

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.detector, dict):
            self.detector = DetectorConfig(**self.detector)
        if self.threads < 1 or self.window_frames < 1 or self.min_chunk_frames < 1:
            raise ValueError(f"threads, window_frames and min_chunk_frames must be >= 1, got {self.threads}, "
                             f"{self.window_frames}, {self.min_chunk_frames}")
        if not 0 < self.max_chunk_seconds <= 24 * 3600:
            raise ValueError(f"max_chunk_seconds must be in (0, 86400], got {self.max_chunk_seconds}")


class OnnxModel:
    """An exported model (see the module docstring): the stream's model, scores and detector."""

    def __init__(self, path: str | Path, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self.sidecar: Sidecar = read_sidecar(find_export(path))
        sc = self.sidecar
        names = [s.name for s in sc.state]
        self.frame = GraphRunner(sc.graph_path("frame", self.config.precision), FRAME_INPUT, names, self.config.threads)
        self.chunk = GraphRunner(sc.graph_path("chunk", self.config.precision), CHUNK_INPUT, names, self.config.threads)
        self.rate, self.samples_per_frame, self.in_channels = sc.sample_rate, sc.samples_per_frame, sc.in_channels
        self.audio, self.kind, self.labels = sc.audio, sc.kind, list(sc.labels)
        self.frame_rate = sc.frame_rate
        self.detector = EventDetector(self.kind, self.labels, self.frame_rate,
                                      self.config.detector.over(sc.detector), default_threshold=sc.default_threshold)

    # the names a torch StreamEngine has, so what shows a stream (the live page) takes either
    @property
    def name(self) -> str:
        return self.sidecar.bundle.get("name", "")

    @property
    def version(self) -> str:
        return self.sidecar.bundle.get("version", "")

    @property
    def width(self) -> int:
        return len(self.labels)

    def init_model_state(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """The zero state of ``batch_size`` streams: {name: (B, *shape)} (a fresh model state is all zeros)."""
        return {s.name: np.zeros((batch_size, *s.shape), np.float32 if s.dtype == "float32" else np.int64)
                for s in self.sidecar.state}

    def run(self, x: np.ndarray, state: Mapping[str, np.ndarray],
            loop: FrameLoop | None = None) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """Whole frames x (B, F * hop, C) float32 -> outputs (B, F, out_dim), new state. ``loop``: the
        stream's :class:`FrameLoop` (see there), which runs frames one at a time instead of the frame graph's
        runner."""
        hop = self.samples_per_frame
        F = x.shape[1] // hop
        if F * hop != x.shape[1]:
            raise ValueError(f"OnnxModel.run takes whole frames: {x.shape[1]} samples is not a multiple of {hop}")
        if F < self.config.min_chunk_frames:
            step, ys = loop or self.frame, []
            for t in range(F):
                y, state = step(np.ascontiguousarray(x[:, t * hop:(t + 1) * hop], np.float32), state)
                ys.append(y[:, None])
            return (np.concatenate(ys, 1) if F > 1 else ys[0]), state
        ys, w = [], self.config.window_frames * hop
        for start in range(0, x.shape[1], w):
            y, state = self.chunk(np.ascontiguousarray(x[:, start:start + w], np.float32), state)
            ys.append(y)
        return (np.concatenate(ys, 1) if len(ys) > 1 else ys[0]), state

    def scores(self, y: np.ndarray) -> np.ndarray:
        """Model outputs -> scores: softmax posteriors for keyword models, else as they are (float32)."""
        y = np.asarray(y, np.float32)
        if self.kind != "keyword":
            return y
        e = np.exp(y - y.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def frame_loop(self, batch_size: int = 1) -> FrameLoop:
        """A new :class:`FrameLoop` over the frame graph, for one stream's (``batch_size`` streams')
        frame-by-frame steps."""
        return FrameLoop(self.frame, batch_size)

    def new_session(self):
        """A new stream of this model (:class:`~ssm_signal.runtime.session.OnnxSession`)."""
        from ssm_signal.runtime.session import OnnxSession

        return OnnxSession(self)

    def warm_up(self, rates: tuple[int, ...] = (48000, 16000), chunk_seconds: tuple[float, ...] = (0.02, 0.2)) -> float:
        """Stream silence through throwaway sessions (builds the resampler filters, runs both graphs
        once, so the first real chunk is not slow). Returns seconds taken."""
        t0 = time.perf_counter()
        for rate in rates if self.audio else (self.rate,):
            s = self.new_session()
            for seconds in chunk_seconds:
                s.push(np.zeros((max(1, int(seconds * rate)), self.in_channels), np.float32), rate)
            s.flush()
        return time.perf_counter() - t0
