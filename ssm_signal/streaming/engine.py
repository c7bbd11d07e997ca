"""The streaming core: ``process(chunk, state) -> (out, state)`` for one bundle's model.

    engine = StreamEngine(bundle)
    state = engine.init_state()
    out, state = engine.process(chunk, 44100, state)   # chunk (B, n, C) float32 at 44.1 kHz
    out, state = engine.flush(state)                     # the end of the stream

Per chunk, with the state carried through every stage:

    chunk --admit (the checks)--> samples at the input rate
        --Resampler (causal, aligned)--> samples at the model rate
        --split_frames--> whole frames (a pending partial frame waits in the state)
        --run_model--> SignalModel outputs (the chunked forward, or ``model._step`` per frame)
        --outputs--> scores (classify: softmax posteriors; anomaly: score) --> EventDetector

:class:`StreamPool` runs the same stages (``admit``, the resampler and ``split_frames`` per push,
``outputs`` per tick) with one batched ``model._step`` per tick in between.

Everything a stream remembers is in :class:`EngineState` (a typed State), so the output
never depends on how the stream was cut into chunks, states of several streams stack
along the batch dimension, and a snapshot is just its ``state_dict``. The functions here
are pure: they return a new state and never touch the caller's. :class:`StreamingSession`
(one stream) and :class:`StreamPool` (many) are the shells around them.

Long chunks are processed in windows of ``window_seconds`` of input with the state carried
across them, so memory does not grow with the chunk (up to ``max_chunk_seconds``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time

import torch
from torch import Tensor

from ssm_signal.bundle import Bundle
from ssm_signal.events import DetectorArrays, DetectorConfig, Event, EventDetector
from ssm_signal.frontends.resample import Resampler, ResamplerState, shared_resampler
from ssm_signal.models import SignalModel, SignalModelState
from ssm_signal.signal_input import admit, check_sample_rate
from ssm_signal.state import State, batch_value
from ssm_signal.streaming.step import aot_step, compiled

log = logging.getLogger("ssm_signal.streaming")


@dataclasses.dataclass
class StreamConfig:
    """How a stream is processed.

    detector: smoothing, threshold and refractory period of events; fields left None take the
        bundle's settings (its calibrated thresholds), else the detector's defaults.
    window_seconds: long chunks run through the model in windows of this many seconds of
        input, the state carried across (memory bounded by the window, not the chunk).
    max_chunk_seconds: longer chunks are refused (push them in parts).
    compile: how single frames run (the latency path): "aot" (the frame step compiled ahead of
        time by AOTInductor, cached on disk; fastest per call), "jit" (``torch.compile``), or
        False / "eager". True means "aot"; None: "aot" on CPU when a C++ compiler exists, else
        eager. Compiling takes tens of seconds once (``StreamEngine.warm_up`` does it up front).
    step_max_frames: chunks completing up to this many frames use the per-frame step; more
        use the model's chunked forward (None: 32 when compiled, 2 in eager mode).
    """

    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    window_seconds: float = 10.0
    max_chunk_seconds: float = 3600.0
    compile: bool | str | None = None
    step_max_frames: int | None = None

    def __post_init__(self):
        if isinstance(self.detector, dict):
            self.detector = DetectorConfig(**self.detector)
        if not 0.01 <= self.window_seconds <= 600:
            raise ValueError(f"window_seconds must be in [0.01, 600], got {self.window_seconds}")
        if not 0 < self.max_chunk_seconds <= 24 * 3600:
            raise ValueError(f"max_chunk_seconds must be in (0, 86400], got {self.max_chunk_seconds}")
        if self.compile not in (None, True, False, "aot", "jit", "eager"):
            raise ValueError(f"compile must be None, True, False, 'aot', 'jit' or 'eager', got {self.compile!r}")
        if self.step_max_frames is not None and self.step_max_frames < 0:
            raise ValueError(f"step_max_frames must be >= 0, got {self.step_max_frames}")


@dataclasses.dataclass(frozen=True)
class DetectorState(State):
    """The event detector's state as a typed State (:class:`~ssm_signal.events.DetectorArrays` as tensors):
    recent (B, W-1, C) the last W-1 frame scores; seen (B,) int64 frames seen; quiet_until (B,) int64
    the first frame allowed to fire; held (B,) int64 the label held at the last frame (-1: none)."""

    recent: Tensor
    seen: Tensor
    quiet_until: Tensor
    held: Tensor

    def arrays(self) -> DetectorArrays:
        return DetectorArrays(*(t.numpy() for t in (self.recent, self.seen, self.quiet_until, self.held)))

    @classmethod
    def of(cls, a: DetectorArrays) -> DetectorState:
        return cls(*(torch.from_numpy(x) for x in (a.recent, a.seen, a.quiet_until, a.held)))


@dataclasses.dataclass(frozen=True)
class EngineState(State):
    """Everything one or more streams remember (batch dimension first in every tensor).

    resampler: () until the first chunk fixes the input rate, then (ResamplerState,);
    pending: (B, samples_per_frame, C) model-rate samples of the unfinished frame (first
    ``n_pending``); model: the SignalModel's state (frontend at frame phase 0);
    detector: the event detector's state (its ``seen`` counts frames);
    input_rate: (B,) int64 Hz (0 = not yet known); samples_in: (B,) int64 input samples
    received; finished: (B,) int64, 1 once flushed.
    """

    resampler: tuple[ResamplerState, ...]
    pending: Tensor
    n_pending: Tensor
    model: SignalModelState
    detector: DetectorState
    input_rate: Tensor
    samples_in: Tensor
    finished: Tensor


@dataclasses.dataclass
class EngineOutput:
    """scores: (B, F, C) per-frame scores (classify: posteriors; anomaly: score; forecast:
    the forecast); smoothed: (B, F, C) their moving average; events: per stream; first_frame:
    index of the first of these frames in the stream."""

    scores: Tensor
    smoothed: Tensor
    events: list[list[Event]]
    first_frame: int

    @staticmethod
    def cat(outs: list[EngineOutput]) -> EngineOutput:
        if len(outs) == 1:
            return outs[0]
        return EngineOutput(torch.cat([o.scores for o in outs], 1), torch.cat([o.smoothed for o in outs], 1),
                            [sum((o.events[b] for o in outs), []) for b in range(len(outs[0].events))],
                            outs[0].first_frame)


class StreamEngine:
    """The pure streaming functions for one bundle (see the module docstring).

    device: where the model runs (a copy of the bundle's model if that lives elsewhere).
    """

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, config: StreamConfig | None = None):
        if not isinstance(bundle, Bundle):
            raise ValueError(f"StreamEngine needs a Bundle (ssm_signal.load_bundle), got {type(bundle).__name__}")
        self.bundle = bundle
        self.config = config or StreamConfig()
        model = bundle.model
        current = next(model.parameters()).device
        self.device = torch.device(device) if device is not None else current
        if self.device != current:
            model = copy.deepcopy(model).to(self.device)
        self.model: SignalModel = model.eval()
        cfg = bundle.config
        self.rate, self.samples_per_frame, self.in_channels = bundle.sample_rate, model.samples_per_frame, bundle.in_channels
        self.audio = cfg.frontend.audio
        self.frame_rate = self.rate / self.samples_per_frame
        head = cfg.head.kind
        self.kind = {"classify": "keyword", "anomaly": "anomaly"}.get(head, "none")
        self.labels = list(cfg.labels) if head == "classify" and cfg.labels else (
            [str(i) for i in range(cfg.head.num_classes)] if head == "classify" else
            ["anomaly"] if head == "anomaly" else [f"f{i}" for i in range(model.d_output)])
        # the caller's settings where given, else the bundle's (calibrated thresholds), else the defaults
        self.detector = EventDetector(self.kind, self.labels, self.frame_rate,
                                      self.config.detector.over(bundle.detector), default_threshold=cfg.head.threshold)
        mode = self.config.compile
        if mode is None:
            mode = "aot" if self.device.type == "cpu" and _have_compiler() else "eager"
        self.mode = {True: "aot", False: "eager"}.get(mode, mode)
        self.compiled = self.mode != "eager"
        self._aot = None  # built on first use (compiling takes a while)
        self._jit = compiled(self.model, "frame") if self.mode == "jit" else None
        self.step_max_frames = self.config.step_max_frames if self.config.step_max_frames is not None else (
            32 if self.compiled else 2)

    def _steps(self, x: Tensor, F: int, state: SignalModelState) -> tuple[Tensor, SignalModelState]:
        """F frames one by one through the frame step of ``self.mode``. x: (B, >= F * hop, C)."""
        frames = [canonical(x[:, f * self.samples_per_frame:(f + 1) * self.samples_per_frame]) for f in range(F)]  # compiled code: row-major
        ys = []
        if self.mode == "aot" and self._aot is None:
            try:
                self._aot = aot_step(self.model, x.shape[0])
            except Exception as e:  # AOTInductor cannot lower every op (S4D's complex arithmetic, ...)
                log.warning("ahead-of-time compilation failed (%s: %s); using torch.compile instead",
                            type(e).__name__, str(e).splitlines()[0][:200])
                self.mode, self._jit = "jit", compiled(self.model, "frame")
        if self.mode == "aot":
            flat = [canonical(t) for t in self._aot.flat(state)]
            for frame in frames:
                y, flat = self._aot.step_flat(frame, flat)
                ys.append(y)
            return torch.stack(ys, 1), self._aot.state(flat)
        step = self._jit if self.mode == "jit" else self.model._step
        for frame in frames:
            y, state = step(frame, state)
            ys.append(y)
        return torch.stack(ys, 1), state

    # -- state --------------------------------------------------------------------------------
    @torch.inference_mode()
    def init_state(self, batch_size: int = 1, sample_rate: int | None = None) -> EngineState:
        """A fresh stream (input rate unknown until the first chunk, or ``sample_rate``)."""
        resampler: tuple[ResamplerState, ...] = ()
        rate = 0
        if sample_rate is not None:
            rate = check_sample_rate(sample_rate, self.rate, self.audio)
            resampler = (self.resampler(rate).init_state(batch_size),)
        i64 = dict(dtype=torch.int64)
        return EngineState(
            resampler=resampler,
            pending=torch.zeros(batch_size, self.samples_per_frame, self.in_channels),
            n_pending=torch.zeros(batch_size, **i64),
            model=self.model.init_state(batch_size, device=self.device),
            detector=DetectorState.of(self.detector.init_state(batch_size)),
            input_rate=torch.full((batch_size,), rate, **i64),
            samples_in=torch.zeros(batch_size, **i64),
            finished=torch.zeros(batch_size, **i64),
        )

    @property
    def width(self) -> int:
        """Columns of the scores: labels (classify), 1 (anomaly), features (forecast)."""
        return len(self.labels)

    def new_session(self):
        """A new stream sharing this engine (a ``StreamingSession``); the torch-free ``OnnxModel`` has the
        same method, so what shows a stream (``LiveStream``) takes either."""
        from ssm_signal.streaming.session import StreamingSession  # the session module imports this one

        return StreamingSession.from_engine(self)

    def resampler(self, rate: int) -> Resampler:
        return shared_resampler(rate, self.rate, self.in_channels)

    def warm_up(self, rates: tuple[int, ...] | None = None,
                chunk_seconds: tuple[float, ...] = (0.02, 0.2, 1.0, 0.02)) -> float:
        """Stream silence through throwaway states at each rate and chunk size, so the first real
        chunk is not slow (compiles the step, builds the resampler filters; a short chunk after a
        long one covers the switch from the chunked forward to the step). Returns seconds taken.
        rates: None = the microphone rates (48 and 16 kHz) for audio, the model's own rate for sensors
        (tables and sensor feeds come at the model's rate)."""
        t0 = time.perf_counter()
        for rate in rates or ((48000, 16000) if self.audio else (self.rate,)):
            state = self.init_state(1)
            for seconds in chunk_seconds:
                chunk = torch.zeros(1, max(1, int(seconds * rate)), self.in_channels)
                _, state = self.process(chunk, rate, state)
            self.flush(state)
        return time.perf_counter() - t0

    # -- the core -------------------------------------------------------------------------------
    def admit(self, n: int, channels: int, sample_rate, input_rate: int, finished: bool) -> int:
        """The checks a chunk passes before it touches a stream (:func:`ssm_signal.signal_input.admit`, with
        this model's channels and rate). Returns the rate; raises ValueError. :meth:`process` and
        ``StreamPool.push`` both call it."""
        return admit(n, channels, sample_rate, in_channels=self.in_channels, model_rate=self.rate, audio=self.audio,
                     input_rate=input_rate, finished=finished, max_chunk_seconds=self.config.max_chunk_seconds)

    @torch.inference_mode()
    def process(self, chunk: Tensor, sample_rate: int, state: EngineState) -> tuple[EngineOutput, EngineState]:
        """chunk (B, n, C) float32 at ``sample_rate`` (n >= 0) -> the frames it completes, and the new state."""
        B, n, C = chunk.shape
        state = _inference(state)
        known = batch_value(state.input_rate, "input rate")
        rate = self.admit(n, C, sample_rate, known, bool(state.finished.any()))
        if known == 0 and n == 0:  # no samples say nothing of the stream's rate: the first samples fix it
            return self._empty(state), state
        if known == 0:
            state = dataclasses.replace(state, resampler=(self.resampler(rate).init_state(B),),
                                        input_rate=torch.full_like(state.input_rate, rate))
        window = max(1, int(self.config.window_seconds * rate))
        outs, r = [], self.resampler(rate)
        for start in range(0, max(n, 1), window):
            y, rs = r._forward(chunk[:, start:start + window], state.resampler[0])
            out, state = self._frames(y, dataclasses.replace(state, resampler=(rs,)))
            outs.append(out)
        state = dataclasses.replace(state, samples_in=state.samples_in + n)
        return EngineOutput.cat(outs), state

    @torch.inference_mode()
    def flush(self, state: EngineState) -> tuple[EngineOutput, EngineState]:
        """End the stream: release the resampler's last samples, run the frames they complete.

        A final partial frame is dropped (as in ``Bundle.predict``). The state is then finished.
        """
        state = _inference(state)
        if bool(state.finished.any()):
            raise ValueError("the stream was already flushed; reset it to start a new one")
        if state.resampler:
            rate = batch_value(state.input_rate, "input rate")
            tail, rs = self.resampler(rate).flush(state.resampler[0])
            out, state = self._frames(tail, dataclasses.replace(state, resampler=(rs,)))
        else:
            out = self._empty(state)
        return out, dataclasses.replace(state, finished=torch.ones_like(state.finished))

    def _empty(self, state: EngineState) -> EngineOutput:
        B = state.batch_size
        z = torch.zeros(B, 0, self.width)
        return EngineOutput(z, z, [[] for _ in range(B)], batch_value(state.detector.seen, "frame count"))

    def _frames(self, y: Tensor, state: EngineState) -> tuple[EngineOutput, EngineState]:
        """Model-rate samples y (B, m, C) -> the whole frames they complete with the pending ones."""
        n_p = batch_value(state.n_pending, "pending samples")
        whole, rest = split_frames(state.pending[:, :n_p], y, self.samples_per_frame)
        pending = torch.zeros_like(state.pending)
        pending[:, :rest.shape[1]] = rest
        state = dataclasses.replace(state, pending=pending, n_pending=torch.full_like(state.n_pending, rest.shape[1]))
        if whole.shape[1] == 0:
            return self._empty(state), state
        first = batch_value(state.detector.seen, "frame count")
        out, ms = self.run_model(whole, state.model)
        scores, smoothed, events, ds = self.outputs(out, state.detector)
        return EngineOutput(scores, smoothed, events, first), dataclasses.replace(state, model=ms, detector=ds)

    def outputs(self, out: Tensor, detector: DetectorState
                ) -> tuple[Tensor, Tensor, list[list[Event]], DetectorState]:
        """Model outputs (B, F, out_dim) -> scores (B, F, C) on the host, their moving average (B, F, C),
        each stream's events, and the detectors' new state. The last stage of :meth:`process` and of
        every StreamPool tick (whose streams may be at different frames: the detector counts per stream)."""
        scores = self.scores(out).cpu()
        smoothed, events, ds = self.detector(scores.numpy(), detector.arrays())
        return scores, torch.from_numpy(smoothed), events, DetectorState.of(ds)

    def run_model(self, x: Tensor, state: SignalModelState) -> tuple[Tensor, SignalModelState]:
        """Whole frames x (B, F * hop, C) at the model rate -> outputs (B, F, out_dim), new state.

        Few frames: the per-frame step (compiled on CPU); many: the chunked forward in windows.
        Both compute the same function (the state contract), up to float rounding.
        """
        x = x.to(self.device)
        F = x.shape[1] // self.samples_per_frame
        if F <= self.step_max_frames:
            return self._steps(x, F, state)
        window = max(1, int(self.config.window_seconds * self.rate) // self.samples_per_frame) * self.samples_per_frame
        ys = []
        for start in range(0, x.shape[1], window):
            y, state = self.model._forward(x[:, start:start + window], state)
            ys.append(y)
        # back to row-major layouts, as the compiled step returns them (else it would recompile)
        return torch.cat(ys, 1), state._apply(canonical) if self.compiled else state

    def scores(self, out: Tensor) -> Tensor:
        """Model outputs -> the scores a Prediction reports: softmax for classification, else as is."""
        out = out.float()
        return torch.softmax(out, dim=-1) if self.kind == "keyword" else out


def split_frames(pending: Tensor, y: Tensor, hop: int) -> tuple[Tensor, Tensor]:
    """The framing of a stream: pending samples (B, p, C) followed by new ones y (B, m, C) -> the
    whole frames (B, F * hop, C) with F = (p + m) // hop, and the rest (B, (p + m) - F * hop, C),
    which waits for the next samples. The engine and the pool frame through this one function."""
    buf = torch.cat([pending, y], dim=1) if pending.shape[1] else y
    F = buf.shape[1] // hop
    return buf[:, :F * hop], buf[:, F * hop:]


def _inference(state: EngineState) -> EngineState:
    """The state with inference tensors only (the compiled step is specialised on that too)."""
    # states this engine returns are inference tensors throughout: checking two is enough
    if state.pending.is_inference() and next(state.model.tensors()).is_inference():
        return state
    return state._apply(lambda t: t if t.is_inference() else t.clone())


def canonical(t: Tensor) -> Tensor:
    """``t`` with row-major strides (a copy only if its strides differ, size-1 dims included)."""
    expected, acc = [], 1
    for size in reversed(t.shape):
        expected.append(acc)
        acc *= max(size, 1)
    if tuple(reversed(expected)) == t.stride():
        return t
    return t.clone(memory_format=torch.contiguous_format)


@functools.cache
def _have_compiler() -> bool:
    """A C++ compiler for Inductor's CPU code (compiled steps fall back to eager without one)."""
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
