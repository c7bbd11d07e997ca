"""Channel augmentations (ssm_signal.data.channel): band limits pass nothing outside their band, colouring
has the gain it says, reverberation decays at its RT60 and lengthens a sound's decay, mu-law's round-trip
error is bounded, and the composed recipe is deterministic for a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssm_signal.data.augment import AddNoise, Gain, Speed, TimeShift, WaveAugment
from ssm_signal.data.channel import (
    BandLimit,
    ChannelConfig,
    Colour,
    MuLaw,
    Reverb,
    band_limit,
    colour,
    exponential_ir,
    gsm,
    mu_law,
    reverberate,
    telephone,
)
from ssm_signal.data.speech_commands import BACKGROUND_DIR

SR = 16000


def tone(freq: float, n: int = SR, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(n, dtype=torch.float64) / SR).float()


def band_energy(x: torch.Tensor, lo: float, hi: float) -> float:
    """Share of the clip's energy between lo and hi Hz."""
    p = torch.fft.rfft(x.double()).abs().pow(2)
    f = torch.fft.rfftfreq(x.shape[-1], 1 / SR, dtype=torch.float64)
    return float(p[(f >= lo) & (f <= hi)].sum() / p.sum())


def noise(n: int = SR, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cutoff", [3400.0, 5000.0, 7500.0])
def test_low_pass_leaves_no_energy_above_the_cutoff(cutoff):
    y = band_limit(noise(), SR, 0.0, cutoff)
    assert band_energy(y, cutoff, SR / 2) < 1e-12
    assert band_energy(y, 0, cutoff - 100) > 0.98  # the band itself passes (less the 100 Hz edge taper)
    x = tone(1000)
    assert torch.allclose(band_limit(x, SR, 0.0, cutoff), x, atol=1e-4)


@pytest.mark.parametrize("codec", [None, "mu-law", "gsm"])
def test_telephone_line_carries_its_band_only(codec):
    """300-3400 Hz at 8 kHz: above 4 kHz only the resampler's stop-band leak is left (< -50 dB; the codecs
    add their noise up to 4 kHz, as on a real line);
    the length and the timing stay (no delay: the band itself lines up with the input at lag 0)."""
    x = noise()
    y = telephone(x, SR, codec)
    assert y.shape == x.shape
    assert band_energy(y, 4200, SR / 2) < 1e-5  # an 8 kHz line carries nothing above 4 kHz
    assert band_energy(y, 400, 3300) > 0.95
    band = band_limit(x, SR, 300.0, 3400.0)
    lags = [float(torch.dot(band[100:-100], y[100 + d:len(y) - 100 + d])) for d in range(-20, 21)]
    assert int(np.argmax(lags)) == 20


def test_gsm_round_trip_keeps_a_speech_band_signal():
    """GSM 06.10 is a speech codec: a chirp inside the telephone band comes back close, white noise (no
    speech at all) much less so; the output has the input's length."""
    t = torch.arange(8000, dtype=torch.float64) / 8000
    chirp = (0.3 * torch.sin(2 * math.pi * (300 + 1500 * t) * t) * torch.hann_window(8000, dtype=torch.float64)).float()
    y = gsm(chirp)
    assert y.shape == chirp.shape
    assert float(np.corrcoef(chirp.numpy(), y.numpy())[0, 1]) > 0.9
    w = 0.1 * torch.randn(8000, generator=torch.Generator().manual_seed(0))
    assert float(np.corrcoef(w.numpy(), gsm(w).numpy())[0, 1]) < 0.8


def test_band_limit_draws_the_telephone_codec_by_its_shares():
    """BandLimit(telephone=1, gsm=a, mu_law=b): each clip is the telephone line with the codec drawn."""
    x, g = noise(), torch.Generator().manual_seed(4)
    t = BandLimit(telephone=1.0, gsm=0.5, mu_law=0.3)
    outs = {c: telephone(x, SR, c) for c in (None, "mu-law", "gsm")}
    seen = []
    for _ in range(60):
        y = t(x, g)
        seen.append(next(c for c, o in outs.items() if torch.equal(y, o)))
    assert 20 <= seen.count("gsm") <= 40 and 8 <= seen.count("mu-law") <= 28 and 3 <= seen.count(None) <= 20


def test_band_limit_draws_its_cutoff_in_range():
    g = torch.Generator().manual_seed(3)
    t = BandLimit(cutoff_hz=(3400.0, 4000.0), telephone=0.0)
    for _ in range(5):
        assert band_energy(t(noise(), g), 4000, SR / 2) < 1e-12


@pytest.mark.parametrize("freq,db", [(1000.0, 6.0), (2500.0, -6.0)])
def test_colour_has_the_gain_it_says(freq, db):
    y = colour(tone(freq), SR, 200, 0.0, 4000, 0.0, freq, db, 0.5)
    ratio = float(y[2000:-2000].abs().max() / tone(freq)[2000:-2000].abs().max())
    assert 20 * math.log10(ratio) == pytest.approx(db, abs=0.1)
    shelf = colour(tone(100.0), SR, 400, -6.0, 4000, 0.0, 1000, 0.0, 0.5)  # two octaves below the shelf
    assert 20 * math.log10(float(shelf[2000:-2000].abs().max() / 0.5)) == pytest.approx(-6.0, abs=0.3)


@pytest.mark.parametrize("rt60", [0.2, 0.6])
def test_impulse_response_decays_at_its_rt60(rt60):
    ir = exponential_ir(torch.randn(int(1.5 * rt60 * SR), generator=torch.Generator().manual_seed(0)), SR, rt60, 0.0)
    assert ir[0] == 1.0
    tail = ir[1:].pow(2)
    assert float(tail.sum()) == pytest.approx(1.0, rel=1e-6)  # DRR 0 dB: tail energy = direct energy
    # Schroeder backward integration; the -5..-25 dB slope extrapolated to -60 dB (T20)
    edc = 10 * torch.log10(tail.flip(0).cumsum(0).flip(0) / tail.sum())
    t5, t25 = int((edc > -5).sum()), int((edc > -25).sum())
    assert 3 * (t25 - t5) / SR == pytest.approx(rt60, rel=0.1)


def test_reverb_lengthens_the_decay():
    burst = torch.zeros(SR)
    burst[2000:4000] = noise(2000)
    g = torch.Generator().manual_seed(4)
    wet = Reverb(rt60=(0.5, 0.5), drr_db=(0.0, 0.0))(burst, g)
    assert wet.shape == burst.shape
    assert float(burst[4000:8000].abs().max()) == 0.0
    after = wet[4100:8000].pow(2).mean() / wet[2000:4000].pow(2).mean()
    assert float(after) > 1e-3  # the room rings on after the sound stops
    assert float(wet[:2000].abs().max()) < 1e-6  # and nothing comes before it (causal, direct path at 0)
    dry = reverberate(burst, torch.ones(1, dtype=torch.float64))
    assert torch.allclose(dry, burst, atol=1e-6)


def test_mu_law_round_trip_error_is_bounded():
    x = torch.linspace(-1, 1, 20001)
    err = (mu_law(x) - x).abs()
    assert bool((err <= 0.03 * x.abs() + 1e-4).all())  # 8-bit companding: about 3% relative, finer near 0
    assert float(err.max()) > 1e-3  # it is lossy
    assert float(mu_law(torch.tensor([3.0]))) == pytest.approx(1.0, abs=0.03)  # clipped to full scale
    assert torch.equal(MuLaw(p=0.0)(x, torch.Generator()), x)


def test_channel_recipe_is_composed_in_chain_order_and_deterministic(tmp_path):
    import soundfile as sf

    (tmp_path / BACKGROUND_DIR).mkdir()
    sf.write(tmp_path / BACKGROUND_DIR / "n.wav", noise().numpy(), SR)
    aug = WaveAugment.for_dataset(tmp_path, SR, seed=5, channel=ChannelConfig(gain=0.3))
    names = [type(t).__name__ for t in aug.transforms]
    assert names == ["Reverb", "AddNoise", "Gain", "TimeShift", "Speed", "Colour", "Gain", "BandLimit", "MuLaw"]
    plain = WaveAugment.for_dataset(tmp_path, SR, seed=5)
    assert [type(t) for t in plain.transforms] == [AddNoise, Gain, TimeShift, Speed]  # default recipe unchanged
    x = torch.stack([tone(300 + 100 * i) for i in range(4)])
    a = aug(x)
    aug.reset()
    assert torch.equal(aug(x), a)
    other = WaveAugment.for_dataset(tmp_path, SR, seed=6, channel=ChannelConfig(gain=0.3))
    assert not torch.equal(other(x), a)
    assert np.isfinite(a.numpy()).all() and a.shape == x.shape


def test_every_transform_is_off_at_p0_and_seeded():
    x = tone(440)
    for t in (BandLimit(p=0.0), Colour(p=0.0), Reverb(p=0.0), MuLaw(p=0.0)):
        assert torch.equal(t(x, torch.Generator().manual_seed(0)), x)
    for t in (BandLimit(), Colour(), Reverb()):
        one, two = (t(x, torch.Generator().manual_seed(9)) for _ in range(2))
        assert torch.equal(one, two) and not torch.equal(one, x)


def test_bad_channel_configs():
    with pytest.raises(ValueError, match=r"reverb must be >= 0 and <= 1, got 1.5"):
        ChannelConfig(reverb=1.5)
    with pytest.raises(ValueError, match="rt60"):
        ChannelConfig(rt60=(0.0, 0.5))
