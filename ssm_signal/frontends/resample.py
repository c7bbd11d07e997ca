"""The causal, stateful polyphase resampler in torch: :class:`Resampler`, and :func:`resample` for
whole signals. One design for every rate pair, used by training, predict, scoring and streaming; the
design, the sum it computes and its numpy twin (the torch-free runtime's) are in
:mod:`ssm_signal.polyphase`, whose docstring states them.

Two implementations of the same polyphase sum here: a bank of L strided convolutions done as one
``conv1d`` (fast for long chunks and common ratios) and a gather-and-dot over the emitted outputs
(any ratio, small memory per output); :func:`resample_reference` is the spec in float64 numpy, and
tests compare all of them.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_signal.frontends.base import read_phase
from ssm_signal.layers.base import StreamingModule
from ssm_signal.polyphase import (  # noqa: F401  (FilterDesign, ROLLOFF, resample_reference: re-exported)
    ATTENUATION_DB,
    BLOCK_SAMPLES,
    MAX_BANK_COEFFS,
    ROLLOFF,
    FilterDesign,
    bank,
    bank_indices,
    design_filter,
    flush_zeros,
    in_blocks,
    plan_block,
    resample_reference,
)
from ssm_signal.state import State, batch_value


@dataclasses.dataclass(frozen=True)
class ResamplerState(State):
    """history: (B, C, H) the last H = T + M - 2 input samples, oldest first (zeros at start);
    phase: (B,) int64, inputs seen mod M; primed: (B,) int64, causal outputs produced so far,
    capped at the delay D (the first D are dropped to align the output; flush releases the
    last ``primed``). Phase and primed must agree across a batch."""

    history: Tensor
    phase: Tensor
    primed: Tensor


class Resampler(StreamingModule):
    """Causal polyphase resampler, (B, L_in, C) at ``in_rate`` -> (B, L_out, C) at ``out_rate``.

    ``forward`` returns the aligned output samples a chunk completes (possibly none);
    ``flush(state)`` returns the last ``delay`` samples (the end of the signal, zero-padded).
    ``method``: "auto" (conv1d bank unless its kernel would be huge), "bank" or "gather".
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1, *, rolloff: float = ROLLOFF,
                 attenuation_db: float = ATTENUATION_DB, method: str = "auto"):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"Resampler: channels must be a positive int, got {channels!r}")
        if method not in ("auto", "bank", "gather"):
            raise ValueError(f"Resampler: method must be auto, bank or gather, got {method!r}")
        self.design = design_filter(in_rate, out_rate, rolloff, attenuation_db)
        d = self.design
        self.d_model = channels
        self.in_rate, self.out_rate, self.up, self.down = d.in_rate, d.out_rate, d.up, d.down
        self.delay, self.taps_per_phase = d.delay, d.taps_per_phase
        self.identity = d.up == d.down == 1
        L, M, T = d.up, d.down, d.taps_per_phase
        self.history_len = 0 if self.identity else T + M - 2
        bank_size = L * (T + M - 1)
        self.method = ("bank" if bank_size <= MAX_BANK_COEFFS else "gather") if method == "auto" else method
        self._coeffs: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor | None, Tensor, Tensor]] = {}

    def coefficients(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """(taps (L, T), bank (L, 1, T + M - 1) or None, offsets (L,), phases (L,)) at a dtype and device.

        Built from the float64 design on first use per (dtype, device), so float64 inputs get
        float64 coefficients. offsets[p'] = floor(p' M / L) and phases[p'] = p' M mod L are the
        input offset and tap phase of output sub-phase p' (output k' = t L + p').
        """
        key = (dtype, torch.device(device))
        if key not in self._coeffs:
            taps = torch.from_numpy(self.design.taps).to(device=device, dtype=dtype)
            offsets, phases = bank_indices(self.design)
            coeffs = None
            if self.method == "bank":
                coeffs = torch.from_numpy(bank(self.design)[0]).unsqueeze(1).to(device=device, dtype=dtype)
            self._coeffs[key] = (taps, coeffs, torch.from_numpy(offsets).to(device), torch.from_numpy(phases).to(device))
        return self._coeffs[key]

    def extra_repr(self) -> str:
        return (f"{self.in_rate} -> {self.out_rate} Hz (L/M = {self.up}/{self.down}), {self.taps_per_phase} taps/phase, "
                f"delay {self.delay} samples, method={self.method}")

    @property
    def delay_seconds(self) -> float:
        """How far the aligned output runs behind the input, in seconds."""
        return self.delay / self.out_rate

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> ResamplerState:
        return ResamplerState(
            history=torch.zeros(batch_size, self.d_model, self.history_len, device=device, dtype=dtype),
            phase=torch.zeros(batch_size, dtype=torch.int64, device=device),
            primed=torch.zeros(batch_size, dtype=torch.int64, device=device),
        )

    def step(self, x_t, state=None):
        raise NotImplementedError("Resampler emits a variable number of samples per input; use forward")

    # -- public ----------------------------------------------------------------------------------
    def flush(self, state: ResamplerState) -> tuple[Tensor, ResamplerState]:
        """The last ``primed`` (<= D) aligned samples, by feeding zeros: (B, primed, C), and the state after."""
        if not isinstance(state, ResamplerState):
            raise ValueError(f"Resampler.flush needs a ResamplerState, got {type(state).__name__}")
        B = state.batch_size
        if self.identity:
            return state.history.new_zeros(B, 0, self.d_model), state
        q = read_phase(state.phase, self.down, "Resampler")
        owed = batch_value(state.primed, "Resampler primed")
        zeros = state.history.new_zeros(B, flush_zeros(q, self.design), self.d_model)
        y, state = self._forward(zeros, state)
        return y[:, :owed], state

    # -- unchecked ---------------------------------------------------------------------------------
    def _forward(self, x: Tensor, state: ResamplerState) -> tuple[Tensor, ResamplerState]:
        if self.identity or x.shape[1] == 0:
            return x, state
        return in_blocks(self._block, x, state, torch.cat)

    def _block(self, x: Tensor, state: ResamplerState) -> tuple[Tensor, ResamplerState]:
        B, n, C = x.shape
        q = read_phase(state.phase, self.down, "Resampler")
        plan = plan_block(q, n, batch_value(state.primed, "Resampler primed"), self.design)
        buf = torch.cat([state.history.to(x.dtype), x.transpose(1, 2)], dim=2)  # (B, C, H + n)
        if plan.k1 > plan.k0:  # causal outputs k' in [k0, k1)
            y = (self._bank if self.method == "bank" else self._gather)(buf.reshape(B * C, -1), plan.base, plan.k0,
                                                                         plan.k1)
            y = y.reshape(B, C, -1).transpose(1, 2)  # (B, k1 - k0, C)
        else:
            y = x.new_zeros(B, 0, C)
        new = ResamplerState(
            history=buf[:, :, buf.shape[2] - self.history_len:].to(state.history.dtype, copy=True),
            phase=torch.full_like(state.phase, plan.phase),
            primed=torch.full_like(state.primed, plan.primed),
        )
        return y[:, plan.drop:], new  # the first D causal outputs precede the aligned signal

    def _bank(self, buf: Tensor, base: int, k0: int, k1: int) -> Tensor:
        """All L sub-phases as one strided conv1d: buf (R, H + n) -> (R, k1 - k0) causal outputs."""
        L, M = self.up, self.down
        t0, t1 = k0 // L, (k1 - 1) // L + 1  # conv positions covering outputs [k0, k1)
        bank = self.coefficients(buf.dtype, buf.device)[1]
        width = bank.shape[-1]
        need = base + (t1 - 1) * M + width  # samples the last position reads (the tail may be zeros)
        seg = buf[:, base + t0 * M:need]
        if seg.shape[1] < need - base - t0 * M:  # outputs not emitted read past the end; pad them
            seg = F.pad(seg, (0, need - base - t0 * M - seg.shape[1]))
        if M > 1 and t1 - t0 <= 2048:
            # short chunks: windows times the bank as one matmul; conv1d's fixed cost for a
            # single strided channel is several times larger (the same sum either way)
            y = seg.unfold(-1, width, M) @ bank[:, 0].T  # (R, t1 - t0, L)
        else:
            y = F.conv1d(seg.unsqueeze(1), bank, stride=M).transpose(1, 2)  # (R, t1 - t0, L)
        y = y.reshape(buf.shape[0], -1)  # output k' = t L + p' at (t - t0) L + p'
        return y[:, k0 - t0 * L:k1 - t0 * L]

    def _gather(self, buf: Tensor, base: int, k0: int, k1: int) -> Tensor:
        """Gather each emitted output's T inputs and dot them with its phase's taps."""
        L, M, T = self.up, self.down, self.taps_per_phase
        taps, _, offsets, phases = self.coefficients(buf.dtype, buf.device)
        k = torch.arange(k0, k1, device=buf.device)
        t, p_sub = k // L, k % L
        starts = base + t * M + offsets[p_sub]  # (n_out,)
        taps = taps[phases[p_sub]]  # (n_out, T)
        out = []
        for s in range(0, k.numel(), 4096):  # bounded (R, 4096, T) temporaries
            idx = starts[s:s + 4096, None] + torch.arange(T, device=buf.device)
            out.append((buf[:, idx] * taps[s:s + 4096]).sum(-1))
        return torch.cat(out, 1)


@functools.lru_cache(maxsize=64)
def shared_resampler(in_rate: int, out_rate: int, channels: int = 1, *, rolloff: float = ROLLOFF,
                     attenuation_db: float = ATTENUATION_DB, method: str = "auto") -> Resampler:
    """One :class:`Resampler` per rate pair, channel count and design for the whole process, so its
    coefficients are built once per (dtype, device): batch scoring, predict() and every streaming
    engine resample chunk after chunk at the same few rates. The module holds no stream state."""
    return Resampler(in_rate, out_rate, channels, rolloff=rolloff, attenuation_db=attenuation_db, method=method)


def resample(x: Tensor, in_rate: int, out_rate: int, *, rolloff: float = ROLLOFF, attenuation_db: float = ATTENUATION_DB,
             method: str = "auto") -> Tensor:
    """Resample a whole signal along its last axis: (..., n) -> (..., ceil(n out / in)), from a zero state.

    Equals streaming the signal through :class:`Resampler` in any chunking and flushing
    (aligned output: no delay, the filter's tail included).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError("resample: x must be a floating-point tensor")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"resample: x must have at least one sample along its last axis, got {tuple(x.shape)}")
    lead, n = x.shape[:-1], x.shape[-1]
    r = shared_resampler(in_rate, out_rate, rolloff=rolloff, attenuation_db=attenuation_db, method=method)
    if r.identity:
        return x
    flat = x.reshape(-1, n, 1)
    with torch.no_grad():
        y, state = r._forward(flat, r.init_state(flat.shape[0], device=x.device, dtype=x.dtype))
        tail, _ = r.flush(state)
    return torch.cat([y, tail], 1).reshape(*lead, -1)
