"""Polyphase resampling in numpy: the filter design every resampler of the project uses, and the
streaming resampler of the torch-free runtime: causal, stateful resampling between any two integer
sample rates.

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

Implementations of the same polyphase sum: the torch :class:`~ssm_signal.frontends.resample.Resampler`
(training, predict, scoring, the torch streaming engine), its numpy twin :class:`PolyphaseResampler`
here (the ONNX runtime's, tests compare the two), and :func:`resample_reference`, the spec above in
float64 numpy. Both streaming ones share the block bookkeeping (:func:`plan_block`, :func:`flush_zeros`)
and the coefficient bank (:func:`bank`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

# The conv1d bank uses a kernel of L x (T + M - 1) coefficients; above this many the
# gather path is used instead (irregular ratios such as 47999 -> 16000).
MAX_BANK_COEFFS = 1 << 21
#: Passband edge as a fraction of the lower Nyquist frequency: 7.6 kHz of 8 kHz at a 16 kHz model
#: rate, the top of the default log-mel (``FrontendConfig.f_max``).
ROLLOFF = 0.95
#: Stopband attenuation (dB); also sets the passband ripple, 10 ** (-A / 20).
ATTENUATION_DB = 80.0
# Long chunks are resampled in blocks of this many input samples (bounded temporaries).
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


def bank_indices(d: FilterDesign) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (L,), phases (L,)) of :func:`bank`, without building the bank."""
    sub = np.arange(d.up, dtype=np.int64)
    return (sub * d.down) // d.up, (sub * d.down) % d.up


def bank(d: FilterDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All L sub-phases as rows of one strided filter: (bank (L, T + M - 1) float64, offsets (L,),
    phases (L,)). Output k' = t L + p' is ``bank[p'] @ x[t M - (T - 1) ... t M + M - 1 - (T - 1)]``:
    ``offsets[p'] = floor(p' M / L)`` and ``phases[p'] = p' M mod L`` are its input offset and tap phase."""
    L, M, T = d.up, d.down, d.taps_per_phase
    offsets, phases = bank_indices(d)
    out = np.zeros((L, T + M - 1))
    for p in range(L):
        out[p, offsets[p]:offsets[p] + T] = d.taps[phases[p]]
    return out, offsets, phases


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """What a block of n inputs at phase q does: emits causal outputs k' in [k0, k1), of which the first
    ``drop`` precede the aligned signal; ``base``: the buffer index of the current input period's start
    minus (T - 1); then the stream is at phase ``phase`` with ``primed`` causal outputs made (<= D)."""

    k0: int
    k1: int
    base: int
    drop: int
    phase: int
    primed: int


def plan_block(q: int, n: int, primed: int, d: FilterDesign) -> BlockPlan:
    """The bookkeeping of one block (both streaming resamplers use it). q: inputs seen mod M."""
    L, M, D = d.up, d.down, d.delay
    k0, k1 = -(-(q * L) // M), -(-((q + n) * L) // M)
    return BlockPlan(k0, k1, M - 1 - q, min(D - primed, max(0, k1 - k0)), (q + n) % M, min(D, primed + k1 - k0))


def flush_zeros(q: int, d: FilterDesign) -> int:
    """The fewest zeros that complete D more causal outputs at phase q: ceil((q + n) L / M) >= k0 + D."""
    L, M = d.up, d.down
    k0 = -(-(q * L) // M)
    return (k0 + d.delay - 1) * M // L - q + 1


def in_blocks(block, x, state, concat):
    """``block(x_part, state) -> (y, state)`` over x (B, n, C) in blocks of :data:`BLOCK_SAMPLES` inputs,
    the state carried; the outputs joined along time by ``concat`` (np.concatenate or torch.cat)."""
    outs = []
    for start in range(0, x.shape[1], BLOCK_SAMPLES):
        y, state = block(x[:, start:start + BLOCK_SAMPLES], state)
        outs.append(y)
    return (concat(outs, 1) if len(outs) > 1 else outs[0]), state


@dataclasses.dataclass(frozen=True)
class ResamplerArrays:
    """The numpy twin of ``ResamplerState``: history (B, C, H) float32, the last H = T + M - 2 inputs;
    phase (B,) int64, inputs seen mod M; primed (B,) int64, causal outputs made, capped at D."""

    history: np.ndarray
    phase: np.ndarray
    primed: np.ndarray


class PolyphaseResampler:
    """Causal polyphase resampler in numpy, (B, n, C) float32 at ``in_rate`` -> (B, m, C) at ``out_rate``:
    the twin of the torch ``Resampler`` (same design, same bookkeeping, float32 arithmetic; the aligned
    outputs a chunk completes, ``flush`` the last D). Holds no stream state."""

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"PolyphaseResampler: channels must be a positive int, got {channels!r}")
        self.design = d = design_filter(in_rate, out_rate)
        self.channels = channels
        self.identity = d.up == d.down == 1
        T, M = d.taps_per_phase, d.down
        self.history_len = 0 if self.identity else T + M - 2
        self.use_bank = d.up * (T + M - 1) <= MAX_BANK_COEFFS
        self.offsets, self.phases = bank_indices(d)
        self.bank_t = np.ascontiguousarray(bank(d)[0].T.astype(np.float32)) if self.use_bank else None  # (T+M-1, L)
        self.taps = d.taps.astype(np.float32)

    @property
    def delay(self) -> int:
        return self.design.delay

    def init_state(self, batch_size: int) -> ResamplerArrays:
        return ResamplerArrays(np.zeros((batch_size, self.channels, self.history_len), np.float32),
                               np.zeros(batch_size, np.int64), np.zeros(batch_size, np.int64))

    def __call__(self, x: np.ndarray, state: ResamplerArrays) -> tuple[np.ndarray, ResamplerArrays]:
        """x (B, n, C) float32 -> the aligned outputs it completes (B, m, C) float32, new state."""
        if self.identity or x.shape[1] == 0:
            return x, state
        return in_blocks(self._block, x, state, np.concatenate)

    def flush(self, state: ResamplerArrays) -> tuple[np.ndarray, ResamplerArrays]:
        """The last ``primed`` (<= D) aligned samples, by feeding zeros: (B, primed, C), and the state after."""
        B = state.history.shape[0]
        if self.identity:
            return np.zeros((B, 0, self.channels), np.float32), state
        owed = int(state.primed[0])
        zeros = np.zeros((B, flush_zeros(int(state.phase[0]), self.design), self.channels), np.float32)
        y, state = self(zeros, state)
        return y[:, :owed], state

    def _block(self, x: np.ndarray, state: ResamplerArrays) -> tuple[np.ndarray, ResamplerArrays]:
        B, n, C = x.shape
        plan = plan_block(int(state.phase[0]), n, int(state.primed[0]), self.design)
        buf = np.concatenate([state.history, x.transpose(0, 2, 1)], axis=2).reshape(B * C, -1)  # (R, H + n)
        if plan.k1 > plan.k0:
            y = (self._bank if self.use_bank else self._gather)(buf, plan.base, plan.k0, plan.k1)
            y = y.reshape(B, C, -1).transpose(0, 2, 1)
        else:
            y = np.zeros((B, 0, C), np.float32)
        new = ResamplerArrays(np.ascontiguousarray(buf[:, buf.shape[1] - self.history_len:].reshape(B, C, -1)),
                              np.full(B, plan.phase, np.int64), np.full(B, plan.primed, np.int64))
        return np.ascontiguousarray(y[:, plan.drop:]), new

    def _bank(self, buf: np.ndarray, base: int, k0: int, k1: int) -> np.ndarray:
        """buf (R, H + n) -> (R, k1 - k0): windows of T + M - 1 inputs every M, times the bank."""
        L, M = self.design.up, self.design.down
        t0, t1 = k0 // L, (k1 - 1) // L + 1
        width = self.bank_t.shape[0]
        need = base + (t1 - 1) * M + width
        seg = buf[:, base + t0 * M:need]
        if seg.shape[1] < need - base - t0 * M:  # outputs not emitted read past the end; pad them
            seg = np.pad(seg, ((0, 0), (0, need - base - t0 * M - seg.shape[1])))
        windows = np.lib.stride_tricks.sliding_window_view(seg, width, axis=1)[:, ::M]  # (R, t1 - t0, width)
        y = (windows @ self.bank_t).reshape(buf.shape[0], -1)  # output k' = t L + p' at (t - t0) L + p'
        return y[:, k0 - t0 * L:k1 - t0 * L]

    def _gather(self, buf: np.ndarray, base: int, k0: int, k1: int) -> np.ndarray:
        """Each emitted output's T inputs dotted with its phase's taps (irregular ratios)."""
        L, M, T = self.design.up, self.design.down, self.design.taps_per_phase
        k = np.arange(k0, k1)
        t, p = k // L, k % L
        starts = base + t * M + self.offsets[p]
        out = []
        for s in range(0, len(k), 4096):  # bounded (R, 4096, T) temporaries
            idx = starts[s:s + 4096, None] + np.arange(T)
            out.append((buf[:, idx] * self.taps[self.phases[p[s:s + 4096]]]).sum(-1))
        return np.concatenate(out, 1)


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
