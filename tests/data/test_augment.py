"""Augmentations: SNR of mixed noise measured numerically, gain, shift and speed on tones, and determinism
from a seed (WaveAugment, DataLoader workers)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from ssm_signal.data.augment import (
    AddNoise,
    Gain,
    Speed,
    TimeShift,
    WaveAugment,
    apply_gain,
    change_speed,
    crop_or_tile,
    measure_snr,
    mix_at_snr,
    power,
    time_shift,
    warp_bands,
)
from ssm_signal.data.skips import DataError, SkipLog
from tests.helpers import best_lag, peak_hz

SR = 16000


def tone(freq: float, n: int, rate: int = SR, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(n) / rate)


# -- noise at an SNR -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 30.0])
def test_mix_at_snr_hits_the_requested_snr(snr):
    g = torch.Generator().manual_seed(0)
    signal = tone(440, 8000) + 0.01 * torch.randn(8000, generator=g)
    noise = 3.0 * torch.randn(8000, generator=g)
    mixed = mix_at_snr(signal, noise, snr)
    added = mixed - signal
    assert float(measure_snr(signal, added)) == pytest.approx(snr, abs=1e-3)
    # what was added is the noise, scaled (correlation 1)
    assert float(torch.corrcoef(torch.stack([added, noise]))[0, 1]) > 0.9999


def test_mix_at_snr_per_row_snr_and_broadcast_noise():
    g = torch.Generator().manual_seed(1)
    signal = torch.randn(3, 4000, generator=g) * torch.tensor([[0.1], [1.0], [5.0]])
    noise = torch.randn(4000, generator=g)  # one clip for every row
    snr = torch.tensor([0.0, 10.0, 20.0])
    mixed = mix_at_snr(signal, noise, snr)
    assert mixed.shape == (3, 4000) and mixed.dtype == signal.dtype
    np.testing.assert_allclose(measure_snr(signal, mixed - signal).numpy(), snr.numpy(), atol=1e-3)


def test_mix_at_snr_silent_inputs_stay_finite():
    x = torch.randn(1000)
    assert torch.equal(mix_at_snr(x, torch.zeros(1000), 10.0), x)  # silent noise adds nothing
    assert torch.equal(mix_at_snr(torch.zeros(1000), x, 10.0), torch.zeros(1000))  # no SNR on silence


def test_power_and_measure_snr_definitions():
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(power(x).numpy(), [1.0, 1.0])
    assert float(measure_snr(torch.ones(10), 0.1 * torch.ones(10))) == pytest.approx(20.0, abs=1e-5)


def test_add_noise_mixes_a_crop_at_an_snr_in_range():
    noises = [torch.randn(20000, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    x = tone(300, 4000)
    for lo, hi in ((10.0, 10.0), (5.0, 30.0)):
        t = AddNoise(noises, snr_db=(lo, hi))
        g = torch.Generator().manual_seed(2)
        for _ in range(20):
            y = t(x, g)
            snr = float(measure_snr(x, y - x))
            assert lo - 1e-3 <= snr <= hi + 1e-3
    # the added noise is a contiguous crop of one of the clips, scaled
    y = AddNoise(noises, snr_db=(0.0, 0.0))(x, torch.Generator().manual_seed(3))
    added = (y - x).double()
    best = 0.0
    for n in noises:
        n = n.double()
        k = best_lag(n, added)
        window = n[k : k + 4000]
        best = max(best, float(window @ added / (window.norm() * added.norm())))
    assert best > 0.9999


def test_add_noise_loops_short_clips_and_respects_p():
    short = torch.randn(300, generator=torch.Generator().manual_seed(0))
    x = tone(300, 1000)
    y = AddNoise([short], snr_db=(0.0, 0.0))(x, torch.Generator().manual_seed(0))
    added = y - x
    # period 300: the tiled crop repeats itself
    torch.testing.assert_close(added[:300], added[300:600], rtol=0, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    assert all(torch.equal(AddNoise([short], p=0.0)(x, g), x) for _ in range(5))


def test_add_noise_refuses_no_clips():
    with pytest.raises(ValueError, match="non-empty noise"):
        AddNoise([torch.zeros(0)])


def test_add_noise_from_folder_counts_unreadable_clips(tmp_path):
    folder = tmp_path / "_background_noise_"
    folder.mkdir()
    sf.write(folder / "white.wav", 0.1 * np.random.default_rng(0).standard_normal(4000).astype(np.float32), 8000)
    sf.write(folder / "pink.flac", 0.1 * np.random.default_rng(1).standard_normal(16000).astype(np.float32), SR)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnothing here")
    (folder / "README.md").write_text("not audio, not an audio suffix: ignored\n")
    skips = SkipLog()
    t = AddNoise.from_folder(folder, SR, skips=skips, snr_db=(3.0, 3.0))
    assert skips.counts() == {"unreadable": 1} and "broken.wav" in skips.items[0][0]
    # the 8 kHz clip was resampled: 0.5 s of it at 16 kHz
    assert sorted(n.shape[0] for n in t.noises) == [8000, 16000]
    assert t.snr_db == (3.0, 3.0)


def test_add_noise_from_folder_without_readable_clips_is_an_error(tmp_path):
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "bad.wav").write_bytes(b"")
    with pytest.raises(DataError, match="no readable noise clips.*1 items skipped"):
        AddNoise.from_folder(tmp_path / "n")
    with pytest.raises(DataError, match="no readable noise clips"):
        AddNoise.from_folder(tmp_path / "absent")


def test_crop_or_tile():
    n = torch.arange(10.0)
    assert torch.equal(crop_or_tile(n, 4, 3), n[3:7])
    assert torch.equal(crop_or_tile(n, 25, 8), torch.cat([n[8:], n, n, n[:3]]))
    with pytest.raises(ValueError, match="empty"):
        crop_or_tile(torch.zeros(0), 4, 0)


# -- gain, shift, speed, pitch ----------------------------------------------------------------------------------


def test_apply_gain_in_db():
    x = torch.randn(2, 100)
    torch.testing.assert_close(apply_gain(x, 20.0), 10 * x)
    torch.testing.assert_close(apply_gain(x, torch.tensor([-6.0, 0.0])), x * torch.tensor([[10 ** -0.3], [1.0]]))
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        y = Gain(db=(-6.0, 6.0))(x[0], g)
        ratio = float(y.norm() / x[0].norm())
        assert 10 ** (-6 / 20) - 1e-6 <= ratio <= 10 ** (6 / 20) + 1e-6


def test_time_shift_zeros_and_roll():
    x = torch.arange(1.0, 7.0)
    assert time_shift(x, 2).tolist() == [0, 0, 1, 2, 3, 4]
    assert time_shift(x, -2).tolist() == [3, 4, 5, 6, 0, 0]
    assert time_shift(x, 0).tolist() == x.tolist()
    assert time_shift(x, 9).tolist() == [0] * 6
    assert time_shift(x, 2, fill="roll").tolist() == [5, 6, 1, 2, 3, 4]
    assert time_shift(torch.ones(2, 3, 5), 1).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="fill"):
        time_shift(x, 1, fill="reflect")


def test_random_time_shift_stays_within_bounds():
    x = torch.zeros(200)
    x[100] = 1.0
    g = torch.Generator().manual_seed(0)
    positions = {int(TimeShift(max_shift=10)(x, g).argmax()) for _ in range(200)}
    assert positions <= set(range(90, 111)) and len(positions) > 10
    assert torch.equal(TimeShift(max_shift=0)(x, g), x)


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.25])
def test_change_speed_scales_length_and_pitch(factor):
    x = tone(500, 8000)
    y = change_speed(x, factor)
    assert y.shape == (math.ceil(8000 / factor),)
    assert peak_hz(y) == pytest.approx(500 * factor, abs=4)


def test_change_speed_quantises_and_refuses_bad_factors():
    x = torch.randn(1000)
    assert change_speed(x, 1.004) is x  # rounds to 1.00
    with pytest.raises(ValueError, match="> 0"):
        change_speed(x, 0.0)


def test_speed_transform_keeps_length_when_asked():
    x = tone(500, 4000)
    g = torch.Generator().manual_seed(0)
    assert Speed((0.85, 0.95))(x, g).shape == (4000,)
    assert Speed((0.85, 0.95), keep_length=False)(x, g).shape[0] > 4000


# -- WaveAugment: composition and determinism ----------------------------------------------------------------------


def make_augment(seed: int) -> WaveAugment:
    noise = [torch.randn(10000, generator=torch.Generator().manual_seed(7))]
    return WaveAugment([AddNoise(noise, snr_db=(5, 20)), Gain(), TimeShift(400), Speed(p=0.5)], seed=seed)


def test_wave_augment_same_seed_same_draws():
    x = tone(440, 4000)
    a, b, c = make_augment(0), make_augment(0), make_augment(1)
    ya = [a(x) for _ in range(4)]
    yb = [b(x) for _ in range(4)]
    assert all(torch.equal(u, v) for u, v in zip(ya, yb, strict=True))
    assert not torch.equal(ya[0], ya[1])  # successive calls draw anew
    assert not torch.equal(c(x), ya[0])
    a.reset()
    assert torch.equal(a(x), ya[0])
    a.reset(seed=1)
    assert torch.equal(a(x), make_augment(1)(x))
    assert "AddNoise, Gain, TimeShift, Speed" in repr(a)


def test_wave_augment_batches_draw_per_row():
    x = tone(440, 4000).expand(3, 4000).clone()
    aug = make_augment(0)
    y = aug(x)
    assert y.shape == (3, 4000)
    assert not torch.equal(y[0], y[1]) and not torch.equal(y[1], y[2])
    # the batch equals the same rows one at a time, in order
    ref = make_augment(0)
    assert all(torch.equal(y[i], ref(x[i])) for i in range(3))
    with pytest.raises(ValueError, match=r"\(L,\) or \(B, L\)"):
        aug(torch.zeros(1, 2, 3))


def test_wave_augment_applies_transforms_in_order():
    calls = []

    def record(name):
        def t(wave, g):
            calls.append(name)
            return wave + 1

        return t

    out = WaveAugment([record("a"), record("b")], seed=0)(torch.zeros(5))
    assert calls == ["a", "b"] and torch.equal(out, torch.full((5,), 2.0))


class _Same(Dataset):
    """Every item is the same clip, so any difference between items comes from the augmentation."""

    def __init__(self, aug: WaveAugment, n: int = 8):
        self.aug, self.n, self.x = aug, n, tone(440, 2000)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.aug(self.x)


def _epoch(seed: int, loader_seed: int) -> torch.Tensor:
    loader = DataLoader(_Same(make_augment(seed)), batch_size=2, num_workers=2,
                        generator=torch.Generator().manual_seed(loader_seed))
    return torch.cat(list(loader))


def test_wave_augment_in_workers_differs_per_worker_and_replays_for_a_seeded_loader():
    a = _epoch(0, 123)
    # worker 0 serves batches 0, 2, ..., worker 1 batches 1, 3, ...: without the per-worker reseed both
    # workers would replay the same draws and items 0 and 2 would be equal
    assert not torch.equal(a[0], a[2])
    assert len({tuple(r.tolist()) for r in a}) == len(a)
    assert torch.equal(a, _epoch(0, 123))  # same seeds: same epoch
    assert not torch.equal(a, _epoch(0, 124))  # another loader seed: other draws


def test_for_dataset_recipe_reads_the_background_folder(tmp_path):
    folder = tmp_path / "_background_noise_"
    folder.mkdir()
    sf.write(folder / "n.wav", 0.2 * np.random.default_rng(0).standard_normal(SR).astype(np.float32), SR)
    aug = WaveAugment.for_dataset(tmp_path, seed=4)
    assert isinstance(aug.transforms[0], AddNoise)
    x = tone(440, SR)
    y = aug(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    assert torch.equal(WaveAugment.for_dataset(tmp_path, seed=4)(x), y)


def test_for_dataset_without_noise_logs_and_goes_on(tmp_path: Path, caplog):
    with caplog.at_level("WARNING", logger="ssm_signal.data"):
        aug = WaveAugment.for_dataset(tmp_path)
    assert not any(isinstance(t, AddNoise) for t in aug.transforms)
    assert any("without noise" in r.getMessage() for r in caplog.records)


def band_of_peak(feats: torch.Tensor) -> list[int]:
    return feats.mean(1).argmax(-1).tolist()


def test_warp_bands_moves_a_tone_by_its_factor():
    """A tone's log-mel peak, warped by alpha, lands in the band of alpha times its frequency; alpha 1 is
    the identity; the timing is untouched."""
    from ssm_signal.frontends import LogMel

    fe = LogMel(n_mels=40)
    t = torch.arange(16000) / 16000
    x = torch.stack([torch.sin(2 * math.pi * 1000 * t), torch.sin(2 * math.pi * 1200 * t)])[:, :, None]
    feats, _ = fe(x)  # (2, 100, 40): a 1 kHz and a 1.2 kHz tone
    assert torch.equal(warp_bands(feats, fe.centres_hz, torch.ones(2)), feats)
    warped = warp_bands(feats[:1], fe.centres_hz, torch.tensor([1.2]))
    assert band_of_peak(warped) == band_of_peak(feats[1:])  # 1 kHz moved up by 1.2 sits where 1.2 kHz is
    assert band_of_peak(warp_bands(feats[1:], fe.centres_hz, torch.tensor([1 / 1.2]))) == band_of_peak(feats[:1])
    assert band_of_peak(feats[:1]) != band_of_peak(feats[1:])
    assert warped.shape == feats[:1].shape
    assert torch.equal(warp_bands(feats[:, :1], fe.centres_hz, torch.tensor([1.2, 1.0]))[:, 0],
                       warp_bands(feats, fe.centres_hz, torch.tensor([1.2, 1.0]))[:, 0])
