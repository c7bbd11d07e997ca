"""SensorTable on small CSV/Parquet tables: ordering, labels, NaN policies, skips, windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.data import pad_batch
from ssm_signal.data.sensor_tables import SensorTable, label_key
from ssm_signal.data.skips import DataError, SkipLog


def table() -> pd.DataFrame:
    """Two series, rows out of time order; 'b' is shorter. Channels ax, ay; per-series label 'activity'."""
    return pd.DataFrame(
        {
            "series_id": ["a", "a", "a", "b", "b", "a"],
            "time": [2, 0, 1, 5, 3, 3],
            "ax": [3.0, 1.0, 2.0, 20.0, 10.0, 4.0],
            "ay": [-3.0, -1.0, -2.0, -20.0, -10.0, -4.0],
            "note": ["x"] * 6,  # text: not a channel
            "activity": ["run", "run", "run", "walk", "walk", "run"],
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_per_series_label_from_file(tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    getattr(table(), f"to_{fmt}")(path, index=False)
    ds = SensorTable(path, label_col="activity")
    assert ds.channels == ["ax", "ay"] and ds.class_labels == ["run", "walk"]
    assert ds.series_ids == ["a", "b"] and len(ds) == 2 and ds.labels == [0, 1]
    x, y = ds[0]
    assert x.dtype == torch.float32 and y == 0
    torch.testing.assert_close(x, torch.tensor([[1.0, -1], [2, -2], [3, -3], [4, -4]]))
    torch.testing.assert_close(ds[1][0], torch.tensor([[10.0, -10], [20, -20]]))
    assert ds.index == [("a", 0, 4), ("b", 0, 2)] and not ds.skips and not ds.fills


def test_label_map_explicit_channels_and_classes():
    df = table().assign(series_id=[1, 1, 1, 2, 2, 1])
    ds = SensorTable(df, label_map={"1": "walk", 2: "run"}, channels=["ay"], classes=["walk", "run"])
    assert ds.channels == ["ay"] and ds.series_ids == [1, 2] and ds.labels == [0, 1]
    assert ds[0][0].shape == (4, 1)
    ds = SensorTable(df, label_map={1: "walk"})
    assert ds.series_ids == [1] and ds.skips.items == [
        ("<DataFrame>[series_id=2]", "missing label: series id not in label_map")
    ]
    with pytest.raises(DataError, match=r"\[series_id=2\]: missing label: series id not in label_map \(strict=True\)"):
        SensorTable(df, label_map={1: "walk"}, strict=True)


def test_per_row_labels_and_collate(tmp_path):
    df = table().assign(anomaly=[0, 0, 1, 1, 0, 0.0])  # float column: 0.0/1.0 read as classes "0"/"1"
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    ds = SensorTable(path, row_label_col="anomaly", channels=["ax"])
    assert ds.class_labels == ["0", "1"] and ds.per_step
    x, y = ds[0]
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 0, 0]  # rows in time order 0, 1, 2, 3
    assert ds[1][1].tolist() == [0, 1]
    xb, yb, lengths = pad_batch([ds[0], ds[1]])
    assert xb.shape == (2, 4, 1) and lengths.tolist() == [4, 2]
    assert yb.tolist() == [[0, 1, 0, 0], [0, 1, -100, -100]]


def test_duplicate_timestamps_are_a_recorded_skip():
    df = table()
    df.loc[5, "time"] = 1  # series a now has time 1 twice
    ds = SensorTable(df, label_col="activity")
    assert ds.series_ids == ["b"]
    assert ds.skips.items == [("<DataFrame>[series_id=a]", "duplicate timestamps: 2 rows, first at 1")]
    with pytest.raises(DataError, match=r"\[series_id=a\]: duplicate timestamps: 2 rows.*strict=True"):
        SensorTable(df, label_col="activity", strict=True)


def test_nan_rows_follow_the_policy(tmp_path):
    df = table()
    df.loc[1, "ax"] = np.nan  # a, t=0: leading gap in ax
    df.loc[2, "ay"] = np.nan  # a, t=1: forward-filled from t=0
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    ds = SensorTable(path, label_col="activity")
    torch.testing.assert_close(ds[0][0], torch.tensor([[0.0, -1], [2, -1], [3, -3], [4, -4]]))
    assert ds.fills.items == [(f"{path}[series_id=a]", 1, 1)]
    zero = SensorTable(path, label_col="activity", nan="zero")
    torch.testing.assert_close(zero[0][0], torch.tensor([[0.0, -1], [2, 0], [3, -3], [4, -4]]))
    skip = SensorTable(path, label_col="activity", nan="skip")
    assert skip.series_ids == ["b"]
    assert skip.skips.items == [(f"{path}[series_id=a]", "missing values: 2 missing or non-finite values")]
    with pytest.raises(DataError, match=r"t\.csv\[series_id=a\]: 2 missing or non-finite values \(nan='error'"):
        SensorTable(path, label_col="activity", nan="error")


def test_unknown_missing_and_inconsistent_labels():
    df = table()
    ds = SensorTable(df, label_col="activity", classes=["run"])
    assert ds.series_ids == ["a"] and ds.class_labels == ["run"]
    assert ds.skips.items == [("<DataFrame>[series_id=b]", "unknown label: 'walk' not in ['run']")]
    with pytest.raises(DataError, match=r"unknown label: 'walk' not in \['run'\] \(strict=True\)"):
        SensorTable(df, label_col="activity", classes=["run"], strict=True)

    bad = df.copy()
    bad.loc[0, "activity"] = "walk"
    bad.loc[3, "activity"] = None
    shared = SkipLog()
    with pytest.raises(DataError, match=r"<DataFrame>: no usable series \(2 items skipped \(2 inconsistent label\)\)"):
        SensorTable(bad, label_col="activity", skips=shared)
    assert "['run', 'walk']" in shared.items[0][1] and "['walk', '<missing>']" in shared.items[1][1]

    rows = df.assign(anomaly=[0, 0, 2, 1, 0, 0])
    ds = SensorTable(rows, row_label_col="anomaly", classes=[0, 1])
    assert ds.series_ids == ["b"] and ds.skips.items[0][1] == "unknown label: ['2'] not in ['0', '1']"


def test_missing_ids_and_columns():
    df = table()
    df.loc[3, "series_id"] = None
    ds = SensorTable(df, label_col="activity")
    assert ds.skips.items == [("<DataFrame>[series_id=<missing>]", "missing series id: 1 rows")]
    assert ds[1][0].shape == (1, 2)
    with pytest.raises(DataError, match=r"missing columns \['label'\]; the table has"):
        SensorTable(df, label_col="label")
    with pytest.raises(DataError, match=r"channel columns \['note'\] are not numeric"):
        SensorTable(df, label_col="activity", channels=["note"])
    with pytest.raises(ValueError, match="exactly one of"):
        SensorTable(df)


def test_iso_time_text_is_sorted_as_time():
    df = pd.DataFrame(
        {
            "series_id": [7, 7, 7],
            "time": ["2024-01-01T00:00:10", "2024-01-01T00:00:09", "2024-01-01T00:00:00.5"],
            "v": [3.0, 2.0, 1.0],
            "y": ["k", "k", "k"],
        }
    )
    ds = SensorTable(df, label_col="y")
    assert ds[0][0][:, 0].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(DataError, match="time column 'time' is neither numeric, datetime nor ISO 8601"):
        SensorTable(df.assign(time=["soon", "later", "now"]), label_col="y")


def test_windows_cover_every_row_and_skip_short_series():
    n = 10
    df = pd.DataFrame(
        {
            "series_id": ["long"] * n + ["short"] * 2,
            "time": list(range(n)) + [0, 1],
            "v": np.arange(n + 2, dtype=float),
            "y": [0] * 5 + [1] * 5 + [0, 0],
        }
    )
    ds = SensorTable(df, row_label_col="y", window=4, stride=3)
    # starts 0, 3, 6 then one aligned to the end (6 + 4 = 10 already reaches it: no extra)
    assert ds.index == [("long", 0, 4), ("long", 3, 7), ("long", 6, 10)]
    assert ds.skips.items == [("<DataFrame>[series_id=short]", "shorter than window: 2 < 4 rows")]
    ds = SensorTable(df, row_label_col="y", window=4)
    assert [i[1:] for i in ds.index] == [(0, 4), (4, 8), (6, 10)]
    x, y = ds[2]
    assert x[:, 0].tolist() == [6.0, 7, 8, 9] and y.tolist() == [1, 1, 1, 1]
    assert [lab.tolist() for lab in ds.labels][0] == [0, 0, 0, 0]


def test_windowed_skip_drops_only_windows_with_missing_values():
    df = pd.DataFrame({"series_id": 0, "time": range(8), "v": [0, 1, 2, 3, np.nan, 5, 6, 7], "y": "c"})
    ds = SensorTable(df, label_col="y", window=2, nan="skip")
    assert [i[1:] for i in ds.index] == [(0, 2), (2, 4), (6, 8)]
    assert ds.skips.items == [
        ("<DataFrame>[series_id=0][4:6]", "missing values: 1 missing or non-finite values in window")
    ]


def test_label_key():
    assert [label_key(v) for v in (1, 1.0, np.float32(2.0), np.int64(3), "x", 1.5)] == ["1", "1", "2", "3", "x", "1.5"]


def test_table_series_reads_one_stream_per_series_in_time_order(tmp_path):
    from ssm_signal.data.sensor_tables import channel_columns, table_series, write_table

    df = pd.DataFrame({"series_id": ["b", "a", "a", "b", "a"], "split": ["test", "val", "val", "test", "val"],
                       "time": [1, 2, 0, 0, 1], "x": [4.0, 3.0, 1.0, 5.0, 2.0], "y": [0.0, 0.0, 0.0, 1.0, 1.0],
                       "label": [1, 0, 0, 0, 1], "kind": ["shift", "", "", "", "spike"]})
    for name in ("t.parquet", "t.csv"):
        path = write_table(df, tmp_path / name)
        a, b = table_series(path, 2)
        assert (a.series_id, a.split, b.series_id) == ("a", "val", "b")
        assert a.x[:, 0].tolist() == [1.0, 2.0, 3.0] and a.label.tolist() == [0, 1, 0]
        assert b.kind.tolist() == ["", "shift"]
        assert [s.series_id for s in table_series(path, 2, splits=["test"])] == ["b"]
        assert [s.series_id for s in table_series(path, 2, exclude=["test"])] == ["a"]
        assert not list(tmp_path.glob("*.tmp"))
    assert channel_columns(df) == ["x", "y"]
    one = table_series(df[["x", "y"]], 2)  # no series_id, split or label: the whole table is one series
    assert len(one) == 1 and one[0].label is None and one[0].x.shape == (5, 2)
    with pytest.raises(DataError, match="2 channel columns .* the model expects 3"):
        table_series(df, 3)
    with pytest.raises(DataError, match=r"columns \['note'\] are neither channels"):
        channel_columns(df.assign(note="text"))
    with pytest.raises(DataError, match="holds NaN or Inf"):
        table_series(df.assign(x=[1.0, np.nan, 2.0, 3.0, 4.0]), 2)
