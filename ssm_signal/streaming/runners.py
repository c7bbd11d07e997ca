"""The batched model step of a StreamPool over a fixed number of stream slots: the runners.

Each runner holds the (slots, ...) model state and advances it by one frame per tick, only in the
slots whose ``active`` flag is set: ``step(frames (slots, hop, C), active (slots,)) -> y (slots, out_dim)``.
All of them wrap the model's own frame step (``SignalModel._step``, or its in-place form ``_step_``):

- ``EagerRunner``: ``pool_step`` as plain PyTorch, the reference twin of the others;
- ``CompiledRunner`` (CPU): ``torch.compile``d ``pool_step``, far fewer dispatches per tick;
- ``CudaGraphRunner`` (CUDA): ``model._step_`` compiled by Inductor and captured as CUDA graphs on
  static buffers (through ``ssm_signal.cuda_graphs``, the helper the scorer's batch graphs use),
  replayed per tick: a few microseconds of launch overhead instead of one launch per op, the new
  state written over the old in place. Building it compiles (10-30 s).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssm_signal.bundle import pcm_to_float
from ssm_signal.cuda_graphs import capture, warm_up
from ssm_signal.models import SignalModel, SignalModelState
from ssm_signal.streaming.engine import canonical
from ssm_signal.streaming.step import compiled, pool_step


class EagerRunner:
    """``pool_step`` as plain PyTorch; holds the (slots, ...) model state. The reference twin of the others."""

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
    def load(self, slot: int, state: SignalModelState) -> None:
        """Write a one-stream model state (batch 1) over ``slot``'s rows (a stream resumed from a snapshot)."""
        _load_row(self.state, slot, state)

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
    """One pool tick written over ``state``'s tensors: ``model._step_`` for every slot, or (masked)
    only for the slots where ``active`` is true. Returns y (slots, out_dim). The body of
    :class:`CudaGraphRunner`'s graphs. With the Triton backend the Mamba/Mamba-2 SSM states advance
    in place inside their step kernels (read once, written once: no new state to copy back, and idle
    slots' states are not touched at all; other backends write them back with ``where``, bit for bit
    the same); the other state tensors are computed anew and written back with
    ``copy_`` / ``where``. Equals ``pool_step`` followed by writing its state back (tests compare).
    int16 frames are 16-bit PCM, scaled as ``pcm_to_float`` does (fused into the frontend)."""
    if frames.dtype == torch.int16:
        frames = pcm_to_float(frames)
    return model._step_(frames, state, active if masked else None)


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
        hop, C = model.samples_per_frame, model.in_channels
        bodies = {m: torch.compile(f, dynamic=False) if fuse else f for m, f in _TICKS.items()}
        with torch.inference_mode():
            self.frames = torch.zeros(slots, hop, C, device=device, dtype=torch.int16 if pcm16 else torch.float32)
            self.active = torch.zeros(slots, dtype=torch.bool, device=device)
            self.state = model.init_state(slots, device=device)
            self._tensors = list(self.state.tensors())
            self._host: Tensor | None = None  # the pinned output buffer of step()

            def run(masked: bool) -> Tensor:
                return bodies[masked](model, self.frames, self.active, self.state)

            # both bodies warmed up (compilation, allocator pools, cuFFT plans, kernel autotuning), then
            # back to the zero state: the warm-up advanced it
            warm_up(lambda: (run(False), run(True)), warmup, device)
            for t in self._tensors:
                t.zero_()
            torch.cuda.synchronize(device)
            stream = torch.cuda.Stream(device)
            self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}
            self.outputs: dict[bool, Tensor] = {}
            for masked in (False, True):
                self.graphs[masked], self.outputs[masked] = capture(lambda m=masked: run(m), stream)

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

    @torch.inference_mode()
    def load(self, slot: int, state: SignalModelState) -> None:
        _load_row(self.state, slot, state)  # in place: the graphs read these very tensors

    def grow(self, slots: int) -> None:
        raise ValueError(f"the CUDA-graph pool has a fixed {self.slots} slots; create it with more")


def _load_row(state: SignalModelState, slot: int, row: SignalModelState) -> None:
    """``row``'s tensors (batch 1) written over ``state``'s row ``slot``, in place (the runner owns ``state``)."""
    for dst, src in zip(state.tensors(), row.tensors(), strict=True):
        dst[slot] = src[0].to(dst.device, dst.dtype)
