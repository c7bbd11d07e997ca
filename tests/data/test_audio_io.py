"""audio_io on generated files: reading, downmix, resampling, writing, fix_length, screen_audio's skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssm_signal.data.audio_io import (
    audio_info,
    fix_length,
    read_audio,
    read_audio_with_rate,
    resample,
    screen_audio,
    write_audio,
)
from ssm_signal.data.skips import DataError, SkipLog
from tests.helpers import peak_hz


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """One good file and one of each kind of bad input; keys name the expected skip category."""
    good = tmp_path / "good.wav"
    sf.write(good, tone(440, 0.1, 16000), 16000, subtype="PCM_16")
    files = {"ok": good}
    files["empty"] = tmp_path / "no_frames.wav"  # a valid header with 0 frames
    sf.write(files["empty"], np.zeros(0, np.float32), 16000)
    files["empty_bytes"] = tmp_path / "zero_bytes.wav"  # 0 bytes on disk
    files["empty_bytes"].write_bytes(b"")
    files["unreadable"] = tmp_path / "corrupt.wav"  # a RIFF/WAVE preamble, then junk
    files["unreadable"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    files["not_audio"] = tmp_path / "notes.wav"
    files["not_audio"].write_text("this is a text file with a .wav name\n")
    files["nan"] = tmp_path / "nan.wav"
    x = tone(440, 0.1, 16000)
    x[100] = np.nan
    sf.write(files["nan"], x, 16000, subtype="FLOAT")
    files["missing"] = tmp_path / "missing.wav"
    return files


# -- reading -----------------------------------------------------------------------------------------------


def test_read_mono_keeps_samples_and_rate(tmp_path):
    x = tone(440, 0.25, 16000)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    wave, sr = read_audio_with_rate(tmp_path / "a.wav")
    assert sr == 16000 and wave.dtype == torch.float32 and wave.shape == (4000,)
    np.testing.assert_array_equal(wave.numpy(), x)
    info = audio_info(tmp_path / "a.wav")
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 4000)
    assert info.duration == pytest.approx(0.25)


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    left, right = tone(300, 0.1, 16000, 0.6), tone(1000, 0.1, 16000, 0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert audio_info(tmp_path / "st.wav").channels == 2
    wave = read_audio(tmp_path / "st.wav", 16000)
    assert wave.shape == (1600,)
    np.testing.assert_allclose(wave.numpy(), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_keeping_pitch_and_duration(tmp_path, rate):
    sf.write(tmp_path / "r.wav", tone(1000, 0.5, rate), rate, subtype="FLOAT")
    wave = read_audio(tmp_path / "r.wav", 16000)
    assert wave.shape == (8000,)
    # a 1 kHz tone stays at 1 kHz (2 Hz bins on 0.5 s) and keeps its amplitude away from the edges
    assert abs(peak_hz(wave, 16000) - 1000) <= 2
    mid = wave[1000:-1000]
    assert float(mid.abs().max()) == pytest.approx(0.5, abs=0.02)
    # sample_rate=None keeps the file's own rate
    assert read_audio(tmp_path / "r.wav", None).shape == (int(0.5 * rate),)


def test_resample_length_is_ceil_of_the_ratio():
    x = torch.randn(3, 16001)
    assert resample(x, 44100, 16000).shape == (3, int(np.ceil(16001 * 16000 / 44100)))
    assert resample(x, 16000, 16000) is x


def test_flac_and_ogg_roundtrip(tmp_path):
    x = tone(500, 0.2, 16000)
    for suffix, tol in ((".flac", 1 / 32768 + 1e-7), (".ogg", 0.05)):
        p = write_audio(tmp_path / f"a{suffix}", x, 16000)
        y = read_audio(p, 16000)
        assert y.shape == (3200,)
        assert float((y - torch.from_numpy(x)).abs().max()) <= tol, suffix
    assert audio_info(tmp_path / "a.ogg").subtype == "VORBIS"


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, words", [
    ("empty", "empty"),
    ("empty_bytes", "empty"),
    ("unreadable", "unreadable"),
    ("not_audio", "unreadable"),
    ("missing", "no such file"),
])
def test_bad_files_raise_a_data_error_naming_the_file(bad_files, kind, words):
    for fn in (audio_info, read_audio_with_rate, read_audio):
        with pytest.raises(DataError) as e:
            fn(bad_files[kind])
        msg = str(e.value)
        assert str(bad_files[kind]) in msg and words in msg, msg


def test_nan_samples_are_refused_on_decode(bad_files):
    audio_info(bad_files["nan"])  # the header is fine ...
    with pytest.raises(DataError, match="NaN or Inf"):  # ... the samples are not
        read_audio(bad_files["nan"])


def test_screen_audio_header_check_counts_each_reject(bad_files):
    paths = list(bad_files.values())
    skips = SkipLog()
    keep = screen_audio(paths, "header", skips)
    # the header check cannot see NaN samples: nan.wav passes it
    assert keep == [k in ("ok", "nan") for k in bad_files]
    assert skips.counts() == {"empty": 2, "unreadable": 2, "missing": 1}
    assert len(skips) == 5 == len(paths) - sum(keep)
    assert {s for s, _ in skips.items} == {str(p) for p, k in zip(paths, keep, strict=True) if not k}


def test_screen_audio_full_check_also_catches_nan(bad_files, caplog):
    skips = SkipLog()
    with caplog.at_level("WARNING", logger="ssm_signal.data"):
        keep = screen_audio(list(bad_files.values()), "full", skips)
    assert keep == [k == "ok" for k in bad_files]
    assert skips.counts() == {"empty": 2, "unreadable": 2, "missing": 1, "NaN": 1}
    assert "6 items skipped" in skips.summary()
    # every skip is logged, not only counted
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 6


def test_screen_audio_none_trusts_the_listing_and_rejects_unknown_checks(bad_files):
    skips = SkipLog()
    assert screen_audio(list(bad_files.values()), "none", skips) == [True] * len(bad_files)
    assert len(skips) == 0
    with pytest.raises(ValueError, match="check must be one of"):
        screen_audio([], "deep", skips)


# -- writing ---------------------------------------------------------------------------------------------------


def test_write_audio_channels_first_clips_and_creates_folders(tmp_path):
    x = np.stack([tone(200, 0.1, 8000, 1.5), -tone(200, 0.1, 8000, 0.25)])  # (C=2, L), left overdriven
    p = write_audio(tmp_path / "deep" / "er" / "st.wav", torch.from_numpy(x), 8000)
    data, sr = sf.read(p, dtype="float32", always_2d=True)
    assert sr == 8000 and data.shape == (800, 2)
    assert data[:, 0].max() <= 1.0 and data[:, 0].max() >= 1.0 - 1 / 32768  # clipped, not wrapped around
    np.testing.assert_allclose(data[:, 1], x[1], atol=1 / 32768)


def test_write_audio_float_subtype_is_exact_and_unclipped(tmp_path):
    x = np.float32([0.0, 2.0, -3.0, 0.5])
    p = write_audio(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(sf.read(p, dtype="float32")[0], x)


@pytest.mark.parametrize("bad, match", [
    (np.zeros(0, np.float32), "shape"),
    (np.zeros((1, 2, 3), np.float32), "shape"),
    (np.float32([0.0, np.inf]), "NaN or Inf"),
    (np.float32([np.nan, 0.0]), "NaN or Inf"),
])
def test_write_audio_refuses_bad_waveforms(tmp_path, bad, match):
    with pytest.raises(DataError, match=match):
        write_audio(tmp_path / "x.wav", bad, 16000)
    assert not (tmp_path / "x.wav").exists()


# -- fix_length --------------------------------------------------------------------------------------------------


def test_fix_length_crops_and_pads():
    x = torch.arange(1, 11, dtype=torch.float32)  # 10 samples, none zero
    assert torch.equal(fix_length(x, 4), x[:4])
    assert torch.equal(fix_length(x, 4, mode="center"), x[3:7])
    assert torch.equal(fix_length(x, 4, offset=5), x[5:9])
    assert torch.equal(fix_length(x, 4, offset=99), x[6:])  # clamped to the last full window
    assert torch.equal(fix_length(x, 10), x)
    y = fix_length(x, 14)
    assert torch.equal(y[:10], x) and not y[10:].any()
    y = fix_length(x, 14, mode="center")
    assert torch.equal(y[2:12], x) and not y[:2].any() and not y[12:].any()
    y = fix_length(x, 14, offset=3)
    assert torch.equal(y[3:13], x) and not y[:3].any() and not y[13:].any()


def test_fix_length_works_on_the_last_axis_of_batches():
    x = torch.randn(2, 3, 50)
    assert fix_length(x, 20, mode="center").shape == (2, 3, 20)
    assert torch.equal(fix_length(x, 20, mode="center"), x[..., 15:35])
    assert fix_length(x, 64).shape == (2, 3, 64)
    for n in (20, 50):  # the already-right length too
        with pytest.raises(ValueError, match="mode"):
            fix_length(x, n, mode="end")
