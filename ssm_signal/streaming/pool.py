"""StreamPool: many concurrent streams, one batched model call per tick.

    pool = StreamPool(bundle, slots=64)
    a, b = pool.add(), pool.add()
    pool.push(a, chunk_a, 48000); pool.push(b, chunk_b, 16000)   # any sizes and rates, per stream
    updates = pool.run()           # {stream id: Update}: ticks until no stream has a whole frame
    pool.reset(a); pool.remove(b)  # per stream; the others are untouched

Each stream has its own input rate, resampler state and FIFO of model-rate samples, kept on
the host. A tick takes one frame from every stream that has one, stacks them into a fixed
(slots, samples_per_frame, channels) batch and runs ONE model step over all slots
(``pool_step``: frontend, backbone and head, with a per-slot mask so that streams without a
frame keep their state). Scores and events are then computed per stream on the host.

The step runs through a *runner* over a fixed number of slots:

- ``eager``: the plain function, the reference twin of the others;
- ``compiled`` (CPU): ``torch.compile``d, far fewer dispatches per tick (the latency path);
- ``cuda_graph`` (CUDA): the whole step, frontend included, compiled by Inductor and captured
  as CUDA graphs on static buffers, replayed per tick (a handful of microseconds of launch
  overhead instead of one launch per op; the new state written over the old in place). The
  state lives in the graphs' static tensors. Building it compiles (10-30 s).

Slots grow by doubling as streams join (eager/compiled: a compiled step is specialised per
slot count); the CUDA-graph runner has a fixed ``slots`` and refuses streams beyond it.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time

import numpy as np
import torch
from torch import Tensor

from ssm_signal.bundle import Bundle, pcm_to_float
from ssm_signal.events import DetectorState
from ssm_signal.frontends.resample import ResamplerState
from ssm_signal.models import SignalModel, SignalModelState
from ssm_signal.streaming.engine import (
    StreamConfig,
    StreamEngine,
    _have_compiler,
    as_samples,
    canonical,
    check_sample_rate,
)
from ssm_signal.streaming.session import Timing, Update
from ssm_signal.streaming.step import compiled, frame_step_, pool_step

RUNNERS = ("auto", "eager", "compiled", "cuda_graph")
# a sanity bound, not a kernel limit: the step kernels index streams on the large grid axis
MAX_SLOTS = 1 << 20


# -------------------------------------------------------------------------------------------------
# runners: the batched model step over a fixed set of slots
# -------------------------------------------------------------------------------------------------
class EagerRunner:
    """``pool_step`` as plain PyTorch; holds the (slots, ...) model state."""

    def __init__(self, model: SignalModel, slots: int, device: torch.device):
        self.model, self.slots, self.device = model, slots, device
        with torch.inference_mode():
            self.state: SignalModelState = model.init_state(slots, device=device)

    def _fn(self, frames: Tensor, active: Tensor, state: SignalModelState):
        return pool_step(self.model, frames, active, state)

    @torch.inference_mode()
    def step(self, frames: Tensor, active: Tensor) -> Tensor:
        """frames (slots, hop, C), active (slots,) bool -> y (slots, out_dim) on the host."""
        y, self.state = self._fn(frames.to(self.device), active.to(self.device), self.state)
        return y.float().cpu()

    @torch.inference_mode()
    def reset(self, slot: int) -> None:
        mask = torch.zeros(self.slots, dtype=torch.bool)
        mask[slot] = True
        self.state = self.state.reset(mask.to(self.device))

    @torch.inference_mode()
    def grow(self, slots: int) -> None:
        extra = self.model.init_state(slots - self.slots, device=self.device)
        self.state = type(self.state).cat([self.state, extra])
        self.slots = slots


class CompiledRunner(EagerRunner):
    """``torch.compile``d ``pool_step`` (CPU latency path); recompiles once per slot count."""

    def _fn(self, frames, active, state):
        return compiled(self.model, "pool")(canonical(frames), canonical(active), state._apply(canonical))


def tick_in_place(model: SignalModel, frames: Tensor, active: Tensor, state: SignalModelState,
                  masked: bool) -> Tensor:
    """One pool tick written over ``state``'s tensors: :func:`frame_step_` for every slot, or (masked)
    only for the slots where ``active`` is true. Returns y (slots, out_dim). The body of
    :class:`CudaGraphRunner`'s graphs. With the Triton backend the Mamba/Mamba-2 SSM states advance
    in place inside their step kernels (read once, written once: no new state to copy back, and idle
    slots' states are not touched at all; other backends write them back with ``where``, bit for bit
    the same); the other state tensors are computed anew and written back with
    ``copy_`` / ``where``. Equals ``pool_step`` followed by writing its state back (tests compare).
    int16 frames are 16-bit PCM, scaled as ``pcm_to_float`` does (fused into the frontend)."""
    if frames.dtype == torch.int16:
        frames = pcm_to_float(frames)
    return frame_step_(model, frames, state, active if masked else None)


def _tick_all(model, frames, active, state):
    return tick_in_place(model, frames, active, state, masked=False)


def _tick_masked(model, frames, active, state):
    return tick_in_place(model, frames, active, state, masked=True)


# one compiled entry point per variant: torch.compile keeps at most 8 specialisations per
# function (here: slot counts and models); past that a runner would get the unfused ops
_TICKS = {False: _tick_all, True: _tick_masked}


class CudaGraphRunner:
    """The pool step captured as CUDA graphs over ``slots`` static stream slots.

    Static tensors: the input frames, the active mask and the model state. Two graphs are
    captured, both running :func:`tick_in_place` on them:

    - ``all``: every slot advances: the tick of a busy server, where every stream has its frame;
      free slots may advance too, since a slot is zeroed when a stream takes it;
    - ``masked``: exactly the active slots advance (with the Triton kernels the SSM states of idle
      slots are not even read; the small frontend, conv and head states pay one more read per tick
      for the ``where``).

    ``step`` replays ``all`` when the mask is all true, else ``masked``. With ``fuse`` (the
    default) the tick is compiled by Inductor before capture: the elementwise work of the
    frontend, convolutions, gates and norms is fused, the small states are written straight over
    the old, and the Triton state updates are called as opaque ops (1.4x fewer milliseconds per
    tick at 65k streams on an H100 than the eager ops, docs/performance.md). Those ops advance the
    SSM states in place and are declared as mutating them, so Inductor passes the static state
    itself: no clone, no copy back. ``fuse=False`` captures the eager ops.
    Compilation takes 10-30 s per slot count; a process compiles at most 8 variants (slot count,
    frame dtype, model), beyond which Inductor falls back to the unfused ops. Reset zeroes a slot's rows in place
    (outside the graphs). ``EagerRunner`` on the same device is the twin (tests compare them on
    both paths and both settings).

    ``pcm16=True``: ``step`` takes int16 PCM frames (what clients send), half the bytes of float32
    to copy in per tick, scaled on the device inside the graph (the same numbers as float frames
    from ``pcm_to_float``).
    """

    def __init__(self, model: SignalModel, slots: int, device: torch.device, warmup: int = 3, fuse: bool = True,
                 pcm16: bool = False):
        if device.type != "cuda":
            raise ValueError(f"CudaGraphRunner needs a CUDA device, got {device}")
        self.model, self.slots, self.device, self.fuse = model, slots, device, fuse
        hop, C = model.samples_per_frame, model.d_model
        bodies = {m: torch.compile(f, dynamic=False) if fuse else f for m, f in _TICKS.items()}
        with torch.inference_mode():
            self.frames = torch.zeros(slots, hop, C, device=device, dtype=torch.int16 if pcm16 else torch.float32)
            self.active = torch.zeros(slots, dtype=torch.bool, device=device)
            self.state = model.init_state(slots, device=device)
            self._tensors = list(self.state.tensors())
            self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}
            self.outputs: dict[bool, Tensor] = {}
            self._host: Tensor | None = None  # the pinned output buffer of step()
            # warm up on a side stream (compilation, allocator pools, cuFFT plans, kernel
            # autotuning), as capture requires; then back to the zero state
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    for masked in (False, True):
                        bodies[masked](model, self.frames, self.active, self.state)
                for t in self._tensors:
                    t.zero_()
            torch.cuda.current_stream(device).wait_stream(side)
            for masked in (False, True):
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.outputs[masked] = bodies[masked](model, self.frames, self.active, self.state)
                self.graphs[masked] = graph

    @torch.inference_mode()
    def step(self, frames: Tensor, active: Tensor) -> Tensor:
        """frames (slots, hop, C) float32 (int16 PCM with ``pcm16``), active (slots,) bool, on the
        host (pinned memory: the copy in overlaps nothing but is faster) -> y (slots, out_dim) in a
        pinned host buffer that the next ``step`` overwrites (copy what you keep; StreamPool indexes
        it at once). Reusing one pinned buffer keeps page faults of a fresh multi-megabyte host
        tensor out of every tick."""
        if frames.dtype != self.frames.dtype:
            raise ValueError(f"this runner takes {self.frames.dtype} frames, got {frames.dtype}")
        masked = not bool(active.all())
        self.frames.copy_(frames, non_blocking=True)
        if masked:
            self.active.copy_(active, non_blocking=True)
        self.graphs[masked].replay()
        out = self.outputs[masked]
        if self._host is None:
            self._host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
        self._host.copy_(out, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return self._host

    @torch.inference_mode()
    def reset(self, slot: int) -> None:
        for t in self._tensors:
            t[slot].zero_()

    def grow(self, slots: int) -> None:
        raise ValueError(f"the CUDA-graph pool has a fixed {self.slots} slots; create it with more")


# -------------------------------------------------------------------------------------------------
# per-stream host bookkeeping
# -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Stream:
    id: int
    slot: int
    channels: int
    rate: int = 0
    resampler: ResamplerState | None = None
    fifo: np.ndarray = None  # (m, C) model-rate samples not yet framed, from ``pos``
    pos: int = 0
    samples_in: int = 0
    flushing: bool = False
    finished: bool = False
    backlog: float = 0.0

    def __post_init__(self):
        if self.fifo is None:
            self.fifo = np.zeros((0, self.channels), np.float32)

    @property
    def available(self) -> int:
        return self.fifo.shape[0] - self.pos

    def append(self, y: np.ndarray) -> None:
        # the unconsumed rest is short (under a frame, unless ticks fall behind), so copying it is cheap
        self.fifo = np.concatenate([self.fifo[self.pos:], y]) if self.available else y
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        out = self.fifo[self.pos:self.pos + n]
        self.pos += n
        return out


class StreamPool:
    """Many streams of one bundle, advanced together one frame per tick (see the module docstring).

    slots: initial number of stream slots (the CUDA-graph runner's fixed maximum).
    runner: "auto" (CUDA: cuda_graph; CPU: compiled when a C++ compiler exists, else eager),
    "eager", "compiled" or "cuda_graph". Thread-safe (calls are serialised).
    """

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, config: StreamConfig | None = None,
                 *, slots: int = 8, runner: str = "auto", engine: StreamEngine | None = None):
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be an int in [1, {MAX_SLOTS}], got {slots!r}")
        config = config or StreamConfig()
        # the engine's own single-stream step is not used here: keep it eager (no compile)
        self.engine = engine or StreamEngine(bundle, device, dataclasses.replace(config, compile=False))
        self.bundle = bundle
        device = self.engine.device
        if runner == "auto":
            runner = "cuda_graph" if device.type == "cuda" else (
                "compiled" if config.compile not in (False, "eager") and _have_compiler() else "eager")
        if runner == "cuda_graph":
            self.runner = CudaGraphRunner(self.engine.model, slots, device)
        elif runner == "compiled":
            self.runner = CompiledRunner(self.engine.model, slots, device)
        else:
            self.runner = EagerRunner(self.engine.model, slots, device)
        self.runner_kind = runner
        self.detector_state: DetectorState = self.engine.detector.init_state(slots)
        self._streams: dict[int, _Stream] = {}
        self._free = list(range(slots))
        self._ids = itertools.count()
        self._lock = threading.Lock()

    # -- membership ---------------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        return self.runner.slots

    @property
    def streams(self) -> list[int]:
        return list(self._streams)

    def add(self) -> int:
        """A new stream (fresh state); returns its id."""
        with self._lock:
            if not self._free:
                old, new = self.slots, self.slots * 2
                self.runner.grow(new)  # the CUDA-graph runner refuses: its slots are fixed
                extra = self.engine.detector.init_state(new - old)
                self.detector_state = DetectorState.cat([self.detector_state, extra])
                self._free = list(range(old, new))
            slot = self._free.pop(0)
            sid = next(self._ids)
            self._streams[sid] = _Stream(sid, slot, self.engine.channels)
            self._zero_slot(slot)
            return sid

    def remove(self, stream_id: int) -> None:
        """The stream leaves; its slot is zeroed and reused."""
        with self._lock:
            s = self._get(stream_id)
            self._zero_slot(s.slot)
            self._free.append(s.slot)
            del self._streams[stream_id]

    def reset(self, stream_id: int) -> None:
        """Forget one stream's past (any rate may follow); the others are untouched."""
        with self._lock:
            s = self._get(stream_id)
            self._zero_slot(s.slot)
            self._streams[stream_id] = _Stream(stream_id, s.slot, self.engine.channels)

    def _zero_slot(self, slot: int) -> None:
        self.runner.reset(slot)
        mask = torch.zeros(self.detector_state.batch_size, dtype=torch.bool)
        mask[slot] = True
        self.detector_state = self.detector_state.reset(mask)

    def _get(self, stream_id: int) -> _Stream:
        if stream_id not in self._streams:
            raise KeyError(f"no stream {stream_id!r} in this pool (streams: {sorted(self._streams)})")
        return self._streams[stream_id]

    # -- input ----------------------------------------------------------------------------------------
    def push(self, stream_id: int, samples, sample_rate: int) -> None:
        """Queue a chunk for one stream (validated and resampled now; framed by the next ticks)."""
        x = as_samples(samples, self.engine.channels)
        with self._lock:
            s = self._get(stream_id)
            if s.finished or s.flushing:
                raise ValueError(f"stream {stream_id} was flushed; reset it to start a new one")
            rate = check_sample_rate(sample_rate, self.engine.rate, self.engine.audio)
            if s.rate and rate != s.rate:
                raise ValueError(f"stream {stream_id}: sample rate changed from {s.rate} to {rate} Hz; reset it first")
            if x.shape[0] > self.engine.config.max_chunk_seconds * rate:
                raise ValueError(f"chunk of {x.shape[0] / rate:.1f} s exceeds max_chunk_seconds; push it in parts")
            r = self.engine.resampler(rate)
            state = s.resampler if s.resampler is not None else r.init_state(1)
            with torch.inference_mode():
                y, state = r._forward(x.unsqueeze(0), state)
            s.rate, s.resampler, s.samples_in = rate, state, s.samples_in + x.shape[0]
            s.append(y[0].numpy())

    def flush(self, stream_id: int) -> None:
        """End a stream: queue the resampler's tail; the next ticks emit its last frames with final=True."""
        with self._lock:
            s = self._get(stream_id)
            if s.finished or s.flushing:
                raise ValueError(f"stream {stream_id} was already flushed")
            if s.resampler is not None:
                with torch.inference_mode():
                    y, s.resampler = self.engine.resampler(s.rate).flush(s.resampler)
                s.append(y[0].numpy())
            s.flushing = True

    def pending_frames(self, stream_id: int) -> int:
        with self._lock:
            return self._get(stream_id).available // self.engine.hop

    # -- ticks ------------------------------------------------------------------------------------------
    def tick(self) -> dict[int, Update]:
        """One batched model step over every stream with a whole frame queued; {id: Update} for those."""
        with self._lock:
            return self._tick()

    def run(self) -> dict[int, Update]:
        """Tick until no stream has a whole frame; each stream's updates merged into one."""
        merged: dict[int, list[Update]] = {}
        with self._lock:
            while True:
                ups = self._tick()
                if not ups:
                    break
                for sid, u in ups.items():
                    merged.setdefault(sid, []).append(u)
            for s in self._streams.values():  # flushed streams with no whole frame left
                if s.flushing and not s.finished:
                    s.finished = True
                    merged.setdefault(s.id, []).append(self._empty_update(s, final=True))
        return {sid: Update.merge(us) for sid, us in merged.items()}

    def _tick(self) -> dict[int, Update]:
        hop = self.engine.hop
        ready = [s for s in self._streams.values() if s.available >= hop and not s.finished]
        if not ready:
            return {}
        t0 = time.perf_counter()
        S, C = self.slots, self.engine.channels
        frames = np.zeros((S, hop, C), np.float32)
        active = np.zeros(S, bool)
        for s in ready:
            frames[s.slot] = s.take(hop)
            active[s.slot] = True
        if self.runner_kind == "cuda_graph":
            active[self._free] = True  # free slots are zeroed when taken: advancing them lets the unmasked graph run
        y = self.runner.step(torch.from_numpy(frames), torch.from_numpy(active))  # the one batched call
        idx = torch.tensor([s.slot for s in ready])
        scores = self.engine.scores(y[idx]).unsqueeze(1)  # (R, 1, C)
        sub = self.detector_state.select(idx)
        first = sub.seen.tolist()
        smoothed, events, sub = self.engine.detector(scores, sub)
        self.detector_state = _scatter(self.detector_state, idx, sub)
        elapsed = time.perf_counter() - t0
        audio_s = hop / self.engine.rate
        out = {}
        for i, s in enumerate(ready):
            final = s.flushing and s.available < hop
            s.finished = final
            s.backlog = max(0.0, s.backlog + elapsed - audio_s)
            out[s.id] = Update.of_frames(scores[i].numpy(), smoothed[i].numpy(), first[i], self.engine.frame_rate,
                                         events[i], Timing.of(elapsed, audio_s, s.backlog), self.engine.labels, final)
        return out

    def _empty_update(self, s: _Stream, final: bool) -> Update:
        return Update.empty(self.engine.width, int(self.detector_state.seen[s.slot]), s.backlog, self.engine.labels,
                            final)


def _scatter(state: DetectorState, idx: Tensor, sub: DetectorState) -> DetectorState:
    """``state`` with rows ``idx`` replaced by ``sub``."""
    def put(full: Tensor, part: Tensor) -> Tensor:
        out = full.clone()
        out[idx] = part.to(out.dtype)
        return out

    return DetectorState(*(put(getattr(state, f.name), getattr(sub, f.name)) for f in dataclasses.fields(state)))
