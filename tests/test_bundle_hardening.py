"""Issue 17 at the bundle: weights that are not finite, bundle configs of the wrong shape or type,
file modes, channels-first arrays and sample rates that would ask for gigabytes."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.bundle import BundleError
from tests.test_bundle import small_model


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, value):
    """Point 3: a BundleError naming the tensor, not NaN scores reported "ok"."""
    m = small_model()
    with torch.no_grad():
        m.head.proj.weight.view(-1)[3] = value
    path = save_bundle(m, tmp_path / "b")
    with pytest.raises(BundleError, match=r"NaN or Inf values \(head\.proj\.weight\)"):
        load_bundle(path)


@pytest.mark.parametrize("edit, message", [
    (lambda meta: [meta], "must hold a JSON object, got a list"),
    (lambda meta: {**meta, "format_version": "1"}, "format_version must be an integer, got '1'"),
    (lambda meta: {**meta, "model": {**meta["model"], "frontend": {**meta["model"]["frontend"], "n_mels": -3}}},
     "frontend.n_mels must be >= 1, got -3"),
    (lambda meta: {**meta, "model": {**meta["model"], "frontend": {**meta["model"]["frontend"], "n_mels": "8"}}},
     "frontend.n_mels must be an integer, got '8'"),
    (lambda meta: {**meta, "model": [1, 2]}, "field 'model' must be a JSON object"),
])
def test_bad_bundle_config_is_a_one_line_bundle_error(tmp_path, edit, message):
    """Point 15: a list for an object, a string for a number, a negative size: a BundleError naming the field."""
    path = save_bundle(small_model(), tmp_path / "b")
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(BundleError) as e:
        load_bundle(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bundle_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    """Point 14: 0644 under the usual umask 022, not safetensors' 0600; a stricter umask is respected."""
    old = os.umask(0o022)
    try:
        path = save_bundle(small_model(), tmp_path / "b")
        modes = {f.name: f.stat().st_mode & 0o777 for f in path.iterdir()}
        os.umask(0o077)
        strict = save_bundle(small_model(), tmp_path / "strict")
        strict_modes = {f.stat().st_mode & 0o777 for f in strict.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}
    assert strict_modes == {0o600}


def test_channels_first_array_is_refused_naming_both_readings(tmp_path):
    """Point 6, at predict: (2, 16000) is not 16000 channels of 2 samples to downmix."""
    b = load_bundle(save_bundle(small_model(), tmp_path / "b"))
    with pytest.raises(ValueError, match=r"16000 channels of 2 samples; more likely 2 channels of 16000 samples"):
        b.predict(np.zeros((2, 16000), np.float32), 8000)
    assert b.predict(np.zeros((16000, 2), np.float32), 8000).label in b.labels  # time first: downmixed


def test_rate_far_below_the_model_rate_is_refused_before_allocating(tmp_path):
    """Point 11: a header saying 1 Hz asked for gigabytes; now a clear error at once."""
    b = load_bundle(save_bundle(small_model(), tmp_path / "b"))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"sample_rate 1 Hz is outside the supported range \[8000, 192000\] Hz"):
        b.predict(np.zeros(200_000, np.int16), 1)  # an audio model: the streaming engine's rule
    assert time.perf_counter() - t0 < 1.0
    # a sensor model takes any rate up to 8x below its own
    s = load_bundle(save_bundle(small_model("anomaly"), tmp_path / "s"))
    rate = s.sample_rate
    with pytest.raises(ValueError, match=rf"sample rate 1 Hz is below the {rate // 8} Hz this {rate} Hz model accepts"):
        s.predict(np.zeros((200_000, 2), np.int16), 1)
    assert np.isfinite(s.predict(np.zeros((rate // 8 * 2, 2), np.float32), rate // 8).scores).all()
