"""A generated multichannel sensor set with planted, labelled anomalies (the shipped demo
for anomaly detection; real tables load the same way through :class:`SensorTable`).

Each series is a machine-like signal: C channels mixing a few sinusoids of a per-series
base frequency with harmonics, channel cross-coupling and AR(1) noise. Training series are
all normal. Test series carry anomaly segments of four kinds, labelled per row:
spike bursts, level shifts, frequency jumps and flat-lines (stuck sensor).
The table has columns series_id, split, time, ch0..ch{C-1}, label (0 normal, 1 anomaly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("spike", "shift", "frequency", "flatline")


def _series(rng: np.random.Generator, length: int, channels: int, anomalies: int) -> tuple[np.ndarray, np.ndarray]:
    f0 = rng.uniform(0.01, 0.03)  # cycles per sample
    freq = np.full(length, f0)
    label = np.zeros(length, np.int64)
    segments = []
    for _ in range(anomalies):
        n = int(rng.integers(40, 120))
        start = int(rng.integers(length // 4, length - n))
        kind = KINDS[int(rng.integers(len(KINDS)))]
        segments.append((kind, start, n))
        label[start:start + n] = 1
        if kind == "frequency":
            freq[start:start + n] = f0 * rng.uniform(1.8, 2.5)
    phase = 2 * np.pi * np.cumsum(freq)
    mix = rng.normal(0, 1, (channels, 3))
    base = np.stack([np.sin(phase), np.sin(2 * phase + 0.5), np.cos(3 * phase)], 0)  # (3, L)
    x = mix @ base
    noise = np.zeros((channels, length))
    e = rng.normal(0, 0.15, (channels, length))
    for i in range(1, length):  # AR(1) sensor noise
        noise[:, i] = 0.8 * noise[:, i - 1] + e[:, i]
    x = x + noise
    for kind, start, n in segments:
        seg = slice(start, start + n)
        if kind == "spike":
            idx = start + rng.choice(n, size=max(3, n // 10), replace=False)
            x[:, idx] += rng.choice([-1, 1], size=(channels, len(idx))) * rng.uniform(3, 6, (channels, len(idx)))
        elif kind == "shift":
            x[:, seg] += rng.choice([-1, 1], size=(channels, 1)) * rng.uniform(1.5, 3, (channels, 1))
        elif kind == "flatline":
            x[:, seg] = x[:, start:start + 1]
    return x.T.astype(np.float32), label


def make_sensor_anomaly_table(path: str | Path, *, n_train: int = 24, n_test: int = 16, length: int = 1500,
                              channels: int = 4, anomalies_per_test_series: int = 3, seed: int = 0) -> Path:
    """Write the table (Parquet or CSV by suffix) and return its path. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        x, label = _series(rng, length, channels, 0 if split == "train" else anomalies_per_test_series)
        df = pd.DataFrame(x, columns=[f"ch{c}" for c in range(channels)])
        df.insert(0, "time", np.arange(length))
        df.insert(0, "split", split)
        df.insert(0, "series_id", f"s{i:03d}")
        df["label"] = label
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix in (".parquet", ".pq"):
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
