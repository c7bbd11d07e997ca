"""Noise of the negative corpus, in four styles (:data:`NOISE_STYLES`): coloured noise, mains hum with a
fan, recorded electronic and household events, recorded machinery. Each style is
``make(n, sr, rng, mat) -> (n,) float32``."""

from __future__ import annotations

import numpy as np

from ssm_signal.data.negatives.dsp import add_at, bandpass, coloured_noise, fade, semitones, speed, tile
from ssm_signal.data.negatives.materials import EVENTS, MACHINES, Materials


def _noise_coloured(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Coloured noise (white, pink, brown, blue, band-limited) in segments, slowly swelling and fading."""
    out = np.zeros(n, np.float32)
    pos, xf = 0, int(0.5 * sr)
    while pos < n:
        seg = int(rng.uniform(4, 15) * sr)
        x = coloured_noise(seg + xf, float(rng.choice([0.0, 1.0, 2.0, -1.0, 1.5])), rng, sr)
        if rng.random() < 0.3:
            lo = float(rng.uniform(50, 1000))
            x = bandpass(x, lo, float(rng.uniform(lo * 2, sr / 2)), sr)
        t = np.arange(len(x)) / sr
        am = 10 ** (rng.uniform(0, 6) * np.sin(2 * np.pi * rng.uniform(0.03, 0.5) * t + rng.uniform(0, 6.3)) / 20)
        x = x * am.astype(np.float32) * float(10 ** (rng.uniform(-12, 0) / 20))
        add_at(out, fade(x, xf if pos else 0, xf), pos)
        pos += seg
    return out


def _noise_hum(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) with a fan: low-passed noise, blade-rate swirl and tone."""
    t = np.arange(n) / sr
    mains = float(rng.choice([50.0, 60.0]))
    hum = np.zeros(n)
    for k in range(1, 10):
        hum += rng.uniform(0, 1) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3))
    if rng.random() < 0.5:  # a buzzing transformer: a clipped hum
        hum = np.clip(hum * 3, -1, 1)
    blade = float(rng.uniform(20, 120))
    fan = bandpass(coloured_noise(n, 1.0, rng, sr), 20, float(rng.uniform(800, 4000)), sr)
    fan *= (1 + 0.3 * np.sin(2 * np.pi * blade * t)).astype(np.float32)
    fan += 0.2 * np.sin(2 * np.pi * blade * float(rng.integers(2, 8)) * t).astype(np.float32)
    hum_gain, fan_gain = 10 ** (rng.uniform(-20, 0, size=2) / 20)
    drift = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.01, 0.1) * t)
    x = (hum_gain * hum / max(np.abs(hum).max(), 1e-9) + fan_gain * fan / max(np.abs(fan).max(), 1e-9)) * drift
    return x.astype(np.float32)


def _noise_events(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Recorded electronic, percussive and household sounds at random times over a faint noise bed."""
    out = coloured_noise(n, float(rng.uniform(0.5, 2.0)), rng, sr) * float(10 ** (rng.uniform(-45, -30) / 20))
    rate = float(rng.uniform(0.3, 1.5))
    pos = int(rng.exponential(1 / rate) * sr)
    while pos < n:
        x = semitones(mat(EVENTS[int(rng.integers(len(EVENTS)))]), float(rng.uniform(-4, 4)))
        add_at(out, x, pos, float(10 ** (rng.uniform(-20, 0) / 20)))
        pos += int(rng.exponential(1 / rate) * sr) + 1
    return out


def _noise_machine(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Recorded machinery (a 3D printer, an industrial loop) at drifting speeds over a brown-noise rumble."""
    out = coloured_noise(n, 2.0, rng, sr) * float(10 ** (rng.uniform(-30, -12) / 20))
    pos, xf = 0, int(0.3 * sr)
    while pos < n:
        seg = int(rng.uniform(5, 15) * sr)
        x = speed(mat(MACHINES[int(rng.integers(len(MACHINES)))]), float(rng.uniform(0.8, 1.2)))
        x = tile(x, seg + xf, int(rng.integers(len(x)))) * float(10 ** (rng.uniform(-10, 0) / 20))
        add_at(out, fade(x, xf, xf), pos)
        pos += seg
    return out



#: The noise styles, in the order they are cycled over the noise sources.
NOISE_STYLES = ("coloured", "hum", "events", "machine")
MAKE_NOISE = {"coloured": _noise_coloured, "hum": _noise_hum, "events": _noise_events, "machine": _noise_machine}
