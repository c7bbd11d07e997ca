"""Anomalies a person would recognise, planted into multichannel series with their labels.

The generated sensor table (:mod:`ssm_signal.data.synthetic_sensors`) and the validation and test
streams built from real recordings (:mod:`ssm_signal.data.anomaly_streams`) plant them through this
one module, so the kinds mean the same everywhere. Sizes are in units of each channel's standard
deviation on normal data (``scale``), so they read the same on any sensor:

- ``spike``: a few single samples far off the signal (``size`` 5-9 standard deviations) in some
  channels; labelled from the first spike to the last.
- ``shift``: the level of some channels moves by ``size`` (1.5-3) standard deviations and stays
  there for the segment, then returns.
- ``frozen``: some channels stop moving (stuck at their last value, noise included) for the segment.
- ``drift``: some channels drift away linearly, reaching ``size`` (2.5-4) standard deviations at the
  end of the segment, then return (a recalibration).
- ``periodicity``: the whole signal plays ``size`` times faster (1.8-2.5) or slower (0.4-0.55) for the
  segment, continuous at both ends; the rest of the series keeps its own time.
- ``noise``: some channels turn noisy for 8-40 samples: white noise of ``size`` (0.5-2) standard deviations
  added (a loose contact, interference).

The generated table plants the first five (:data:`BASIC_KINDS`, the issue's list); the real streams' val and
test series all six (:data:`KINDS`).

:func:`plant` applies a list of :class:`Anomaly` to a source series and returns the planted series
(``length`` samples), a per-sample label (0 normal, 1 anomaly) and the kind per sample ("" normal).
Where several anomalies overlap the later one wins the kind; :func:`draw` never makes them overlap.
"""

from __future__ import annotations

import dataclasses

import numpy as np

BASIC_KINDS = ("spike", "shift", "frozen", "drift", "periodicity")
KINDS = (*BASIC_KINDS, "noise")
# (low, high) of the size each kind draws; periodicity: speed factors, faster or slower
SIZES = {"spike": (5.0, 9.0), "shift": (1.5, 3.0), "frozen": (0.0, 0.0), "drift": (2.5, 4.0), "noise": (0.5, 2.0)}
SHORT = {"spike": (8, 32), "noise": (8, 40)}  # lengths of the short kinds (the others: min_len .. max_len)
FASTER, SLOWER = (1.8, 2.5), (0.4, 0.55)


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """One planted anomaly: ``kind`` (one of KINDS) over samples [start, start + length) of the output,
    in ``channels`` (every channel for periodicity), of ``size`` (see the module docstring), with a
    ``sign`` of +1 or -1 for the additive kinds."""

    kind: str
    start: int
    length: int
    channels: tuple[int, ...]
    size: float
    sign: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"anomaly kind must be one of {KINDS}, got {self.kind!r}")
        if self.start < 1 or self.length < 1:
            raise ValueError(f"an anomaly needs start >= 1 and length >= 1, got {self.start}, {self.length}")
        if not self.channels:
            raise ValueError("an anomaly needs at least one channel")
        if self.kind == "periodicity" and not self.size > 0:
            raise ValueError(f"a periodicity anomaly's size is a speed factor > 0, got {self.size}")

    @property
    def stop(self) -> int:
        return self.start + self.length

    def source_extra(self) -> float:
        """Source samples this anomaly consumes beyond its own length (periodicity: (size - 1) * length)."""
        return (self.size - 1.0) * self.length if self.kind == "periodicity" else 0.0


def draw(rng: np.random.Generator, length: int, channels: int, count: int, *, lo: int = 0,
         kinds: tuple[str, ...] = BASIC_KINDS, min_len: int = 40, max_len: int = 160) -> list[Anomaly]:
    """``count`` anomalies of random kinds placed apart inside [lo, length) of a series of ``length``
    samples with ``channels`` channels; sorted by start. Raises ValueError when they cannot fit."""
    if count < 0 or not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"draw: need count >= 0 and kinds from {KINDS}, got {count}, {kinds}")
    lo = max(lo, 1)
    gap = min_len  # normal samples kept between two anomalies (and before the first)
    span = length - lo
    if count and span < count * (max_len + gap):
        raise ValueError(f"draw: {count} anomalies of up to {max_len} samples do not fit in {span} samples")
    # one slot per anomaly, each placed at random inside its slot: they never overlap
    slot = span // max(count, 1)
    out = []
    for i in range(count):
        kind = kinds[int(rng.integers(len(kinds)))]
        n = int(rng.integers(min_len, max_len + 1))
        if kind in SHORT:
            n = int(rng.integers(SHORT[kind][0], SHORT[kind][1] + 1))
        start = lo + i * slot + gap + int(rng.integers(0, max(1, slot - gap - n)))
        k = int(rng.integers(1, channels + 1))
        chans = tuple(sorted(rng.choice(channels, size=k, replace=False).tolist()))
        if kind == "periodicity":
            size = float(rng.uniform(*(FASTER if rng.random() < 0.5 else SLOWER)))
            chans = tuple(range(channels))
        else:
            size = float(rng.uniform(*SIZES[kind]))
        out.append(Anomaly(kind, start, n, chans, size, float(rng.choice([-1.0, 1.0]))))
    return out


def draw_within(rng: np.random.Generator, source_len: int, length: int, channels: int, count: int, **kw
                ) -> list[Anomaly]:
    """:func:`draw` (keywords as there) until the anomalies fit a source of ``source_len`` samples: periodicity
    anomalies consume extra source samples (:func:`time_map`), so a draw with more of them may not fit."""
    while True:
        anomalies = draw(rng, length, channels, count, **kw)
        if time_map(anomalies, length)[-1] <= source_len - 1:
            return anomalies


def source_margin(count: int, max_len: int) -> int:
    """Source samples beyond the output's length that ``count`` anomalies of up to ``max_len`` samples can
    consume (all of them periodicity anomalies at the fastest speed): what a source must hold in addition."""
    return int(np.ceil((FASTER[1] - 1.0) * count * max_len)) + 1


def time_map(anomalies: list[Anomaly], length: int) -> np.ndarray:
    """Source position of each output sample, (length,) float64: the identity but for periodicity
    anomalies, which read their segment at ``size`` source samples per output sample, and shift what
    follows by the extra samples they consumed (so the map is continuous and increasing)."""
    rate = np.ones(length)
    for a in anomalies:
        if a.kind == "periodicity":
            rate[a.start:a.stop] = a.size
    # position i = sum of the rates before i: sample i of the output reads source position pos[i]
    return np.concatenate([[0.0], np.cumsum(rate[:-1])])


def plant(source: np.ndarray, anomalies: list[Anomaly], length: int, scale: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plant ``anomalies`` into ``source`` (L_src, C) -> (series (length, C) float32, label (length,) int64,
    kind (length,) object). ``scale`` (C,): each channel's standard deviation on normal data; ``rng``
    places the spikes. The source must hold the samples the periodicity anomalies consume (ValueError)."""
    source = np.asarray(source, dtype=np.float64)
    if source.ndim != 2:
        raise ValueError(f"plant: source must be (L, C), got shape {source.shape}")
    C = source.shape[1]
    pos = time_map(anomalies, length)
    if pos[-1] > source.shape[0] - 1:
        raise ValueError(f"plant: the source has {source.shape[0]} samples; these anomalies need {pos[-1] + 1:.0f}")
    for a in anomalies:
        if a.stop > length or max(a.channels) >= C:
            raise ValueError(f"plant: {a} does not fit a series of {length} samples and {C} channels")
    # linear interpolation; integer positions (everywhere outside periodicity segments) read exact samples
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, source.shape[0] - 1)
    w = (pos - i0)[:, None]
    x = source[i0] * (1 - w) + source[i1] * w
    label = np.zeros(length, np.int64)
    kind = np.full(length, "", dtype=object)
    scale = np.asarray(scale, dtype=np.float64)
    for a in anomalies:
        seg, ch = slice(a.start, a.stop), list(a.channels)
        amp = a.sign * a.size * scale[ch]
        if a.kind == "spike":
            n_spikes = int(rng.integers(2, 5))
            at = a.start + np.sort(rng.choice(a.length, size=min(n_spikes, a.length), replace=False))
            signs = rng.choice([-1.0, 1.0], size=(len(at), len(ch)))
            x[np.ix_(at, ch)] += signs * a.size * scale[ch]
            seg = slice(int(at[0]), int(at[-1]) + 1)
        elif a.kind == "shift":
            x[seg, ch] += amp
        elif a.kind == "frozen":
            x[seg, ch] = x[a.start - 1, ch]
        elif a.kind == "drift":
            x[seg, ch] += np.linspace(0.0, 1.0, a.length)[:, None] * amp
        elif a.kind == "noise":
            x[seg, ch] += rng.normal(0.0, 1.0, (a.length, len(ch))) * a.size * scale[ch]
        label[seg] = 1
        kind[seg] = a.kind
    return x.astype(np.float32), label, kind
