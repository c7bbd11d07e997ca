"""Real anomaly streams as sensor tables: the aeon wheel's files (pinned, checked), TimeEval's CSV layout, and
the splits of each stream (train and val from the normal part only; the archive's test series as it is)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssm_signal.data import aeon_wheel, anomaly_streams
from ssm_signal.data.anomaly_streams import STREAMS, make_stream_table, read_timeeval_csv, stream_table_path
from ssm_signal.data.sensor_tables import table_series
from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "data" / "anomaly_streams"


def timeeval_csv(x: np.ndarray, label: np.ndarray, names: list[str]) -> bytes:
    df = pd.DataFrame(x, columns=names)
    df.insert(0, "timestamp", np.arange(len(x)))
    df["is_anomaly"] = label
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> Path:
    """A zip holding the two streams' members (a periodic series with one labelled glitch; 9-channel motion),
    its hash pinned in place of the real wheel's."""
    rng = np.random.default_rng(0)
    t = np.arange(7501)
    ucr = 60 + 20 * np.sin(2 * np.pi * t / 190) + rng.normal(0, 0.1, len(t))
    label = ((t >= 4187) & (t < 4199)).astype(int)
    spec = STREAMS["ucr135"]
    daphnet = rng.normal(0, 100, (7040, 9))
    wheel = tmp_path / "aeon.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.member, timeeval_csv(ucr[:, None], label, ["value"]))
        zf.writestr(spec.train_member, timeeval_csv(ucr[:1200, None], label[:1200], ["value"]))
        zf.writestr(STREAMS["daphnet"].member, timeeval_csv(daphnet, np.zeros(7040, int), [f"a{i}" for i in range(9)]))
    monkeypatch.setattr(aeon_wheel, "AEON_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    return wheel


def test_ucr_table_keeps_the_archive_test_series_and_builds_train_and_val_from_its_prefix(fake_wheel, tmp_path):
    path = make_stream_table("ucr135", tmp_path / "u.parquet", wheel=fake_wheel)
    train = table_series(path, 1, splits=["train"])
    val = table_series(path, 1, splits=["val"])
    test = table_series(path, 1, splits=["test"])
    x, label, _ = read_timeeval_csv(zipfile.ZipFile(fake_wheel).read(STREAMS["ucr135"].member), "m")
    assert len(train) == 1 and len(train[0].x) == 900 and not train[0].label.any()
    assert np.allclose(train[0].x[:, 0], x[:900, 0], atol=1e-4)
    assert len(test) == 1 and np.array_equal(test[0].label, label) and np.allclose(test[0].x[:, 0], x[:, 0], atol=1e-4)
    assert np.flatnonzero(test[0].label).tolist() == list(range(4187, 4199))
    assert set(test[0].kind[test[0].label > 0]) == {"archive"}
    assert len(val) == 8
    for v in val:  # one planted anomaly each, in the last 300 points of the training prefix only
        where = np.flatnonzero(v.label)
        assert where.min() >= 900 and len(v.x) < 1200
        assert np.allclose(v.x[:where.min(), 0], x[:where.min(), 0], atol=1e-4)
        assert len(set(v.kind[where])) == 1


def test_daphnet_table_plants_anomalies_in_copies_of_the_later_rows(fake_wheel, tmp_path):
    path = make_stream_table("daphnet", tmp_path / "d.parquet", wheel=fake_wheel)
    t = pd.read_parquet(path)
    spec = STREAMS["daphnet"]
    assert t.groupby("split")["series_id"].nunique().to_dict() == {"test": 5, "train": 1, "val": 4}
    assert (t[t["split"] == "train"]["time"].to_numpy() == np.arange(spec.fit)).all()
    assert t[t["split"] == "test"]["time"].min() == spec.test[0]
    for _, g in t[t["split"] != "train"].groupby("series_id"):
        runs = int((np.diff(np.concatenate([[0], g["label"].to_numpy(), [0]])) == 1).sum())
        assert runs == (spec.val_count if g["split"].iloc[0] == "val" else spec.test_count)
    again = pd.read_parquet(make_stream_table("daphnet", tmp_path / "e.parquet", wheel=fake_wheel))
    pd.testing.assert_frame_equal(t, again)


def test_a_wheel_other_than_the_pinned_one_is_refused(tmp_path):
    other = tmp_path / "aeon.whl"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("x", "y")
    with pytest.raises(ValueError, match="is not the pinned"):
        make_stream_table("ucr135", tmp_path / "u.parquet", wheel=other)
    with pytest.raises(ValueError, match="unknown anomaly stream 'nab'"):
        make_stream_table("nab", tmp_path / "u.parquet", wheel=other)


def test_a_training_file_that_is_not_the_normal_prefix_is_refused(fake_wheel, tmp_path, monkeypatch):
    spec = STREAMS["ucr135"]
    monkeypatch.setitem(STREAMS, "ucr135", anomaly_streams.StreamSpec(**{**spec.__dict__, "member": spec.train_member,
                                                                         "train_member": spec.member}))
    with pytest.raises(ValueError, match="not the normal prefix"):
        make_stream_table("ucr135", tmp_path / "u.parquet", wheel=fake_wheel)


def test_fetch_script_writes_the_stream_tables_once(fake_wheel, tmp_path, capsys):
    fetch = load_benchmark("fetch_uea")
    args = ["--names", "--streams", "ucr135", "--streams-dest", str(tmp_path), "--wheel", str(fake_wheel)]
    assert fetch.main(args) == 0
    assert stream_table_path("ucr135", tmp_path).is_file()
    assert fetch.main(args) == 0
    assert "ucr135: already in" in capsys.readouterr().out


@pytest.mark.skipif(not stream_table_path("ucr135", REAL).is_file(),
                    reason=f"{REAL} absent: run `python benchmarks/fetch_uea.py --streams ucr135 daphnet`")
def test_real_ucr135_and_daphnet():
    test = table_series(stream_table_path("ucr135", REAL), 1, splits=["test"])[0]
    assert len(test.x) == 7501 and np.flatnonzero(test.label).tolist() == list(range(4187, 4199))
    assert test.x[0, 0] == pytest.approx(63.73215, rel=1e-6)
    d = table_series(stream_table_path("daphnet", REAL), 9, splits=["train"])[0]
    assert d.x.shape == (3500, 9) and d.x[0].tolist() == [101, 1000, 297, -9, 953, 303, 330, 942, -145]
