"""The anomaly head's memory of normal hidden states: the nearest-state distance, the bank and its scale, the
score it adds, its config and its round trip through a bundle."""

from __future__ import annotations

import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from ssm_signal.models.heads import AnomalyHead, memory_bank, nearest_state


def test_nearest_state_is_the_smallest_squared_distance(seed):
    h, bank = torch.randn(3, 7, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    brute = ((h[..., None, :] - bank) ** 2).sum(-1).amin(-1)
    assert torch.allclose(nearest_state(h, bank), brute, rtol=1e-10, atol=1e-12)
    assert float(nearest_state(bank[4], bank)) == pytest.approx(0.0, abs=1e-12)  # a kept state is at distance 0


def test_memory_bank_draws_or_repeats_and_scales_by_the_nearest_other(seed):
    states = torch.randn(30, 4, dtype=torch.float64)
    bank, scale = memory_bank(states, 10)
    assert bank.shape == (10, 4) and len({tuple(r.tolist()) for r in bank}) == 10  # 10 distinct states drawn
    assert all(any(torch.equal(r, s) for s in states) for r in bank)
    d2 = ((bank[:, None] - bank[None]) ** 2).sum(-1) + torch.diag(torch.full((10,), float("inf"), dtype=bank.dtype))
    assert float(scale) == pytest.approx(float(d2.amin(1).mean()), rel=1e-9)
    assert torch.equal(memory_bank(states, 10)[0], bank)  # the same draw for the same seed
    few, few_scale = memory_bank(states[:3], 8)  # fewer states than rows: all of them, in turn
    assert torch.equal(few, states[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])])
    d3 = ((states[:3, None] - states[None, :3]) ** 2).sum(-1) + torch.diag(torch.full((3,), float("inf"),
                                                                                       dtype=states.dtype))
    assert float(few_scale) == pytest.approx(float(d3.amin(1).mean()), rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        memory_bank(states[:1], 8)


@torch.no_grad()
def test_the_score_adds_the_scaled_distance_from_the_first_scored_frame(seed):
    """Two heads with the same forecaster, one with a memory: their scores differ by novelty / scale exactly,
    and both are 0 before the first scored frame."""
    torch.manual_seed(seed)
    plain, mem = AnomalyHead(6, 2, (1, 2)), AnomalyHead(6, 2, (1, 2), memory=5)
    mem.forecast.load_state_dict(plain.forecast.state_dict())
    bank = torch.randn(5, 6)
    mem.set_memory(bank)
    feats, hidden = torch.randn(2, 9, 2), torch.randn(2, 9, 6)
    hidden[0, 4] = bank[3]  # a frame at a kept state: nothing added
    a, _, _ = plain.apply(feats, hidden, (plain.init_state(2),))
    b, _, _ = mem.apply(feats, hidden, (mem.init_state(2),))
    added = (b - a)[..., 0]
    assert torch.equal(added[:, :mem.first_scored], torch.zeros(2, mem.first_scored))
    expect = nearest_state(hidden, bank)[:, mem.first_scored:] / mem.bank_scale
    assert torch.allclose(added[:, mem.first_scored:], expect, rtol=1e-5, atol=1e-5)
    assert float(added[0, 4]) == pytest.approx(0.0, abs=1e-5) and float(added.max()) > 0.1


@pytest.mark.parametrize("bad", [-1, 1.5, True, 70000])
def test_config_rejects_a_bad_memory(bad):
    with pytest.raises(ValueError, match="head.memory must be an integer"):
        HeadConfig("anomaly", memory=bad)


def test_config_keeps_memory_to_anomaly_heads():
    with pytest.raises(ValueError, match="head.memory applies to anomaly heads only"):
        HeadConfig("classify", num_classes=2, memory=8)


def test_bundle_round_trip_keeps_the_bank(tmp_path, seed):
    cfg = ModelConfig(FrontendConfig(kind="sensor", in_channels=2, decimate=2),
                      BackboneConfig(d_model=8, layers=["mamba"]), HeadConfig("anomaly", memory=6))
    m = SignalModel(cfg).eval()
    m.head.set_memory(torch.randn(4, 8))  # fewer than 6: repeated
    save_bundle(m, tmp_path / "b", name="mem")
    b = load_bundle(tmp_path / "b")
    assert torch.equal(b.model.head.bank, m.head.bank) and torch.equal(b.model.head.bank_scale, m.head.bank_scale)
    x = torch.randn(1, 40, 2)
    assert torch.equal(b.model(x)[0], m(x)[0])
