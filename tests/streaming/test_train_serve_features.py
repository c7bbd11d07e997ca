"""Training and serving preprocess a file identically: one resampler, the same log-mel features.

The training loaders read a file with ``read_audio(path, model_rate)`` (the whole file through the
streaming resampler's filter) and run the model's frontend over it; a StreamingSession gets the same
file in chunks at its own rate and resamples causally. Both must give the same frames.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ssm_signal.data.audio_io import read_audio, read_audio_with_rate, write_audio
from ssm_signal.frontends.resample import Resampler
from ssm_signal.streaming import StreamConfig, StreamingSession
from tests.helpers import random_splits
from tests.streaming.conftest import speechlike


def record_features(monkeypatch, frontend) -> list[torch.Tensor]:
    """Every frame the frontend emits, through its step or its chunked forward: list of (1, F, n_mels)."""
    feats: list[torch.Tensor] = []
    step, forward = frontend._step, frontend._forward

    def rec_step(*args, **kwargs):
        y, s = step(*args, **kwargs)
        feats.append(y[:, None].detach().clone())
        return y, s

    def rec_forward(*args, **kwargs):
        y, s = forward(*args, **kwargs)
        feats.append(y.detach().clone())
        return y, s

    monkeypatch.setattr(frontend, "_step", rec_step)
    monkeypatch.setattr(frontend, "_forward", rec_forward)
    return feats


@pytest.mark.parametrize("rate", [44100, 8000])
def test_file_gives_the_same_logmel_in_training_and_streaming(rate, kws_bundle, tmp_path, monkeypatch, seed):
    path = write_audio(tmp_path / f"clip_{rate}.wav", speechlike(1.3, rate, seed=rate), rate)
    model = kws_bundle.model

    # training path: the loaders' reader at the model rate, the frontend over the whole clip
    wave = read_audio(path, model.config.frontend.sample_rate)  # (L,)
    with torch.no_grad():
        train_feats, _ = model.frontend(wave[None, :, None])  # (1, F, n_mels)

    # streaming path: the file's samples at its own rate, in random chunks (single samples too)
    samples, file_rate = read_audio_with_rate(path)
    assert file_rate == rate
    session = StreamingSession(kws_bundle, config=StreamConfig(compile=False))
    feats = record_features(monkeypatch, model.frontend)
    sizes = [1, 2, 3] + random_splits(len(samples) - 6, rate // 10, random.Random(seed))
    t = 0
    for n in sizes:
        session.push(samples[t:t + n].numpy(), rate)
        t += n
    session.flush()
    stream_feats = torch.cat(feats, 1)

    assert stream_feats.shape == train_feats.shape and train_feats.shape[1] == len(wave) // 160
    assert float((stream_feats - train_feats).abs().max()) < 1e-4  # normalised log-mel units: float32 rounding


@pytest.mark.parametrize("rate", [44100, 8000, 48000])
def test_whole_file_equals_stream_resampled_in_chunks(rate, tmp_path, seed):
    """``read_audio``'s resampling (whole file) equals the streaming resampler folded over chunks and flushed."""
    path = write_audio(tmp_path / "x.wav", speechlike(0.7, rate, seed=1), rate)
    whole = read_audio(path, 16000)
    samples, _ = read_audio_with_rate(path)
    r = Resampler(rate, 16000)
    state, outs, t = r.init_state(1), [], 0
    for n in random_splits(len(samples), 3000, random.Random(seed)):
        y, state = r(samples[None, t:t + n, None], state)
        outs.append(y)
        t += n
    outs.append(r.flush(state)[0])
    streamed = torch.cat(outs, 1)[0, :, 0]
    assert streamed.shape == whole.shape == (-(-len(samples) * 16000 // rate),)
    np.testing.assert_allclose(streamed.numpy(), whole.numpy(), atol=1e-6)
