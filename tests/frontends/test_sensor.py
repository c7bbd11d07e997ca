"""SensorFrontend: block decimation, chunk invariance, step == forward, normalisation."""

from __future__ import annotations

import random

import pytest
import torch

from ssm_signal.frontends import SensorFrontend, SensorFrontendState, SpreadState
from tests.helpers import assert_chunks_equal_whole, chunk_sizes, random_splits
from tests.helpers import max_abs_diff as max_diff

C = 3


def stream(batch: int, n: int, dtype=torch.float32) -> torch.Tensor:
    """(B, n, C) with per-channel offsets and scales, so standardisation has work to do."""
    x = torch.randn(batch, n, C, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1], dtype=torch.float64)
    return (x + torch.tensor([10.0, -3.0, 0.5], dtype=torch.float64)).to(dtype)


def test_widths_and_buffers():
    fe = SensorFrontend(C, decimate=4)
    assert fe.d_model == fe.d_output == C and fe.samples_per_frame == 4
    assert set(fe.state_dict()) == {"mean", "std"} and not list(fe.parameters())


@pytest.mark.parametrize("decimate", [1, 3, 4])
def test_block_means_and_count(decimate):
    fe = SensorFrontend(C, decimate=decimate)
    x = stream(2, 50)
    y, s = fe(x)
    n_out = 50 // decimate
    assert y.shape == (2, n_out, C) == (2, fe.frames_for(50), C)
    ref = x[:, :n_out * decimate].reshape(2, n_out, decimate, C).double().mean(2)
    assert max_diff(y, ref) <= 1e-5
    assert s.phase.tolist() == [50 % decimate] * 2
    assert max_diff(s.partial_sum, x[:, n_out * decimate:].sum(1)) <= 1e-5


def test_zero_output_chunks():
    fe = SensorFrontend(C, decimate=5)
    x = stream(2, 7)
    y, s = fe(x[:, :3])
    assert y.shape == (2, 0, C) and s.phase.tolist() == [3, 3]
    y, s = fe(x[:, 3:7], s)
    assert y.shape == (2, 1, C) and s.phase.tolist() == [2, 2]
    assert max_diff(y[:, 0], x[:, :5].mean(1)) <= 1e-5
    assert fe.frames_for(1, phase=3) == 0 and fe.frames_for(2, phase=3) == 1


@pytest.mark.parametrize("decimate", [1, 4])
@pytest.mark.parametrize("chunk", [1, 37, 160, 1600, "random"])
def test_chunk_invariance_float32(decimate, chunk, seed):
    fe = SensorFrontend(C, decimate=decimate)
    fe.mean.copy_(torch.tensor([10.0, -3.0, 0.5]))
    fe.std.copy_(torch.tensor([1.0, 5.0, 0.1]))
    n = 400 if chunk == 1 else 3000
    y, _ = assert_chunks_equal_whole(fe, stream(2, n), chunk_sizes(n, chunk, seed), atol=1e-5, state_atol=1e-4)
    assert y.shape == (2, n // decimate, C)


def test_chunk_invariance_float64(seed):
    fe = SensorFrontend(C, decimate=3).double()
    sizes = random_splits(1000, 200, random.Random(seed))
    y, s = assert_chunks_equal_whole(fe, stream(2, 1000, torch.float64), sizes, atol=1e-12, state_atol=1e-10)
    assert y.dtype == s.partial_sum.dtype == torch.float64 and fe.mean.dtype == torch.float64


@pytest.mark.parametrize("decimate", [1, 4])
def test_step_equals_forward(decimate):
    fe = SensorFrontend(C, decimate=decimate)
    fe.mean.fill_(1.0)
    x = stream(2, 8 * decimate)
    y_ref, _ = fe(x)
    s, ys = None, []
    for k in range(8):
        block = x[:, k * decimate:(k + 1) * decimate]
        y_t, s = fe.step(block[:, 0] if decimate == 1 else block, s)
        ys.append(y_t)
    assert max_diff(torch.stack(ys, 1), y_ref) <= 1e-6
    assert s.phase.tolist() == [0, 0]


def test_fit_normalization():
    x = stream(4, 2000)
    for decimate in (1, 4):
        fe = SensorFrontend(C, decimate=decimate).fit_normalization(x)
        y = fe(x)[0].reshape(-1, C).double()
        assert y.mean(0).abs().max() < 1e-3
        assert (y.std(0, unbiased=False) - 1).abs().max() < 1e-3
    # batches of a DataLoader-like iterable, (L, C) items and precomputed values all agree
    whole = SensorFrontend(C).fit_normalization(x)
    loader = SensorFrontend(C).fit_normalization([(x[i], i) for i in range(4)])
    feats = SensorFrontend(C).fit_normalization(x.split(500, dim=1), features=True)
    for fe in (loader, feats):
        assert max_diff(fe.mean, whole.mean) <= 1e-5 and max_diff(fe.std, whole.std) <= 1e-5
    # a dead channel gets a floored std instead of a division by zero
    dead = x.clone()
    dead[..., 1] = 2.0
    fe = SensorFrontend(C).fit_normalization(dead)
    assert bool(torch.isfinite(fe(dead)[0]).all()) and float(fe.std[1]) == pytest.approx(1e-5)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(2, 10), "shape"),
        (torch.zeros(2, 10, C + 1), "width"),
        (torch.zeros(2, 10, C, dtype=torch.int32), "floating"),
        (torch.full((2, 10, C), float("nan")), "NaN"),
    ],
)
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        SensorFrontend(C, decimate=2)(x)


def test_bad_step_state_and_args():
    fe = SensorFrontend(C, decimate=4)
    with pytest.raises(ValueError, match="one block"):
        fe.step(torch.zeros(2, 3, C))
    with pytest.raises(ValueError, match="shape"):
        fe.step(torch.zeros(2, C))
    _, s = fe(stream(2, 6))
    with pytest.raises(ValueError, match="phase 0"):
        fe.step(torch.zeros(2, 4, C), s)
    with pytest.raises(ValueError, match="same phase"):
        fe(stream(2, 6), SensorFrontendState(s.partial_sum, torch.tensor([1, 2])))
    with pytest.raises(ValueError, match="outside"):
        fe(stream(2, 6), SensorFrontendState(s.partial_sum, torch.tensor([4, 4])))
    for args in [(0,), (C, 0), (C, 1.5), (C, True)]:
        with pytest.raises(ValueError):
            SensorFrontend(*args)


def test_state_operations():
    fe = SensorFrontend(C, decimate=3)
    x = stream(3, 40)
    _, s = fe(x[:, :20])
    parts = [fe(x[i:i + 1, 20:], s.select(i))[0] for i in range(3)]
    y_all, _ = fe(x[:, 20:], SensorFrontendState.cat([s.select([0, 1]), s.select(2)]))
    assert max_diff(torch.cat(parts), y_all) <= 1e-6
    s2 = SensorFrontendState.from_state_dict(s.state_dict())
    assert torch.equal(s2.partial_sum, s.partial_sum) and torch.equal(s2.phase, s.phase)
    assert s.to(dtype=torch.float64).phase.dtype == torch.int64
    r = s.reset()
    assert torch.equal(fe(x[:, 20:], r)[0], fe(x[:, 20:])[0])


def spread_reference(x: torch.Tensor, D: int) -> torch.Tensor:
    """The spread frames written out: per block, the means, then the mean |x_i - x_{i-1}| within it."""
    n = x.shape[1] // D
    blocks = x[:, :n * D].double().reshape(x.shape[0], n, D, -1)
    return torch.cat([blocks.mean(2), blocks.diff(dim=2).abs().mean(2)], dim=-1)


@pytest.mark.parametrize("chunk", [1, 7, 160, "random"])
def test_spread_frames_and_chunk_invariance(chunk, seed):
    fe = SensorFrontend(C, decimate=4, spread=True)
    assert fe.d_model == C and fe.d_output == 2 * C and fe.mean.shape == (2 * C,)
    x = stream(2, 403)
    y, s = assert_chunks_equal_whole(fe, x, chunk_sizes(403, chunk, seed), atol=1e-5, state_atol=1e-4)
    assert y.shape == (2, 100, 2 * C) and max_diff(y, spread_reference(x, 4)) <= 1e-5
    # the unfinished block of 3 samples: its sum, its two steps, its last sample
    assert max_diff(s.partial_steps, x[:, 400:].diff(dim=1).abs().sum(1)) <= 1e-5
    assert torch.equal(s.last, x[:, -1]) and s.phase.tolist() == [3, 3]


def test_spread_sees_noise_and_a_frozen_channel():
    x = stream(1, 400)
    frozen, noisy = x.clone(), x.clone()
    frozen[:, 200:, 0] = frozen[:, 199, 0]
    noisy[:, 200:240, 1] += 20 * torch.randn(40, generator=torch.Generator().manual_seed(0))
    fe = SensorFrontend(C, decimate=8, spread=True).fit_normalization(x)
    base, fz, nz = (fe(v)[0][0] for v in (x, frozen, noisy))
    assert float(fz[25:, C].max()) < float(base[25:, C].min())  # no step at all where channel 0 froze
    # far larger steps in the burst (frames 25-29): its typical frame above every normal one (not each of its
    # frames: 8 draws of noise can happen to lie close together, and did in about one stream in six)
    assert float(nz[25:30, C + 1].median()) > float(base[:, C + 1].max())


def test_spread_step_equals_forward_and_state_operations():
    fe = SensorFrontend(C, decimate=4, spread=True)
    fe.mean.fill_(1.0)
    x = stream(3, 40)
    y_ref, s_ref = fe(x)
    s, ys = None, []
    for k in range(10):
        y_t, s = fe.step(x[:, 4 * k:4 * k + 4], s)
        ys.append(y_t)
    assert max_diff(torch.stack(ys, 1), y_ref) <= 1e-6 and torch.equal(s.last, s_ref.last)
    _, s = fe(x[:, :22])
    assert isinstance(s, SpreadState) and SpreadState.from_state_dict(s.state_dict()).partial_steps.shape == (3, C)
    parts = [fe(x[i:i + 1, 22:], s.select(i))[0] for i in range(3)]
    assert max_diff(torch.cat(parts), fe(x[:, 22:], SpreadState.cat([s.select([0, 1]), s.select(2)]))[0]) <= 1e-6
    assert not isinstance(SensorFrontend(C, decimate=4).init_state(1), SpreadState)  # snapshots as before


def test_spread_needs_blocks():
    with pytest.raises(ValueError, match="decimate >= 2"):
        SensorFrontend(C, decimate=1, spread=True)
