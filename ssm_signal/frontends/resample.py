"""Causal, stateful polyphase resampling between any two integer sample rates.

The rate pair is reduced by its gcd to an up/down ratio L/M (16 kHz from 44.1 kHz: L=160,
M=441). Conceptually the input x is zero-stuffed to the rate F = L * f_in = M * f_out,
low-pass filtered by a linear-phase FIR h of N taps and kept at every M-th sample:

    y_c[k] = sum_i h[i] * x_up[k M - i]        x_up[j] = x[j / L] if L | j else 0        (the spec)

Only every L-th tap meets a non-zero sample, so output k needs just T = ceil(N / L) taps of
phase p = k M mod L (the polyphase form):

    y_c[k] = sum_{j<T} h[p + j L] * x[floor(k M / L) - j]

The filter (one design for every rate pair, used by training, predict, scoring and streaming):
a Kaiser-windowed sinc at F with

- passband edge f_pass = ``rolloff`` x Nyquist, Nyquist = min(f_in, f_out) / 2; ``ROLLOFF`` =
  0.95, so for 16 kHz output the passband ends at 7.6 kHz, the log-mel's default ``f_max``: every
  mel band sees the signal unattenuated (within the ripple);
- stopband edge f_stop = Nyquist (8 kHz for 16 kHz output): everything that would alias is
  down by ``attenuation_db`` (A = 80 dB; Kaiser's formulas land within 0.5 dB of it, measured
  >= 79.5 dB for the common rates, a test checks); the passband ripple is 1e-4 (0.001 dB);
- transition width f_stop - f_pass = 0.05 x Nyquist (400 Hz for 16 kHz output); cutoff
  (the sinc's half-amplitude point) in its middle, (f_pass + f_stop) / 2 = 7.8 kHz;
- Kaiser beta = 0.1102 (A - 8.7) = 7.857 for A = 80 dB; the length from Kaiser's estimate
  (A - 7.95) / (2.285 x 2 pi x transition / F), rounded up to N = 2 M D + 1 taps (below).
  To 16 kHz: from 48 kHz 607 taps (D = 101), from 44.1 kHz 89083 taps at F = 7.056 MHz, i.e.
  557 per polyphase branch (D = 101), from 8 kHz 403 taps, 202 per branch (D = 201).

Each polyphase branch is normalised to unit DC gain, so a constant stays exactly constant.

Two implementations of the same polyphase sum: a bank of L strided convolutions done as one
``conv1d`` (fast for long chunks and common ratios) and a gather-and-dot over the emitted
outputs (any ratio, small memory per output); :func:`resample_reference` is the spec above in
float64 numpy, and tests compare all three.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_signal.frontends.base import read_phase
from ssm_signal.layers.base import StreamingModule
from ssm_signal.state import State, batch_value

# The conv1d bank uses a kernel of L x (T + M - 1) coefficients; above this many the
# gather path is used instead (irregular ratios such as 47999 -> 16000).
_MAX_BANK_COEFFS = 1 << 21
#: Passband edge as a fraction of the lower Nyquist frequency: 7.6 kHz of 8 kHz at a 16 kHz model
#: rate, the top of the default log-mel (``FrontendConfig.f_max``).
ROLLOFF = 0.95
#: Stopband attenuation (dB); also sets the passband ripple, 10 ** (-A / 20).
ATTENUATION_DB = 80.0
# Whole signals and long chunks are processed in blocks of this many input samples, so
# temporary memory stays bounded whatever the length.
BLOCK_SAMPLES = 1 << 18


@dataclasses.dataclass(frozen=True)
class FilterDesign:
    """The polyphase filter for one rate pair.

    up, down: L and M (the reduced ratio); taps: (L, T) float64, ``taps[p]`` the phase-p
    coefficients in time order (oldest input first); delay: D, in output samples;
    passband_hz, stopband_hz: band edges; attenuation_db: stopband attenuation.
    """

    in_rate: int
    out_rate: int
    up: int
    down: int
    taps: np.ndarray
    delay: int
    passband_hz: float
    stopband_hz: float
    attenuation_db: float

    @property
    def taps_per_phase(self) -> int:
        return self.taps.shape[1]

    def impulse_response(self) -> np.ndarray:
        """The prototype filter h (T L,) at rate F = L f_in, as applied (each branch at unit DC
        gain), scaled to unit passband gain: its spectrum is the resampler's frequency response."""
        return self.taps[:, ::-1].T.reshape(-1) / self.up


def _check_rate(name: str, rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or not 1 <= int(rate) <= 1_000_000:
        raise ValueError(f"{name} must be an integer number of Hz in [1, 1000000], got {rate!r}")
    return int(rate)


def design_filter(in_rate: int, out_rate: int, rolloff: float = ROLLOFF,
                  attenuation_db: float = ATTENUATION_DB) -> FilterDesign:
    """Kaiser-windowed-sinc polyphase filter for ``in_rate`` -> ``out_rate`` (cached)."""
    return _design(_check_rate("in_rate", in_rate), _check_rate("out_rate", out_rate), float(rolloff),
                   float(attenuation_db))


@functools.lru_cache(maxsize=64)
def _design(in_rate: int, out_rate: int, rolloff: float, attenuation_db: float) -> FilterDesign:
    if not 0.0 < rolloff < 1.0:
        raise ValueError(f"rolloff must be in (0, 1), got {rolloff}")
    if not 20.0 <= attenuation_db <= 200.0:
        raise ValueError(f"attenuation_db must be in [20, 200], got {attenuation_db}")
    g = math.gcd(in_rate, out_rate)
    L, M = out_rate // g, in_rate // g
    if L == M == 1:
        return FilterDesign(in_rate, out_rate, 1, 1, np.ones((1, 1)), 0, in_rate / 2, in_rate / 2, math.inf)
    nyq = min(in_rate, out_rate) / 2
    f_pass, f_stop = rolloff * nyq, nyq
    fs_up = float(L * in_rate)  # F, the zero-stuffed rate
    # Kaiser's order estimate for a transition of width (f_stop - f_pass) at rate F
    order = (attenuation_db - 7.95) / (2.285 * 2 * math.pi * (f_stop - f_pass) / fs_up)
    D = max(1, math.ceil(order / (2 * M)))
    N = 2 * M * D + 1  # group delay (N - 1) / 2 = M D samples at F = D output samples
    if L * math.ceil(N / L) > 50_000_000:
        raise ValueError(f"resampling {in_rate} -> {out_rate} Hz needs a {N}-tap filter (reduced ratio {L}/{M}); "
                         "use rates with a larger common divisor")
    beta = 0.1102 * (attenuation_db - 8.7) if attenuation_db > 50 else \
        0.5842 * (attenuation_db - 21) ** 0.4 + 0.07886 * (attenuation_db - 21)
    fc = (f_pass + f_stop) / 2 / fs_up  # cutoff in cycles per sample at F
    n = np.arange(N, dtype=np.float64) - (N - 1) / 2
    h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(N, beta)
    T = math.ceil(N / L)
    h = np.concatenate([h, np.zeros(T * L - N)])
    taps = h.reshape(T, L).T[:, ::-1].copy()  # taps[p, i] = h[p + (T - 1 - i) L]
    taps /= taps.sum(axis=1, keepdims=True)  # unit DC gain per phase (absorbs the factor L)
    return FilterDesign(in_rate, out_rate, L, M, taps, D, f_pass, f_stop, attenuation_db)


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
        self.method = ("bank" if bank_size <= _MAX_BANK_COEFFS else "gather") if method == "auto" else method
        self._coeffs: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor | None, Tensor, Tensor]] = {}

    def coefficients(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """(taps (L, T), bank (L, 1, T + M - 1) or None, offsets (L,), phases (L,)) at a dtype and device.

        Built from the float64 design on first use per (dtype, device), so float64 inputs get
        float64 coefficients. offsets[p'] = floor(p' M / L) and phases[p'] = p' M mod L are the
        input offset and tap phase of output sub-phase p' (output k' = t L + p').
        """
        key = (dtype, torch.device(device))
        if key not in self._coeffs:
            L, M, T = self.up, self.down, self.taps_per_phase
            taps = torch.from_numpy(self.design.taps).to(device=device, dtype=dtype)
            sub = torch.arange(L, dtype=torch.int64)
            offsets, phases = (sub * M) // L, (sub * M) % L
            bank = None
            if self.method == "bank":
                bank = torch.zeros(L, 1, T + M - 1, dtype=torch.float64)
                d_taps = torch.from_numpy(self.design.taps)
                for p_sub in range(L):
                    o = int(offsets[p_sub])
                    bank[p_sub, 0, o:o + T] = d_taps[int(phases[p_sub])]
                bank = bank.to(device=device, dtype=dtype)
            self._coeffs[key] = (taps, bank, offsets.to(device), phases.to(device))
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
        L, M = self.up, self.down
        k0 = -(-(q * L) // M)
        # fewest zeros that complete D more causal outputs: ceil((q + n) L / M) >= k0 + D
        n_zeros = (k0 + self.delay - 1) * M // L - q + 1
        zeros = state.history.new_zeros(B, n_zeros, self.d_model)
        y, state = self._forward(zeros, state)
        return y[:, :owed], state

    # -- unchecked ---------------------------------------------------------------------------------
    def _forward(self, x: Tensor, state: ResamplerState) -> tuple[Tensor, ResamplerState]:
        if self.identity or x.shape[1] == 0:
            return x, state
        outs = []
        for start in range(0, x.shape[1], BLOCK_SAMPLES):
            y, state = self._block(x[:, start:start + BLOCK_SAMPLES], state)
            outs.append(y)
        return torch.cat(outs, 1) if len(outs) > 1 else outs[0], state

    def _block(self, x: Tensor, state: ResamplerState) -> tuple[Tensor, ResamplerState]:
        B, n, C = x.shape
        L, M, D = self.up, self.down, self.delay
        q = read_phase(state.phase, M, "Resampler")
        primed = batch_value(state.primed, "Resampler primed")
        buf = torch.cat([state.history.to(x.dtype), x.transpose(1, 2)], dim=2)  # (B, C, H + n)
        k0, k1 = -(-(q * L) // M), -(-((q + n) * L) // M)  # emitted causal outputs k' in [k0, k1)
        if k1 > k0:
            base = M - 1 - q  # buffer index of the current input period's start, minus (T - 1)
            y = (self._bank if self.method == "bank" else self._gather)(buf.reshape(B * C, -1), base, k0, k1)
            y = y.reshape(B, C, -1).transpose(1, 2)  # (B, k1 - k0, C)
        else:
            y = x.new_zeros(B, 0, C)
        drop = min(D - primed, y.shape[1])  # the first D causal outputs precede the aligned signal
        new = ResamplerState(
            history=buf[:, :, buf.shape[2] - self.history_len:].to(state.history.dtype, copy=True),
            phase=torch.full_like(state.phase, (q + n) % M),
            primed=torch.full_like(state.primed, min(D, primed + k1 - k0)),
        )
        return y[:, drop:], new

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


def resample_reference(x: np.ndarray, in_rate: int, out_rate: int, **kwargs) -> np.ndarray:
    """The spec, in float64 numpy: zero-stuff by L, filter with h, keep every M-th, shift by D.

    x: (n,) -> (ceil(n L / M),). Slow and obviously right; for tests.
    """
    d = design_filter(int(in_rate), int(out_rate), **kwargs)
    L, M, D = d.up, d.down, d.delay
    x = np.asarray(x, dtype=np.float64)
    if L == M == 1:
        return x.copy()
    T = d.taps_per_phase
    h = d.impulse_response() * L  # back to h[p + j L], normalised per phase
    n_out = -(-len(x) * L // M)
    up = np.zeros((len(x) + (D * M) // L + T + 1) * L)  # room for the zero tail that flush feeds
    up[:len(x) * L:L] = x
    size = len(up) + len(h) - 1
    nfft = 1 << (size - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(up, nfft) * np.fft.rfft(h, nfft), nfft)[:size]  # np.convolve(up, h), faster
    return full[: (n_out + D) * M: M][D:D + n_out]
