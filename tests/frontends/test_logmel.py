"""LogMel: causal framing, chunk invariance, step == forward, the plain-math spec, normalisation."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torchaudio

from ssm_signal.frontends import LogMel, LogMelState, PcenMelState
from ssm_signal.frontends.logmel import PCEN_ALPHA, PCEN_DELTA, PCEN_FLOOR, PCEN_ROOT
from tests.helpers import assert_chunks_equal_whole, chunk_sizes, random_splits
from tests.helpers import max_abs_diff as max_diff

HOP, N_FFT, N_MELS = 160, 400, 40


def waveform(batch: int, n: int, dtype=torch.float32) -> torch.Tensor:
    """Noise plus a tone per stream, (B, n, 1): a broadband signal with some structure."""
    t = torch.arange(n, dtype=torch.float64) / 16000
    freqs = torch.linspace(300.0, 3000.0, batch, dtype=torch.float64)[:, None]
    x = 0.3 * torch.sin(2 * math.pi * freqs * t) + 0.1 * torch.randn(batch, n, dtype=torch.float64)
    return x.to(dtype).unsqueeze(-1)


def direct_logmel_frame(signal: torch.Tensor, k: int, fe: LogMel) -> torch.Tensor:
    """The spec for frame k of a 1-D float64 signal, by plain math: no unfold, no torch.fft."""
    N, H = fe.n_fft, fe.hop_length
    frame = torch.tensor([float(signal[i]) if i >= 0 else 0.0 for i in range((k + 1) * H - N, (k + 1) * H)],
                         dtype=torch.float64)
    n = torch.arange(N, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / N)  # periodic Hann
    f = torch.arange(N // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * f * n / N
    xw = window * frame
    power = (torch.cos(angle) @ xw) ** 2 + (torch.sin(angle) @ xw) ** 2  # |DFT|^2 for bins 0..N/2
    fbank = torchaudio.functional.melscale_fbanks(N // 2 + 1, fe.f_min, fe.f_max, fe.n_mels, fe.sample_rate)
    return torch.log(power @ fbank.double() + fe.eps)


def test_defaults_and_widths():
    fe = LogMel()
    assert (fe.sample_rate, fe.n_fft, fe.hop_length, fe.n_mels) == (16000, N_FFT, HOP, N_MELS)
    assert fe.d_model == 1 and fe.d_output == N_MELS and fe.samples_per_frame == HOP
    # fitted statistics travel with the model; window and filterbank follow from the config
    assert set(fe.state_dict()) == {"mean", "std"}
    assert not list(fe.parameters())


@pytest.mark.parametrize("n", [1, 159, 160, 161, 399, 400, 401, 1000])
def test_whole_signal_frame_count(n):
    fe = LogMel()
    y, s = fe(waveform(2, n))
    assert y.shape == (2, n // HOP, N_MELS) == (2, fe.frames_for(n), N_MELS)
    assert s.phase.tolist() == [n % HOP] * 2


def test_zero_frame_chunks():
    fe = LogMel()
    x = waveform(3, 200)
    y, s = fe(x[:, :100])
    assert y.shape == (3, 0, N_MELS) and s.phase.tolist() == [100] * 3
    y, s = fe(x[:, 100:159], s)
    assert y.shape == (3, 0, N_MELS)
    y, s = fe(x[:, 159:200], s)  # completes frame 0 at sample 159
    assert y.shape == (3, 1, N_MELS) and s.phase.tolist() == [40] * 3
    assert fe.frames_for(59, phase=100) == 0 and fe.frames_for(41, phase=159) == 1


@pytest.mark.parametrize("chunk", [1, 37, 160, 1600, "random"])
def test_chunk_invariance_float32(chunk, seed):
    n = 900 if chunk == 1 else 4000
    y, _ = assert_chunks_equal_whole(LogMel(), waveform(2, n), chunk_sizes(n, chunk, seed), atol=1e-5)
    assert y.shape == (2, n // HOP, N_MELS)


def test_chunk_invariance_float64(seed):
    sizes = random_splits(3000, 500, random.Random(seed))
    y, s = assert_chunks_equal_whole(LogMel().double(), waveform(2, 3000, torch.float64), sizes, atol=1e-10)
    assert y.dtype == torch.float64 and s.history.dtype == torch.float64


def test_step_equals_forward():
    fe = LogMel()
    x = waveform(2, 10 * HOP)
    y_ref, s_ref = fe(x)
    s, ys = None, []
    for k in range(10):
        y_t, s = fe.step(x[:, k * HOP:(k + 1) * HOP, 0], s)
        ys.append(y_t)
    assert max_diff(torch.stack(ys, 1), y_ref) <= 1e-6
    assert torch.equal(s.history, s_ref.history) and s.phase.tolist() == [0, 0]
    # forward may continue from a stepped state, and step from a hop-aligned forward state
    _, s1 = fe(x[:, :5 * HOP])
    y2, _ = fe.step(x[:, 5 * HOP:6 * HOP, 0], s1)
    assert max_diff(y2, y_ref[:, 5]) <= 1e-6


def test_matches_plain_math_spec():
    fe = LogMel().double()
    x = waveform(1, 1200, torch.float64)
    y, _ = fe(x)
    for k in [0, 1, 2, 6]:  # frames 0 and 1 reach back before sample 0 (zero padding)
        assert max_diff(y[0, k], direct_logmel_frame(x[0, :, 0], k, fe)) <= 1e-9, k


def test_matches_torchaudio_on_left_padded_signal():
    # causal frame k == torchaudio's uncentred frame k of the signal with n_fft - hop zeros in front
    fe = LogMel()
    x = waveform(2, 2000)
    ref = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=N_FFT, hop_length=HOP, f_min=20.0, f_max=7600.0, n_mels=N_MELS,
        center=False, power=2.0, window_fn=torch.hann_window,
    )(torch.nn.functional.pad(x[..., 0], (N_FFT - HOP, 0)))
    y, _ = fe(x)
    assert max_diff(y, torch.log(ref.transpose(1, 2) + 1e-6)) <= 1e-4


def test_causal():
    fe = LogMel()
    x = waveform(1, 1600)
    x2 = x.clone()
    x2[:, 800:] = torch.randn_like(x2[:, 800:])
    y, y2 = fe(x)[0], fe(x2)[0]
    assert torch.equal(y[:, :5], y2[:, :5])  # frames 0..4 end at or before sample 800
    assert not torch.allclose(y[:, 5], y2[:, 5])


def test_fit_normalization():
    fe = LogMel()
    utts = waveform(4, 4000) * torch.tensor([0.5, 1.0, 2.0, 4.0])[:, None, None]
    fe.fit_normalization(utts)
    y, _ = fe(utts)
    flat = y.reshape(-1, N_MELS).double()
    assert flat.mean(0).abs().max() < 1e-4
    assert (flat.std(0, unbiased=False) - 1).abs().max() < 1e-4


def test_fit_normalization_streams_over_batches():
    # a DataLoader-like iterable of (x, label) tuples, raw (B, L) audio, and precomputed frames all agree
    utts = waveform(6, 2000, torch.float64)
    whole = LogMel().fit_normalization(utts)
    loader = [(utts[i:i + 2, :, 0], torch.zeros(2)) for i in range(0, 6, 2)]
    streamed = LogMel().fit_normalization(loader)
    frames, _ = LogMel().double()(utts)
    from_feats = LogMel().fit_normalization(frames.split(1, dim=1), features=True)
    for fe in (streamed, from_feats):
        assert max_diff(fe.mean, whole.mean) <= 1e-5 and max_diff(fe.std, whole.std) <= 1e-5
    assert max_diff(whole.mean, frames.reshape(-1, N_MELS).mean(0)) <= 1e-5
    with pytest.raises(ValueError, match="no feature frames"):
        LogMel().fit_normalization(waveform(2, 100))  # shorter than a hop: no frames


def test_float64_module():
    fe = LogMel().double()
    assert fe.fbank.dtype == fe.window.dtype == fe.mean.dtype == torch.float64
    y, s = fe(waveform(2, 500, torch.float64), fe.init_state(2, dtype=torch.float64))
    assert y.dtype == torch.float64 and s.history.dtype == torch.float64 and s.phase.dtype == torch.int64


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(2, 100), "shape"),
        (torch.zeros(2, 100, 2), "width"),
        (torch.zeros(2, 100, 1, dtype=torch.int16), "floating"),
        (torch.full((2, 100, 1), float("nan")), "NaN"),
        (torch.full((2, 100, 1), float("inf")), "Inf"),
    ],
)
def test_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        LogMel()(x)


def test_bad_step_and_state():
    fe = LogMel()
    with pytest.raises(ValueError, match="shape"):
        fe.step(torch.zeros(2, 1))  # one sample: step takes a whole hop
    _, s = fe(waveform(2, 100))
    with pytest.raises(ValueError, match="phase 0"):
        fe.step(torch.zeros(2, HOP), s)
    mixed = LogMelState(history=s.history, phase=torch.tensor([0, 100]))
    with pytest.raises(ValueError, match="same phase"):
        fe(waveform(2, 10), mixed)
    with pytest.raises(ValueError, match="shape"):
        fe(waveform(3, 10), s)  # batch mismatch
    for kwargs in [dict(hop_length=0), dict(n_mels=0), dict(f_max=9000.0), dict(f_min=8000.0, f_max=7000.0),
                   dict(eps=0.0)]:
        with pytest.raises(ValueError):
            LogMel(**kwargs)


def test_state_operations():
    fe = LogMel()
    x = waveform(3, 1000)
    y_ref, s = fe(x[:, :700])
    # select/cat: running streams apart and joining them changes nothing
    parts = [fe(x[i:i + 1, 700:], s.select(i))[0] for i in range(3)]
    y_all, _ = fe(x[:, 700:], LogMelState.cat([s.select(0), s.select([1, 2])]))
    assert max_diff(torch.cat(parts), y_all) <= 1e-6
    # state_dict round-trip and dtype moves (the phase counter stays int64)
    s2 = LogMelState.from_state_dict(s.state_dict())
    assert torch.equal(s2.history, s.history) and torch.equal(s2.phase, s.phase)
    assert s.to(dtype=torch.float64).phase.dtype == torch.int64
    # reset of every stream (keeps the batch at one phase) == a fresh state
    r = s.reset(torch.tensor([True, True, True]))
    assert torch.equal(fe(x[:, 700:], r)[0], fe(x[:, 700:])[0])
    assert r.phase.tolist() == [0, 0, 0] and not r.history.any()
    # resetting some streams mid-hop leaves the batch at mixed phases, which is refused, not misaligned
    with pytest.raises(ValueError, match="same phase"):
        fe(x[:, 700:], s.reset(torch.tensor([True, False, False])))


# -- PCEN -------------------------------------------------------------------------------------------------

def direct_pcen(energy: torch.Tensor, s: float) -> torch.Tensor:
    """The spec of PCEN over mel energies (F, n_mels) of one stream from a fresh state, frame by frame."""
    e = energy + PCEN_FLOOR
    m, out = e[0], []
    for k in range(e.shape[0]):
        m = (1 - s) * m + s * e[k]
        out.append((e[k] / (1e-6 + m) ** PCEN_ALPHA + PCEN_DELTA) ** PCEN_ROOT - PCEN_DELTA**PCEN_ROOT)
    return torch.stack(out)


def test_pcen_matches_recurrence_spec():
    fe = LogMel(pcen=True).double()
    x = waveform(1, 150 * HOP, torch.float64)  # 150 frames: three blocks of the parallel smoother
    y, s = fe(x)
    energy = torch.stack([direct_logmel_frame(x[0, :, 0], k, fe) for k in range(150)]).exp() - fe.eps
    assert max_diff(y[0], direct_pcen(energy, fe.pcen_s)) <= 1e-9
    assert isinstance(s, PcenMelState) and s.primed.tolist() == [1.0]


def test_pcen_chunks_steps_and_reset_equal_whole(seed):
    fe = LogMel(pcen=True).double()
    x = waveform(2, 200 * HOP + 77, torch.float64)
    x[:, :3000] = 0  # digital silence first: the smoother starts at the floor, the onset stays bounded
    sizes = random_splits(x.shape[1], 3000, random.Random(seed))
    y, s = assert_chunks_equal_whole(fe, x, sizes, atol=1e-10, state_atol=1e-10)
    assert y.abs().max() < (1 / fe.pcen_s + PCEN_DELTA) ** PCEN_ROOT  # M_k holds s * E_k, so E_k / M_k <= 1 / s
    st, ys = None, []
    for k in range(200):
        y_t, st = fe.step(x[:, k * HOP:(k + 1) * HOP, 0], st)
        ys.append(y_t)
    assert max_diff(torch.stack(ys, 1), y) <= 1e-10
    # a reset stream forgets its smoother and starts again as a fresh one
    y_fresh, _ = fe(x[:1, 5000:])
    y_reset, _ = fe(x[:, 5000:], st.reset(torch.tensor([True, False])))
    assert max_diff(y_reset[:1, :, :], y_fresh) <= 1e-10


def test_pcen_forgets_gain_log_mel_does_not():
    """A steady signal 20 dB louder: log-mel moves by log(100) in every band, PCEN (alpha 0.98) hardly at all."""
    x = waveform(1, 100 * HOP)
    for pcen, lo, hi in ((False, 4.0, 5.0), (True, 0.0, 0.15)):
        fe = LogMel(pcen=pcen)
        shift = (fe(10 * x)[0] - fe(x)[0])[:, 50:].abs().mean()  # after the smoother settled (0.5 s)
        assert lo <= shift <= hi, (pcen, shift)


def test_cepstra_keeps_the_envelope_in_k_dct_coefficients(seed):
    """cepstra=K: each frame is the plain log-mel projected onto the first K vectors of torchaudio's MFCC DCT
    (float32, hence the tolerance), so it has exactly K free coefficients; K = n_mels changes nothing."""
    x = waveform(2, 60 * HOP + 31, torch.float64)
    plain, _ = LogMel().double()(x)
    dct = torchaudio.functional.create_dct(N_MELS, N_MELS, norm="ortho").double()  # (n_mels, q)
    for K in (1, 13, N_MELS):
        y, _ = LogMel(cepstra=K).double()(x)
        coeffs = plain @ dct  # the frames' cepstra
        assert max_diff(y, coeffs[..., :K] @ dct[:, :K].T) <= 1e-4, K
        assert max_diff(y @ dct[:, K:], torch.zeros(())) <= 1e-4, K  # nothing left above K (frames ~10)
    assert max_diff(LogMel(cepstra=N_MELS).double()(x)[0], plain) <= 1e-9


def test_cepstra_chunks_and_steps_equal_whole(seed):
    fe = LogMel(cepstra=13).double()
    x = waveform(2, 50 * HOP + 77, torch.float64)
    y, _ = assert_chunks_equal_whole(fe, x, random_splits(x.shape[1], 3000, random.Random(seed)), atol=1e-10)
    st, ys = None, []
    for k in range(50):
        y_t, st = fe.step(x[:, k * HOP:(k + 1) * HOP, 0], st)
        ys.append(y_t)
    assert max_diff(torch.stack(ys, 1), y) <= 1e-10
    assert fe.float().lifter.dtype == torch.float32 and max_diff(fe.float().double().lifter, fe.lifter) == 0


@pytest.mark.parametrize("kwargs", [{"cepstra": 41}, {"cepstra": -1}, {"cepstra": 13, "pcen": True}])
def test_cepstra_bad_values_refused(kwargs):
    with pytest.raises(ValueError, match="cepstra"):
        LogMel(**kwargs)
