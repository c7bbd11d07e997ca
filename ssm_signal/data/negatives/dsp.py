"""Sample-level tools of the music and noise generators: (n,) float32 numpy signals at ``sr`` Hz."""

from __future__ import annotations

import math

import numpy as np


def speed(x: np.ndarray, ratio: float) -> np.ndarray:
    """Play ``x`` ``ratio`` times faster (a sampler's pitch + tempo change), by linear interpolation."""
    if abs(ratio - 1.0) < 1e-6:
        return x
    pos = np.arange(0.0, len(x) - 1, ratio)
    return np.interp(pos, np.arange(len(x)), x).astype(np.float32)


def semitones(x: np.ndarray, st: float) -> np.ndarray:
    """``x`` played ``st`` semitones higher (and faster), as a sampler does."""
    return speed(x, 2.0 ** (st / 12.0))


def add_at(buf: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Mix ``gain * x`` into ``buf`` in place from sample ``start`` (may be negative); what falls outside
    ``buf`` is dropped."""
    if start >= len(buf) or start + len(x) <= 0:
        return
    a, b = max(start, 0), min(start + len(x), len(buf))
    buf[a:b] += gain * x[a - start:b - start]


def tile(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """(n,): ``x`` repeated end to end, starting ``offset`` samples into it."""
    reps = -(-(n + offset) // len(x)) + 1
    return np.tile(x, reps)[offset:offset + n]


def fade(x: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """A copy of ``x`` with linear fades over its first ``n_in`` and last ``n_out`` samples."""
    x = x.copy()
    if n_in > 0:
        n_in = min(n_in, len(x))
        x[:n_in] *= np.linspace(0, 1, n_in, dtype=np.float32)
    if n_out > 0:
        n_out = min(n_out, len(x))
        x[len(x) - n_out:] *= np.linspace(1, 0, n_out, dtype=np.float32)
    return x


def _fftconv(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The first len(x) samples of x * h (linear convolution), float32."""
    n = 1 << int(math.ceil(math.log2(len(x) + len(h))))
    return np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)[:len(x)].astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator, sr: int, wet: float, seconds: float) -> np.ndarray:
    """``x`` mixed with a share ``wet`` of itself through a random exponentially decaying impulse response
    ``seconds`` long (a room)."""
    n = max(int(sr * seconds), 16)
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at the end
    ir[: int(0.01 * sr)] *= np.linspace(0, 1, int(0.01 * sr))  # pre-delay ramp
    ir = (ir / np.sqrt(np.square(ir).sum())).astype(np.float32)
    return (1 - wet) * x + wet * _fftconv(x, ir)


def coloured_noise(n: int, alpha: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Noise with a 1/f^alpha power spectrum (0 white, 1 pink, 2 brown, -1 blue), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1] if n > 1 else 1.0
    x = np.fft.irfft(spec * f ** (-alpha / 2.0), n)
    return (x / max(float(np.sqrt(np.mean(np.square(x)))), 1e-12)).astype(np.float32)


def bandpass(x: np.ndarray, lo: float, hi: float, sr: int) -> np.ndarray:
    """``x`` with every frequency outside [lo, hi] Hz removed (a brick-wall filter in the FFT domain)."""
    n = len(x)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n).astype(np.float32)


def level(x: np.ndarray, peak_db: float) -> np.ndarray:
    """``x`` scaled to a peak of ``peak_db`` dBFS (silence stays silent), float32."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak <= 0:
        return x.astype(np.float32)
    return (x * (10 ** (peak_db / 20) / peak)).astype(np.float32)

