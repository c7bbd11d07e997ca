"""A generated multichannel sensor set with planted, labelled anomalies (the shipped demo for anomaly
detection; real tables load the same way through :class:`SensorTable`).

Each series is a machine-like signal: C channels mixing a few sinusoids of a per-series base
frequency (one cycle every 33-100 samples) with harmonics, channel cross-coupling and AR(1) sensor
noise. ``train`` series are all normal. ``val`` and ``test`` series carry anomalies of the five kinds
of :mod:`ssm_signal.data.anomalies` (spikes, level shifts, a frozen sensor, drift, changed
periodicity), labelled per row; ``val`` is for choosing recipes and thresholds, ``test`` for reporting.
The table has columns series_id, split, time, ch0..ch{C-1}, label (0 normal, 1 anomaly) and kind
(the anomaly's kind, "" on normal rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ssm_signal.data.anomalies import BASIC_KINDS, draw, plant, source_margin
from ssm_signal.data.sensor_tables import write_table


def normal_series(rng: np.random.Generator, length: int, channels: int) -> np.ndarray:
    """A normal series (length, C) float64: mixed sinusoids of one base frequency plus AR(1) noise."""
    f0 = rng.uniform(0.01, 0.03)  # cycles per sample
    phase = 2 * np.pi * f0 * np.arange(length) + rng.uniform(0, 2 * np.pi)
    mix = rng.normal(0, 1, (channels, 3))
    base = np.stack([np.sin(phase), np.sin(2 * phase + 0.5), np.cos(3 * phase)], 0)  # (3, L)
    x = mix @ base
    noise = np.zeros((channels, length))
    e = rng.normal(0, 0.15, (channels, length))
    for i in range(1, length):  # AR(1) sensor noise
        noise[:, i] = 0.8 * noise[:, i - 1] + e[:, i]
    return (x + noise).T


def anomalous_series(rng: np.random.Generator, length: int, channels: int, count: int,
                     kinds: tuple[str, ...] = BASIC_KINDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A series with ``count`` planted anomalies of ``kinds`` after its first fifth: (x (L, C), label (L,),
    kind (L,))."""
    anomalies = draw(rng, length, channels, count, lo=length // 5, kinds=kinds)
    source = normal_series(rng, length + source_margin(1, sum(a.length for a in anomalies)), channels)
    return plant(source, anomalies, length, source[:length].std(0), rng)


def make_sensor_anomaly_table(path: str | Path, *, n_train: int = 160, n_val: int = 16, n_test: int = 16,
                              length: int = 1500, channels: int = 4, anomalies_per_series: int = 4,
                              kinds: tuple[str, ...] = BASIC_KINDS, seed: int = 0) -> Path:
    """Write the table (Parquet or CSV by suffix) and return its path. Deterministic for a seed. ``kinds``: the
    anomaly kinds to plant (default: the five basic ones)."""
    if min(n_train, n_test) < 1 or n_val < 0 or channels < 1:
        raise ValueError(f"need n_train, n_test >= 1, n_val >= 0, channels >= 1; got {n_train}, {n_test}, "
                         f"{n_val}, {channels}")
    rng = np.random.default_rng(seed)
    frames = []
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    for i, split in enumerate(splits):
        if split == "train":
            x = normal_series(rng, length, channels)
            label, kind = np.zeros(length, np.int64), np.full(length, "", dtype=object)
        else:
            x, label, kind = anomalous_series(rng, length, channels, anomalies_per_series, tuple(kinds))
        df = pd.DataFrame(x.astype(np.float32), columns=[f"ch{c}" for c in range(channels)])
        df.insert(0, "time", np.arange(length))
        df.insert(0, "split", split)
        df.insert(0, "series_id", f"s{i:03d}")
        df["label"] = label
        df["kind"] = kind.astype(str)
        frames.append(df)
    return write_table(pd.concat(frames, ignore_index=True), path)


__all__ = ["anomalous_series", "make_sensor_anomaly_table", "normal_series"]
