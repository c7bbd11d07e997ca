"""StreamPool: many concurrent streams of one bundle, one batched model step per tick.

    pool = StreamPool(bundle, slots=64)
    a, b = pool.add(), pool.add()
    pool.push(a, chunk_a, 48000); pool.push(b, chunk_b, 16000)   # any sizes and rates, per stream
    updates = pool.run()           # {stream id: Update}: ticks until no stream has a whole frame
    pool.reset(a); pool.remove(b)  # per stream; the others are untouched
    blob = pool.snapshot(a)        # one stream, in the format StreamingSession.restore reads
    c = pool.add(snapshot=blob)    # and back (from a session's snapshot too)

The pool is the streaming core of :class:`StreamEngine` batched over stream slots, not a second
engine. Everything the streams remember is one :class:`EngineState` of ``slots`` rows (row i:
slot i), the state a session holds for one stream: the input stage (input rate, resampler,
pending partial frame, counters), the model state and the detector state. A push runs the
engine's checks (``StreamEngine.admit``), its resampler and its framing (``split_frames``) on the
stream's row; the whole frames it completes wait in the stream's inbox. A tick takes one frame
from every stream that has one, stacks them into a fixed (slots, samples_per_frame, channels)
batch and runs ONE model step over all slots (a runner, ``runners.py``: the model's own
``_step`` with a per-slot mask, so that streams without a frame keep their state); then the
engine's last stage (``StreamEngine.outputs``: scores, smoothing, events) on the streams that
moved.

Two differences from a batch of sessions, both because streams here differ in rate and timing:
rows differ in their input rate, so the resampler history is stored right-aligned in a buffer as
wide as the widest rate needs (:meth:`StreamPool.state_of` cuts a row back to its rate's width),
and the pool writes its own rows in place (a push must not copy every stream's state). It never
hands out its tensors: ``state_of`` and ``snapshot`` return copies.

Slots grow by doubling as streams join (eager/compiled: a compiled step is specialised per slot
count); the CUDA-graph runner has a fixed ``slots`` and refuses streams beyond it.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time

import numpy as np
import torch
from torch import Tensor

from ssm_signal.bundle import Bundle
from ssm_signal.frontends.resample import ResamplerState
from ssm_signal.signal_input import as_samples
from ssm_signal.state import State
from ssm_signal.streaming.engine import (
    EngineState,
    StreamConfig,
    StreamEngine,
    _have_compiler,
    split_frames,
)
from ssm_signal.streaming.runners import CompiledRunner, CudaGraphRunner, EagerRunner
from ssm_signal.streaming.session import Timing, Update, decode_snapshot, encode_snapshot

RUNNERS = ("auto", "eager", "compiled", "cuda_graph")
# a sanity bound, not a kernel limit: the step kernels index streams on the large grid axis
MAX_SLOTS = 1 << 20


class _Inbox:
    """Whole model-rate frames waiting for the ticks, per slot: (F, samples_per_frame, C), oldest
    first from ``pos``. Input not yet processed, so not part of any stream's state."""

    def __init__(self, slots: int):
        self.frames: list[Tensor | None] = [None] * slots
        self.pos = [0] * slots

    def count(self, slot: int) -> int:
        f = self.frames[slot]
        return 0 if f is None else f.shape[0] - self.pos[slot]

    def put(self, slot: int, frames: Tensor) -> None:
        if not frames.shape[0]:
            return
        # the unconsumed rest is short (a few frames, unless ticks fall behind), so copying it is cheap
        rest = self.count(slot)
        self.frames[slot] = torch.cat([self.frames[slot][self.pos[slot]:], frames]) if rest else frames
        self.pos[slot] = 0

    def take(self, slot: int) -> Tensor:
        f = self.frames[slot][self.pos[slot]]
        self.pos[slot] += 1
        return f

    def clear(self, slot: int) -> None:
        self.frames[slot], self.pos[slot] = None, 0

    def grow(self, slots: int) -> None:
        extra = slots - len(self.frames)
        self.frames += [None] * extra
        self.pos += [0] * extra


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
        kinds = {"cuda_graph": CudaGraphRunner, "compiled": CompiledRunner, "eager": EagerRunner}
        self.runner = kinds[runner](self.engine.model, slots, device)
        self.runner_kind = runner
        self._state = self._fresh(slots)
        self._inbox = _Inbox(slots)
        self._slot: dict[int, int] = {}  # stream id -> slot
        self._free = list(range(slots))
        self._ended = np.zeros(slots, bool)  # flushed, and the final update given
        self._backlog = np.zeros(slots)
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def _fresh(self, slots: int) -> EngineState:
        """``slots`` fresh rows: the engine's fresh state with an empty (width 0) resampler buffer and
        the runner's model state."""
        st = self.engine.init_state(slots)
        C, i64 = self.engine.in_channels, torch.int64
        rs = ResamplerState(torch.zeros(slots, C, 0), torch.zeros(slots, dtype=i64), torch.zeros(slots, dtype=i64))
        return dataclasses.replace(st, resampler=(rs,), model=self.runner.state)

    # -- membership ---------------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        return self.runner.slots

    @property
    def streams(self) -> list[int]:
        return list(self._slot)

    def add(self, *, snapshot: bytes | None = None) -> int:
        """A new stream: fresh, or resuming a one-stream ``snapshot`` (of this pool's or a session's);
        returns its id."""
        state, backlog = decode_snapshot(self.engine, snapshot) if snapshot is not None else (None, 0.0)
        with self._lock:
            if not self._free:
                self._grow(self.slots * 2)  # the CUDA-graph runner refuses: its slots are fixed
            slot = self._free.pop(0)
            sid = next(self._ids)
            self._slot[sid] = slot
            self._zero_slot(slot)
            if state is not None:
                self._load(slot, state)
                self._backlog[slot] = backlog
            return sid

    def remove(self, stream_id: int) -> None:
        """The stream leaves; its slot is zeroed and reused."""
        with self._lock:
            slot = self._get(stream_id)
            self._zero_slot(slot)
            self._free.append(slot)
            del self._slot[stream_id]

    def reset(self, stream_id: int) -> None:
        """Forget one stream's past (any rate may follow); the others are untouched."""
        with self._lock:
            self._zero_slot(self._get(stream_id))

    @torch.inference_mode()
    def _grow(self, slots: int) -> None:
        old = self.slots
        self.runner.grow(slots)
        extra = self._fresh(slots - old)
        rs, new_rs = self._state.resampler[0], extra.resampler[0]
        new_rs = dataclasses.replace(new_rs, history=rs.history.new_zeros(slots - old, *rs.history.shape[1:]))
        rows = {f.name: _cat(getattr(self._state, f.name), getattr(extra, f.name))
                for f in dataclasses.fields(EngineState) if f.name not in ("model", "resampler")}
        self._state = EngineState(resampler=(ResamplerState.cat([rs, new_rs]),), model=self.runner.state, **rows)
        self._inbox.grow(slots)
        self._ended = np.concatenate([self._ended, np.zeros(slots - old, bool)])
        self._backlog = np.concatenate([self._backlog, np.zeros(slots - old)])
        self._free = list(range(old, slots))

    @torch.inference_mode()
    def _zero_slot(self, slot: int) -> None:
        """A slot back to a fresh stream: every row of the state zeroed (in place), the inbox emptied."""
        self.runner.reset(slot)
        for t in self._host_tensors():
            t[slot] = 0
        self._state = dataclasses.replace(self._state, model=self.runner.state)
        self._inbox.clear(slot)
        self._ended[slot], self._backlog[slot] = False, 0.0

    def _host_tensors(self):
        """The state's tensors other than the model's (which the runner owns, on the device)."""
        for f in dataclasses.fields(EngineState):
            if f.name != "model":
                yield from _tensors(getattr(self._state, f.name))

    def _get(self, stream_id: int) -> int:
        if stream_id not in self._slot:
            raise KeyError(f"no stream {stream_id!r} in this pool (streams: {sorted(self._slot)})")
        return self._slot[stream_id]

    # -- one stream's row ------------------------------------------------------------------------------
    def _resampler_row(self, slot: int, rate: int) -> ResamplerState:
        """The slot's resampler state at its rate's width (views of the pool's tensors)."""
        h = self.engine.resampler(rate).history_len
        rs = self._widen(h)
        width = rs.history.shape[2]
        return ResamplerState(rs.history[slot:slot + 1, :, width - h:], rs.phase[slot:slot + 1],
                              rs.primed[slot:slot + 1])

    @torch.inference_mode()
    def _widen(self, h: int) -> ResamplerState:
        """The resampler rows, at least ``h`` samples wide: a rate with a longer filter than any before
        widens every row, zeros on the left (the oldest end, which shorter filters never read)."""
        rs = self._state.resampler[0]
        if h > rs.history.shape[2]:
            pad = rs.history.new_zeros(rs.history.shape[0], rs.history.shape[1], h - rs.history.shape[2])
            rs = dataclasses.replace(rs, history=torch.cat([pad, rs.history], dim=2))
            self._state = dataclasses.replace(self._state, resampler=(rs,))
        return rs

    @torch.inference_mode()
    def _put_resampler_row(self, slot: int, new: ResamplerState) -> None:
        h = new.history.shape[2]
        rs = self._widen(h)
        width = rs.history.shape[2]
        rs.history[slot, :, :width - h] = 0
        rs.history[slot, :, width - h:] = new.history[0]
        rs.phase[slot], rs.primed[slot] = new.phase[0], new.primed[0]

    def state_of(self, stream_id: int) -> EngineState:
        """A copy of one stream's state, batch 1, exactly as a StreamingSession would hold it (its
        queued whole frames must have run: call :meth:`run` first)."""
        with self._lock:
            return self._row_state(self._get(stream_id), stream_id)

    @torch.inference_mode()
    def _row_state(self, slot: int, stream_id: int) -> EngineState:
        if self._inbox.count(slot):
            raise ValueError(f"stream {stream_id} has {self._inbox.count(slot)} frames queued; run() the pool first")
        st = self._state
        rate = int(st.input_rate[slot])
        resampler = (self._resampler_row(slot, rate).clone(),) if rate else ()
        rows = {f.name: getattr(st, f.name)[slot:slot + 1].clone() for f in dataclasses.fields(EngineState)
                if isinstance(getattr(st, f.name), Tensor)}
        return EngineState(resampler=resampler, model=st.model.select(slot).clone(),
                           detector=st.detector.select(slot).clone(), **rows)

    @torch.inference_mode()
    def _load(self, slot: int, state: EngineState) -> None:
        """Write a one-stream state over a (zeroed) slot."""
        st = self._state
        for f in dataclasses.fields(EngineState):
            value = getattr(state, f.name)
            if isinstance(value, Tensor):
                getattr(st, f.name)[slot] = value[0]
        for d, s in zip(st.detector.tensors(), state.detector.tensors(), strict=True):
            d[slot] = s[0]
        if state.resampler:
            self._put_resampler_row(slot, state.resampler[0])
        self.runner.load(slot, state.model)
        self._state = dataclasses.replace(self._state, model=self.runner.state)

    def snapshot(self, stream_id: int) -> bytes:
        """One stream as snapshot bytes, the format of ``StreamingSession.snapshot``: restore it with
        ``StreamingSession.restore`` or ``add(snapshot=...)``. Its queued frames must have run."""
        with self._lock:
            slot = self._get(stream_id)
            state = self._row_state(slot, stream_id)
            return encode_snapshot(self.bundle, state, float(self._backlog[slot]), self.engine.labels)

    # -- input ----------------------------------------------------------------------------------------
    def push(self, stream_id: int, samples, sample_rate: int) -> None:
        """Queue a chunk for one stream: checked, resampled and framed now (as ``StreamEngine.process``
        does), run by the next ticks."""
        x = as_samples(samples, self.engine.in_channels)
        with self._lock:
            slot, st = self._get(stream_id), self._state
            try:
                rate = self.engine.admit(x.shape[0], x.shape[1], sample_rate, int(st.input_rate[slot]),
                                         bool(st.finished[slot]))
            except ValueError as e:
                raise ValueError(f"stream {stream_id}: {e}") from None
            if x.shape[0] == 0:  # no samples: nothing to fix the rate or to queue
                return
            with torch.inference_mode():
                y, rs = self.engine.resampler(rate)._forward(x.unsqueeze(0), self._resampler_row(slot, rate))
                self._put_resampler_row(slot, rs)
                st.input_rate[slot] = rate
                st.samples_in[slot] += x.shape[0]
                self._queue(slot, y)

    @torch.inference_mode()
    def _queue(self, slot: int, y: Tensor) -> None:
        """Model-rate samples y (1, m, C) after the slot's pending ones: whole frames to the inbox, the
        rest pending."""
        st = self._state
        n_p = int(st.n_pending[slot])
        whole, rest = split_frames(st.pending[slot:slot + 1, :n_p], y, self.engine.samples_per_frame)
        self._inbox.put(slot, whole.reshape(-1, self.engine.samples_per_frame, self.engine.in_channels))
        st.pending[slot, :rest.shape[1]] = rest[0]
        st.n_pending[slot] = rest.shape[1]

    def flush(self, stream_id: int) -> None:
        """End a stream: queue the resampler's tail; the next ticks emit its last frames with final=True."""
        with self._lock:
            slot, st = self._get(stream_id), self._state
            if bool(st.finished[slot]):
                raise ValueError(f"stream {stream_id} was already flushed")
            rate = int(st.input_rate[slot])
            with torch.inference_mode():
                if rate:
                    y, rs = self.engine.resampler(rate).flush(self._resampler_row(slot, rate))
                    self._put_resampler_row(slot, rs)
                    self._queue(slot, y)
                st.finished[slot] = 1

    def pending_frames(self, stream_id: int) -> int:
        with self._lock:
            return self._inbox.count(self._get(stream_id))

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
            for sid, slot in self._slot.items():  # flushed streams with no whole frame left
                if bool(self._state.finished[slot]) and not self._ended[slot]:
                    self._ended[slot] = True
                    merged.setdefault(sid, []).append(Update.empty(
                        self.engine.width, int(self._state.detector.seen[slot]), float(self._backlog[slot]),
                        self.engine.labels, True))
        return {sid: Update.merge(us) for sid, us in merged.items()}

    @torch.inference_mode()
    def _tick(self) -> dict[int, Update]:
        ready = [(sid, slot) for sid, slot in self._slot.items() if self._inbox.count(slot)]
        if not ready:
            return {}
        t0 = time.perf_counter()
        S, hop, C = self.slots, self.engine.samples_per_frame, self.engine.in_channels
        idx = torch.tensor([slot for _, slot in ready])
        frames = torch.zeros(S, hop, C)
        frames[idx] = torch.stack([self._inbox.take(slot) for _, slot in ready])
        active = torch.zeros(S, dtype=torch.bool)
        active[idx] = True
        if self.runner_kind == "cuda_graph":
            active[self._free] = True  # free slots are zeroed when taken: advancing them lets the unmasked graph run
        y = self.runner.step(frames, active)  # the one batched call
        self._state = dataclasses.replace(self._state, model=self.runner.state)
        sub = self._state.detector.select(idx)
        first = sub.seen.tolist()
        scores, smoothed, events, sub = self.engine.outputs(y[idx].unsqueeze(1), sub)  # (R, 1, C)
        for full, part in zip(self._state.detector.tensors(), sub.tensors(), strict=True):
            full[idx] = part.to(full.dtype)
        elapsed = time.perf_counter() - t0
        audio_s = hop / self.engine.rate
        out, finished = {}, self._state.finished.numpy()  # a view: host reads without a torch op per stream
        for i, (sid, slot) in enumerate(ready):
            final = bool(finished[slot]) and not self._inbox.count(slot)
            self._ended[slot] |= final
            self._backlog[slot] = max(0.0, self._backlog[slot] + elapsed - audio_s)
            out[sid] = Update.of_frames(scores[i].numpy(), smoothed[i].numpy(), first[i], self.engine.frame_rate,
                                        events[i], Timing.of(elapsed, audio_s, float(self._backlog[slot])),
                                        self.engine.labels, final)
        return out


def _tensors(value) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, State):
        return list(value.tensors())
    return [t for v in value for t in _tensors(v)]


def _cat(a, b):
    """Two stacks of rows (tensors or states) as one, along the batch dimension."""
    return torch.cat([a, b]) if isinstance(a, Tensor) else type(a).cat([a, b])
