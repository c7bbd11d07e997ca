"""The planted anomalies do what their names say, where their labels say, and nothing elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssm_signal.data.anomalies import KINDS, Anomaly, draw, plant, time_map
from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table, normal_series


def source(n=600, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(n, c)), 0)


def test_each_kind_changes_its_segment_and_channels_only():
    x = source()
    scale = np.array([1.0, 2.0, 0.5])
    rng = np.random.default_rng(1)
    for kind, size in (("shift", 2.0), ("drift", 3.0), ("frozen", 0.0), ("spike", 6.0), ("noise", 1.0)):
        a = Anomaly(kind, 100, 50, (0, 2), size, sign=-1.0)
        y, label, kinds = plant(x, [a], 500, scale, rng)
        changed = np.flatnonzero(np.abs(y - x[:500]).max(1) > 1e-4)
        assert y.dtype == np.float32 and y.shape == (500, 3)
        assert np.allclose(y[:, 1], x[:500, 1], atol=1e-4)  # channel 1 untouched
        assert set(changed) <= set(range(100, 150)) and changed.size
        assert set(np.flatnonzero(label)) == set(np.flatnonzero(kinds == kind))
        if kind == "shift":
            assert np.allclose(y[100:150, [0, 2]] - x[100:150, [0, 2]], -2.0 * scale[[0, 2]], atol=1e-4)
            assert label[100:150].all() and label.sum() == 50
        elif kind == "drift":
            d = y[100:150, 0] - x[100:150, 0]
            assert d[0] == pytest.approx(0, abs=1e-4) and d[-1] == pytest.approx(-3.0, abs=1e-4)
            assert np.all(np.diff(d) < 0)  # a steady ramp
        elif kind == "frozen":
            assert np.allclose(y[100:150, [0, 2]], x[99, [0, 2]], atol=1e-4)
        elif kind == "noise":  # white noise of 1 standard deviation of each channel
            added = (y[100:150] - x[100:150])[:, [0, 2]] / scale[[0, 2]]
            assert label[100:150].all() and 0.7 < added.std() < 1.3 and abs(added.mean()) < 0.3
        else:  # spikes: 2-4 single samples, each 6 standard deviations off, labelled from the first to the last
            assert 2 <= changed.size <= 4 and label.sum() == changed[-1] - changed[0] + 1
            assert np.allclose(np.abs(y[changed][:, [0, 2]] - x[changed][:, [0, 2]]), 6.0 * scale[[0, 2]], atol=1e-3)


def test_periodicity_plays_faster_and_stays_continuous():
    t = np.arange(1000, dtype=np.float64)
    x = np.sin(2 * np.pi * t / 50)[:, None]
    a = Anomaly("periodicity", 200, 100, (0,), 2.0)
    pos = time_map([a], 800)
    assert np.all(np.diff(pos) > 0) and pos[199] == 199 and pos[300] == 400 and pos[-1] == 899
    y, label, _ = plant(x, [a], 800, np.ones(1), np.random.default_rng(0))
    assert np.allclose(y[:200, 0], x[:200, 0], atol=1e-6)  # before: the source itself
    assert np.allclose(y[300:, 0], x[400:900, 0], atol=1e-6)  # after: the source, 100 samples later
    assert np.allclose(y[200:300, 0], np.sin(2 * np.pi * (200 + 2 * np.arange(100)) / 50), atol=1e-6)  # period 25
    assert np.flatnonzero(label).tolist() == list(range(200, 300))
    with pytest.raises(ValueError, match="the source has 1000 samples"):
        plant(x, [a], 950, np.ones(1), np.random.default_rng(0))


def test_draw_places_anomalies_apart_inside_the_range():
    rng = np.random.default_rng(3)
    for _ in range(20):
        anomalies = draw(rng, 1500, 4, 4, lo=300)
        starts = [a.start for a in anomalies]
        assert starts == sorted(starts) and starts[0] >= 300 + 40 and anomalies[-1].stop <= 1500
        assert all(b.start - a.stop >= 0 for a, b in zip(anomalies, anomalies[1:], strict=False))
        assert all(a.kind in KINDS and max(a.channels) < 4 for a in anomalies)
    with pytest.raises(ValueError, match="do not fit"):
        draw(rng, 500, 2, 4, lo=100)
    with pytest.raises(ValueError, match="kind must be one of"):
        Anomaly("glitch", 10, 5, (0,), 1.0)


def test_generated_table_splits_and_kinds(tmp_path):
    p = make_sensor_anomaly_table(tmp_path / "t.parquet", n_train=3, n_val=2, n_test=3, length=900, channels=2,
                                  anomalies_per_series=3, seed=5)
    t = pd.read_parquet(p)
    assert list(t.columns) == ["series_id", "split", "time", "ch0", "ch1", "label", "kind"]
    assert t.groupby("split")["series_id"].nunique().to_dict() == {"test": 3, "train": 3, "val": 2}
    assert (t[t["split"] == "train"]["label"] == 0).all()
    assert ((t["label"] > 0) == (t["kind"] != "")).all()
    runs = t[t["split"] != "train"].groupby("series_id")["label"].apply(
        lambda s: int((np.diff(np.concatenate([[0], s.to_numpy(), [0]])) == 1).sum()))
    assert (runs == 3).all()
    again = pd.read_parquet(make_sensor_anomaly_table(tmp_path / "u.parquet", n_train=3, n_val=2, n_test=3,
                                                      length=900, channels=2, anomalies_per_series=3, seed=5))
    pd.testing.assert_frame_equal(t, again)  # deterministic for a seed
    x = normal_series(np.random.default_rng(0), 2000, 3)
    assert x.shape == (2000, 3) and 0.8 < x.std() < 2.0
