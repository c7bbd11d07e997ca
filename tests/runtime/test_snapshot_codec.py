"""The numpy snapshot codec writes and reads the safetensors layout: the safetensors package reads what
it writes and the other way round; damaged bytes are refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ssm_signal import snapshot

ARRAYS = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int64),
          "empty": np.zeros((1, 0, 4), np.float32), "flag": np.array([1], np.int64), "z": np.zeros(5, np.float64)}


def test_round_trip_both_ways_with_safetensors():
    blob = snapshot.encode(ARRAYS, {"k": "v"})
    arrays, meta = snapshot.decode(blob)
    assert meta == {"k": "v"} and arrays.keys() == ARRAYS.keys()
    for k, v in ARRAYS.items():
        assert arrays[k].dtype == v.dtype and arrays[k].shape == v.shape and np.array_equal(arrays[k], v)
    theirs = st_load(blob)  # the package reads ours
    assert all(np.array_equal(theirs[k].numpy(), v) for k, v in ARRAYS.items())
    ours, meta = snapshot.decode(st_save({k: torch.from_numpy(v) for k, v in ARRAYS.items()}, metadata={"x": "y"}))
    assert meta == {"x": "y"} and all(np.array_equal(ours[k], v) and ours[k].shape == v.shape
                                      for k, v in ARRAYS.items())
    assert snapshot.checksum(ours) == snapshot.checksum(ARRAYS)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:5], "truncated"),
    (lambda b: (10**9).to_bytes(8, "little") + b[8:], "header length"),
    (lambda b: b + b"\0\0\0\0", "after the last tensor"),
    (lambda b: b[:-4], "does not fit"),
    (lambda b: b[:8] + b"[" + b[9:], "header"),
])
def test_damaged_bytes_are_refused(damage, message):
    with pytest.raises(ValueError, match=message):
        snapshot.decode(damage(snapshot.encode(ARRAYS, {})))


def test_checksum_sees_a_flipped_byte_and_checks_name_the_problem():
    blob = bytearray(snapshot.make(ARRAYS, bundle="b", version="1", fingerprint="f", backlog_s=0.5, labels=["x"]))
    assert snapshot.open_snapshot(bytes(blob), bundle="b", version="1", fingerprint="f")[1] == 0.5
    with pytest.raises(ValueError, match="taken with model 'b' version '1', not with 'c'"):
        snapshot.open_snapshot(bytes(blob), bundle="c", version="2", fingerprint="g")
    blob[-2] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        snapshot.open_snapshot(bytes(blob), bundle="b", version="1", fingerprint="f")
    with pytest.raises(ValueError, match="flag = \\[1\\] is outside \\[0, 0\\]"):
        snapshot.check_arrays(ARRAYS, ARRAYS, {"flag": (0, 0)})
    with pytest.raises(ValueError, match="another structure"):
        snapshot.check_arrays({"a": ARRAYS["a"]}, ARRAYS, {})
