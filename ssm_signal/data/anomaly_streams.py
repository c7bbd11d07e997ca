"""Real sensor streams with anomalies, as sensor tables (series_id, split, time, channels, label, kind).

Both recordings ship in the ``aeon`` wheel in TimeEval's CSV layout (timestamp, channels, is_anomaly);
:func:`make_stream_table` takes them from it (:mod:`ssm_signal.data.aeon_wheel`, downloaded once) and
writes the table the anomaly configs train on:

- ``ucr135``: the UCR anomaly archive's series 135, InternalBleeding16 (one channel; the archive
  splits it into a normal training prefix of 1,200 points and the whole series of 7,501 points with
  one labelled anomaly, points 4,187-4,198). ``train`` is the first 900 points; ``val`` is the whole
  training prefix with one anomaly planted (:mod:`ssm_signal.data.anomalies`) in its last 300 points,
  eight times with different anomalies; ``test`` is the archive's test series as it is, labels
  included. Nothing of the test series is read to build ``train`` or ``val``.
- ``daphnet``: Daphnet S06R02E0, three accelerometers (9 channels) on a walking Parkinson's patient at
  64 Hz. This excerpt holds no labelled freezing-of-gait episode (every ``is_anomaly`` is 0: aeon
  1.6 deprecates it for that reason), so it cannot measure the detection of real freezes. It is used
  as real normal motion with planted anomalies: ``train`` is the first 3,500 samples (55 s: standing,
  then walking), ``val`` four copies of the next 1,200 samples, ``test`` five copies of the last 2,340,
  each copy with four planted anomalies of its own. ``kind`` names the planted anomaly of each row.

Each stream's spec (:data:`STREAMS`) fixes its rows, copies and seed, so the table is deterministic.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ssm_signal.data.aeon_wheel import DATA_PREFIX, aeon_wheel, read_member
from ssm_signal.data.anomalies import KINDS, draw_within, plant, source_margin
from ssm_signal.data.sensor_tables import write_table

DEFAULT_ROOT = "data/anomaly_streams"


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """How one recording becomes a table.

    member: the CSV inside the wheel (for ``test="archive"``: its test file; ``train_member`` the
    archive's training prefix); sample_rate: Hz (1 where the series has no physical rate); fit: rows
    [0, fit) train the model; val: rows (start, stop) copied ``val_copies`` times with ``val_count``
    planted anomalies after ``val_lo`` rows of each copy; test: "archive" (the member as it is) or rows
    (start, stop) copied ``test_copies`` times with ``test_count`` planted anomalies after ``test_lo``
    rows; lengths: (min, max) planted anomaly length in rows (the short kinds have their own); seed; kinds: the
    kinds planted (all six of :mod:`ssm_signal.data.anomalies`).
    """

    member: str
    sample_rate: int
    fit: int
    val: tuple[int, int]
    val_copies: int
    val_count: int
    val_lo: int
    test: str | tuple[int, int]
    test_copies: int = 1
    test_count: int = 0
    test_lo: int = 0
    train_member: str | None = None
    lengths: tuple[int, int] = (20, 100)
    seed: int = 0
    kinds: tuple[str, ...] = KINDS


STREAMS = {
    "ucr135": StreamSpec(member=f"{DATA_PREFIX}KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv",
                         train_member=f"{DATA_PREFIX}KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TRAIN.csv",
                         sample_rate=1, fit=900, val=(0, 1200), val_copies=8, val_count=1, val_lo=900,
                         test="archive", lengths=(20, 100), seed=135),
    "daphnet": StreamSpec(member=f"{DATA_PREFIX}Daphnet_S06R02E0/S06R02E0.csv", sample_rate=64, fit=3500,
                          val=(3500, 4700), val_copies=4, val_count=3, val_lo=192, test=(4700, 7040),
                          test_copies=5, test_count=4, test_lo=320, lengths=(32, 192), seed=6),
}


def stream_table_path(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / name / "table.parquet"


def read_timeeval_csv(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """TimeEval's CSV layout (timestamp, channels..., is_anomaly) -> (x (L, C) float64, label (L,) int64,
    channel names)."""
    df = pd.read_csv(io.BytesIO(data))
    if df.shape[1] < 3 or df.columns[-1] != "is_anomaly":
        raise ValueError(f"{name}: not TimeEval's layout (timestamp, channels..., is_anomaly): {list(df.columns)[:6]}")
    channels = [str(c) for c in df.columns[1:-1]]
    return df[channels].to_numpy(np.float64), df["is_anomaly"].to_numpy().astype(np.int64), channels


def _frame(series_id: str, split: str, start: int, x: np.ndarray, label: np.ndarray, kind: np.ndarray,
           channels: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(x.astype(np.float32), columns=channels)
    df.insert(0, "time", np.arange(start, start + len(x)))
    df.insert(0, "split", split)
    df.insert(0, "series_id", series_id)
    df["label"] = label
    df["kind"] = kind.astype(str)
    return df


def _planted_copies(source: np.ndarray, start: int, split: str, copies: int, count: int, lo: int,
                    spec: StreamSpec, scale: np.ndarray, rng: np.random.Generator, channels: list[str],
                    name: str) -> list[pd.DataFrame]:
    """``copies`` of ``source`` (rows from ``start`` of the recording), each with ``count`` planted anomalies
    after row ``lo``; shortened by the rows the fastest periodicity anomaly could consume."""
    length = len(source) - source_margin(1, spec.lengths[1])
    out = []
    for k in range(copies):
        anomalies = draw_within(rng, len(source), length, source.shape[1], count, lo=lo, min_len=spec.lengths[0],
                                max_len=spec.lengths[1], kinds=spec.kinds)
        x, label, kind = plant(source, anomalies, length, scale, rng)
        out.append(_frame(f"{name}_{split}{k}", split, start, x, label, kind, channels))
    return out


def make_stream_table(name: str, path: str | Path | None = None, wheel: str | Path | None = None) -> Path:
    """Write stream ``name``'s table to ``path`` (default ``data/anomaly_streams/<name>/table.parquet``),
    taking the recording from ``wheel`` (default: download the pinned aeon wheel). Returns the path."""
    if name not in STREAMS:
        raise ValueError(f"unknown anomaly stream {name!r}; known: {sorted(STREAMS)}")
    spec = STREAMS[name]
    path = Path(path) if path is not None else stream_table_path(name)
    with aeon_wheel(wheel) as whl:
        x, label, channels = read_timeeval_csv(read_member(whl, spec.member), spec.member)
        prefix = read_member(whl, spec.train_member) if spec.train_member else None
    if prefix is not None:
        # the archive's training file is the normal prefix of its test file: train and val come from it alone
        train_x, train_label, _ = read_timeeval_csv(prefix, spec.train_member)
        if train_label.any() or not np.array_equal(train_x, x[:len(train_x)]):
            raise ValueError(f"{name}: the archive's training file is not the normal prefix of its test file")
        normal = train_x
    else:
        normal = x
    if label[:spec.val[1]].any():
        raise ValueError(f"{name}: labelled anomalies in the rows used for training and validation")
    rng = np.random.default_rng(spec.seed)
    scale = normal[:spec.fit].std(0)  # the planted anomalies' unit: each channel's spread on the training rows
    none = np.full(spec.fit, "", dtype=object)
    frames = [_frame(name, "train", 0, normal[:spec.fit], np.zeros(spec.fit, np.int64), none, channels)]
    a, b = spec.val
    frames += _planted_copies(normal[a:b], a, "val", spec.val_copies, spec.val_count, spec.val_lo, spec, scale, rng,
                              channels, name)
    if spec.test == "archive":
        kind = np.where(label > 0, "archive", "").astype(object)
        frames.append(_frame(f"{name}_test", "test", 0, x, label, kind, channels))
    else:
        a, b = spec.test
        frames += _planted_copies(x[a:b], a, "test", spec.test_copies, spec.test_count, spec.test_lo, spec, scale,
                                  rng, channels, name)
    return write_table(pd.concat(frames, ignore_index=True), path)
