"""The numpy streaming resampler (the torch-free runtime's) equals the torch Resampler it twins, chunk
for chunk, and the float64 spec; the two share the design and the block bookkeeping."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ssm_signal.frontends.resample import Resampler, resample_reference
from ssm_signal.polyphase import PolyphaseResampler


def run_numpy(r: PolyphaseResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    state, out, t = r.init_state(x.shape[0]), [], 0
    for n in sizes:
        y, state = r(x[:, t:t + n], state)
        out.append(y)
        t += n
    out.append(r.flush(state)[0])
    return np.concatenate(out, 1)


def run_torch(r: Resampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    state, out, t = r.init_state(x.shape[0]), [], 0
    with torch.no_grad():
        for n in sizes:
            y, state = r._forward(torch.from_numpy(x[:, t:t + n]), state)
            out.append(y.numpy())
            t += n
        out.append(r.flush(state)[0].numpy())
    return np.concatenate(out, 1)


@pytest.mark.parametrize("rate", [44100, 48000, 8000, 22050, 16000, 47999])
def test_numpy_twin_equals_torch_resampler(rate, seed):
    """Random chunks (single samples included), stereo, flushed; 47999 Hz takes the gather path."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, rate // 3 + 11, 2)).astype(np.float32)
    sizes, r = [], random.Random(seed)
    while sum(sizes) < x.shape[1]:
        sizes.append(r.choice([1, 7, 441, r.randint(1, 4000)]))
    sizes[-1] -= sum(sizes) - x.shape[1]
    twin = PolyphaseResampler(rate, 16000, 2)
    assert twin.use_bank == (rate != 47999)
    got = run_numpy(twin, x, [s for s in sizes if s > 0])
    ref = run_torch(Resampler(rate, 16000, 2), x, [x.shape[1]])
    assert got.shape == ref.shape == (2, -(-x.shape[1] * 16000 // rate), 2)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    if rate != 47999:  # the spec zero-stuffs by L = 16000 there: gigabytes
        spec = resample_reference(x[0, :, 1].astype(np.float64), rate, 16000)
        assert np.abs(got[0, :, 1] - spec).max() <= 1e-5 * np.abs(spec).max()


def test_state_and_bad_channels():
    r = PolyphaseResampler(48000, 16000, 1)
    s = r.init_state(1)
    assert s.history.shape == (1, 1, r.history_len) and s.phase.tolist() == [0] and s.primed.tolist() == [0]
    y, s = r(np.ones((1, 4801, 1), np.float32), s)
    assert y.shape[1] == -(-4801 // 3) - r.delay and int(s.phase[0]) == 4801 % 3 and int(s.primed[0]) == r.delay
    assert np.allclose(y[0, r.delay:, 0], 1.0, atol=1e-4)  # a constant stays constant once the filter is full
    with pytest.raises(ValueError, match="channels"):
        PolyphaseResampler(48000, 16000, 0)
