"""One input normaliser: predict/scoring and a streaming session take and refuse the same inputs alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.bundle import prepare_signal
from ssm_signal.frontends.resample import resample
from ssm_signal.signal_input import as_samples
from ssm_signal.streaming import StreamConfig, StreamingSession
from tests.test_bundle import small_model

BAD = [
    (np.zeros(10, np.uint16), 8000, "not a PCM format"),
    (np.zeros(10, np.complex64), 8000, "complex"),
    (np.zeros(10, bool), 8000, "booleans"),
    (np.array(["a", "b"]), 8000, "numeric"),
    (np.zeros((10, 2, 2), np.float32), 8000, "shape"),
    (np.zeros((2, 16000), np.float32), 8000, "time first"),
    (np.array([0.0, np.nan], np.float32), 8000, "NaN"),
    (np.zeros(10, np.float32), 4000, "outside the supported range"),
    (np.zeros(10, np.float32), 400_000, "outside the supported range"),
    (np.zeros(10, np.float32), 44100.5, "whole number"),
    (np.zeros(10, np.float32), "16000", "number of Hz"),
]


@pytest.mark.parametrize("samples,rate,msg", BAD, ids=[m for _, _, m in BAD])
def test_predict_and_stream_refuse_alike(samples, rate, msg, tmp_path):
    b = load_bundle(save_bundle(small_model(), tmp_path / "b"))
    with pytest.raises(ValueError, match=msg):
        b.predict(samples, rate)
    with pytest.raises(ValueError, match=msg):
        StreamingSession(b, config=StreamConfig(compile=False)).push(samples, rate)


def test_predict_and_stream_take_alike():
    """int16 stereo at 44.1 kHz: the same (n, 1) float samples, then the same resampled signal."""
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((4410, 2)) * 3000).astype(np.int16)
    x = as_samples(pcm, 1)
    assert x.shape == (4410, 1) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(pcm.astype(np.float32).mean(1) / 32768))
    y = prepare_signal(pcm, 44100, 8000, 1)
    assert torch.equal(y[0, :, 0], resample(x[:, 0].contiguous(), 44100, 8000))
