"""The causal polyphase resampler: spec equality, chunk invariance, delay, frequency response."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from ssm_signal.frontends.resample import Resampler, ResamplerState, design_filter, resample, resample_reference
from ssm_signal.models.config import FrontendConfig
from tests.helpers import random_splits

PAIRS = [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000), (16000, 8000), (11025, 16000),
         (32000, 16000), (12000, 16000)]


def tone_amplitude(y: np.ndarray, freq: float, rate: int) -> float:
    """Amplitude of the component at ``freq`` (Hann-windowed single-bin DFT)."""
    n = len(y)
    w = np.hanning(n)
    return float(2 * abs(np.sum(y * w * np.exp(-2j * np.pi * freq * np.arange(n) / rate))) / w.sum())


def stream(r: Resampler, x: torch.Tensor, sizes: list[int], dtype=torch.float32) -> torch.Tensor:
    """Fold the resampler over chunks of ``x`` (B, n, C) and flush."""
    state, outs, t = r.init_state(x.shape[0], dtype=dtype), [], 0
    for n in sizes:
        y, state = r(x[:, t:t + n], state)
        outs.append(y)
        t += n
    tail, _ = r.flush(state)
    return torch.cat(outs + [tail], 1)


@pytest.mark.parametrize("rates", PAIRS + [(16000, 16000)])
def test_design(rates):
    d = design_filter(*rates)
    g = math.gcd(*rates)
    assert (d.up, d.down) == (rates[1] // g, rates[0] // g)
    # each polyphase branch passes DC exactly; the delay is a whole number of output samples
    assert np.allclose(d.taps.sum(1), 1.0, atol=1e-12)
    if rates[0] != rates[1]:
        assert d.stopband_hz == min(rates) / 2 and d.passband_hz == pytest.approx(0.95 * min(rates) / 2)
        assert 1 <= d.delay <= 210 and d.delay / rates[1] < 0.013  # a few milliseconds at 16 kHz
    else:
        assert d.delay == 0 and d.taps.shape == (1, 1)


@pytest.mark.parametrize("rates", PAIRS)
def test_stopband_attenuation_and_passband_ripple(rates):
    """The filter as applied: >= 79.5 dB down from the stopband edge (the lower Nyquist frequency) up
    to F / 2, flat within 1.1e-4 up to the passband edge; for a 16 kHz model that edge is the
    log-mel's top frequency (7.6 kHz), so no mel band is filtered."""
    d = design_filter(*rates)
    h = d.impulse_response()
    fs_up = d.up * rates[0]
    nfft = 1 << max(20, (8 * len(h) - 1).bit_length())  # < 7 Hz bins at F = 7.056 MHz
    H = np.abs(np.fft.rfft(h, nfft))
    f = np.arange(len(H)) * fs_up / nfft
    assert 20 * np.log10(H[f >= d.stopband_hz].max()) < -79.5
    assert np.abs(H[f <= d.passband_hz] - 1).max() < 1.1e-4
    if rates[1] == 16000 and rates[0] > 16000:
        assert d.passband_hz == FrontendConfig().f_max == 7600


@pytest.mark.parametrize("rates", PAIRS + [(47999, 16000)])
def test_bank_and_gather_equal_the_spec(rates):
    """Both fast paths (float64) equal the zero-stuff/filter/decimate spec, whole signals of odd lengths."""
    rng = np.random.default_rng(sum(rates))
    for n in ((1, 2, 3, 997) if rates[0] != 47999 else (1, 150)):  # 47999: 16000 phases, a slow spec
        x = rng.standard_normal(n)
        ref = resample_reference(x, *rates)
        assert ref.shape == (-(-n * rates[1] // rates[0]),)
        methods = ("bank", "gather") if rates[0] != 47999 else ("gather",)
        for method in methods:
            y = resample(torch.from_numpy(x), *rates, method=method).numpy()
            assert y.shape == ref.shape
            assert np.abs(y - ref).max() < 1e-12, (method, n)


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000), (11025, 16000)])
@pytest.mark.parametrize("method", ["bank", "gather"])
def test_chunk_invariance(rates, method, seed):
    """Any split into chunks, single samples included, gives the whole signal's output."""
    r = Resampler(*rates, channels=2, method=method)
    x = torch.randn(3, 2500, 2, dtype=torch.float64)
    whole = resample(x.transpose(1, 2), *rates, method=method).transpose(1, 2)
    rng = random.Random(seed)
    for sizes in ([1] * 150 + [2350], random_splits(2500, 700, rng)):
        y = stream(r, x, sizes, dtype=torch.float64)
        assert y.shape == whole.shape
        assert float((y - whole).abs().max()) < 1e-12
    # float32: the same up to the rounding of a differently blocked accumulation
    whole32 = resample(x.float().transpose(1, 2), *rates, method=method).transpose(1, 2)
    y32 = stream(r, x.float(), random_splits(2500, 300, rng))
    assert float((y32 - whole32).abs().max()) <= 1e-6 * float(whole32.abs().max())


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000)])
def test_emission_delay(rates):
    """After n inputs the stream has emitted max(0, ceil(n L / M) - D) samples: D output samples behind."""
    r = Resampler(*rates)
    L, M, D = r.up, r.down, r.delay
    state, total = r.init_state(1), 0
    x = torch.randn(1, 1200, 1)
    for n in range(1, 1201):
        y, state = r(x[:, n - 1:n], state)
        total += y.shape[1]
        assert total == max(0, -(-n * L // M) - D)
    assert r.delay_seconds == D / rates[1]


@pytest.mark.parametrize("rates", [(48000, 16000), (8000, 16000), (16000, 8000)])
def test_output_is_time_aligned(rates):
    """An impulse at input time t comes out peaking at output time t (the delay is compensated)."""
    a, b = rates
    x = np.zeros(3 * a // 100)
    m = a // 100  # input sample at 10 ms
    x[m] = 1.0
    y = resample(torch.from_numpy(x), a, b).numpy()
    assert int(np.argmax(np.abs(y))) == b // 100


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (22050, 16000), (32000, 16000)])
def test_frequency_response_downsampling(rates):
    a, b = rates
    t = np.arange(a) / a
    for f in (100.0, 1000.0, 5000.0, 0.95 * b / 2):  # passband: amplitude kept within 0.01 dB
        y = resample(torch.from_numpy(np.sin(2 * np.pi * f * t)), a, b).numpy()[400:-400]
        assert tone_amplitude(y, f, b) == pytest.approx(1.0, abs=1.2e-3), f
    for f in (b / 2 + 500, 12000.0, a / 2 - 1000):  # would alias to b - f: attenuated >= 75 dB
        y = resample(torch.from_numpy(np.sin(2 * np.pi * f * t)), a, b).numpy()[400:-400]
        alias = abs(b - f) if f < b else abs(f - b * round(f / b))
        assert 20 * np.log10(tone_amplitude(y, alias, b) + 1e-12) < -75, f


def test_frequency_response_upsampling():
    a, b = 8000, 16000
    t = np.arange(a) / a
    for f in (300.0, 1000.0, 3500.0):
        y = resample(torch.from_numpy(np.sin(2 * np.pi * f * t)), a, b).numpy()[400:-400]
        assert tone_amplitude(y, f, b) == pytest.approx(1.0, abs=1.2e-3)
        assert 20 * np.log10(tone_amplitude(y, a - f, b) + 1e-12) < -75  # the spectral image


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000), (22050, 16000)])
def test_matches_torchaudio_on_band_limited_signals(rates):
    """Same signal as torchaudio's (near-ideal) resampler: band-limited input, away from the edges."""
    a, b = rates
    rng = np.random.default_rng(0)
    t = np.arange(a) / a
    x = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(50, 0.8 * min(a, b) / 2) * t + rng.uniform(0, 6))
            for _ in range(20))
    ours = resample(torch.from_numpy(x), a, b).numpy()
    theirs = AF.resample(torch.from_numpy(x), a, b, lowpass_filter_width=64, rolloff=0.95,
                         resampling_method="sinc_interp_kaiser").numpy()
    assert ours.shape == theirs.shape
    edge = b // 40
    assert np.abs(ours - theirs)[edge:-edge].max() < 1e-4 * np.abs(theirs).max()


def test_identity_and_batching():
    x = torch.randn(2, 100, 3)
    r = Resampler(16000, 16000, channels=3)
    y, s = r(x)
    assert torch.equal(y, x) and r.delay == 0 and r.flush(s)[0].shape == (2, 0, 3)
    assert torch.equal(resample(x, 16000, 16000), x)
    # channels and batch rows are independent signals
    r = Resampler(48000, 16000, channels=3)
    y = stream(r, x, [100])
    for c in range(3):
        assert torch.allclose(y[1, :, c], resample(x[1, :, c], 48000, 16000), atol=1e-6)


def test_state_round_trip_continues_identically():
    r = Resampler(44100, 16000)
    x = torch.randn(1, 3000, 1)
    y1, s = r(x[:, :1234])
    s2 = ResamplerState.from_state_dict({k: v.clone() for k, v in s.state_dict().items()})
    a, _ = r(x[:, 1234:], s)
    b, _ = r(x[:, 1234:], s2)
    assert torch.equal(a, b)


def test_errors():
    for bad in (0, -8000, 1.5, True, 2_000_000, "16000"):
        with pytest.raises(ValueError, match="in_rate"):
            Resampler(bad, 16000)
    with pytest.raises(ValueError, match="rolloff"):
        Resampler(48000, 16000, rolloff=1.0)
    r = Resampler(48000, 16000)
    _, s1 = r(torch.randn(1, 5, 1))
    _, s2 = r(torch.randn(1, 6, 1))
    mixed = ResamplerState.cat([s1, s2])
    with pytest.raises(ValueError, match="same phase"):
        r(torch.randn(2, 10, 1), mixed)
    with pytest.raises(ValueError, match="state"):  # a state of another rate pair
        r(torch.randn(1, 10, 1), Resampler(44100, 16000).init_state(1))
    with pytest.raises(ValueError, match="NaN"):
        r(torch.full((1, 10, 1), float("nan")))
    with pytest.raises(ValueError, match="floating"):
        resample(torch.zeros(10, dtype=torch.int16), 48000, 16000)
    with pytest.raises(NotImplementedError, match="forward"):
        r.step(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="larger common divisor"):
        design_filter(999_983, 16000)
