"""Reading one input file: 16-bit PCM at the model's rate as it is, anything else decoded.

Two readers, tried in this order by the batch path's workers (:class:`pipelines.score.batching.ScoreDataset`):
``ssm_signal.data.wav_pcm16.read_pcm16_wav`` (the fast path: a 16-bit WAV at the model's rate and
channel count, one read and a header walk) and soundfile, which takes every other container and
format: :func:`read_pcm16` where the file is 16-bit PCM at the model's rate (int16 samples, nothing
to resample), else :func:`read_signal` (float32, then the bundle's ``prepare_signal``). Sensor
tables (.npy, .csv, .parquet) are read for a sensor model.
"""

from __future__ import annotations

import os

import numpy as np

from pipelines.score.inputs import TABLE_EXT, soundfile_source
from ssm_signal.data.audio_io import AUDIO_EXTENSIONS


def read_signal(path: str, audio: bool = True, model_rate: int | None = None) -> tuple[np.ndarray, int]:
    """An input file as ``(samples, rate)``: audio through soundfile ((L,) or (L, C)) for an audio model;
    a sensor table for a sensor model (.npy (L, C), or a .csv/.parquet of channel columns), at
    ``model_rate`` (a table has no rate of its own: it is read as the model's, as in training).
    A file of the other kind is an error, never a guess."""
    suffix = os.path.splitext(path)[1].lower()
    if audio and suffix not in AUDIO_EXTENSIONS:
        raise ValueError(f"not an audio file ({suffix or 'no suffix'}): this model reads audio "
                         f"({', '.join(sorted(AUDIO_EXTENSIONS))})")
    if not audio and suffix not in TABLE_EXT:
        raise ValueError(f"not a sensor table ({suffix or 'no suffix'}): this model reads "
                         f"{', '.join(sorted(TABLE_EXT))}")
    if suffix == ".npy":
        return np.load(path, allow_pickle=False), model_rate or 1
    if suffix in (".csv", ".parquet", ".pq"):
        from ssm_signal.data.sensor_tables import channel_columns, read_table

        df = read_table(path)
        return df[channel_columns(df, path)].to_numpy(dtype=np.float32), model_rate or 1
    import soundfile as sf

    x, rate = sf.read(soundfile_source(path), dtype="float32", always_2d=False)
    return x, int(rate)


def read_pcm16(path: str, sample_rate: int, channels: int, min_samples: int) -> np.ndarray | None:
    """(L, C) int16 samples when the file is 16-bit PCM already at the model's rate and channel
    count with at least ``min_samples`` (most audio collections: nothing to resample, downmix or
    check for NaN, and half the bytes of float32 to move); None for anything else, which takes
    :func:`read_signal` and ``prepare_signal``. ``pcm_to_float`` of these samples, run on the
    device, equals soundfile's float32 decoding of the same file bit for bit (both divide by 2^15).

    Read through soundfile: the workers try ``read_pcm16_wav`` first, and this is the path for the
    files it declines (other containers, WAV variants it leaves alone) and for every file with
    ``direct_wav=False``.
    """
    if os.path.splitext(path)[1].lower() not in AUDIO_EXTENSIONS:  # per file, on the workers' critical path: no pathlib
        return None
    import soundfile as sf

    try:
        with sf.SoundFile(soundfile_source(path)) as f:
            if not _model_pcm16(f.subtype, f.samplerate, f.channels, sample_rate, channels) or f.frames < min_samples:
                return None
            return f.read(dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None  # the generic reader reports the problem in the file's row


def _model_pcm16(subtype: str, rate: int, file_channels: int, sample_rate: int, channels: int) -> bool:
    """A header that :func:`read_pcm16` takes: 16-bit PCM at the model's rate and channel count."""
    return subtype == "PCM_16" and rate == sample_rate and file_channels == channels


def is_pcm16(path: str, sample_rate: int, channels: int) -> bool:
    """Whether a file's header says 16-bit PCM at this rate and channel count (what :func:`read_pcm16` takes)."""
    if os.path.splitext(path)[1].lower() not in AUDIO_EXTENSIONS:
        return False
    import soundfile as sf

    try:
        info = sf.info(soundfile_source(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return _model_pcm16(info.subtype, info.samplerate, info.channels, sample_rate, channels)


def approx_length(path: str) -> int:
    """Length estimate for bucketing: the file size. Proportional to the length for PCM audio and
    tables, close for compressed audio; a wrong guess costs padding, never results. Reading every
    header instead (``soundfile.info``) took ~3 s per 20k files before the first batch."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
