"""SensorFrontend: block decimation, chunk invariance, step == forward, normalisation."""

from __future__ import annotations

import random

import pytest
import torch

from ssm_signal.frontends import SensorFrontend, SensorFrontendState
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
