"""Reading and writing audio files with soundfile (libsndfile).

``torchaudio.load``/``save`` need torchcodec and FFmpeg, which these machines lack, so every reader in
``ssm_signal.data`` goes through :func:`read_audio`: any format libsndfile reads (WAV, FLAC, OGG/Vorbis,
AIFF, MP3 with libsndfile >= 1.1), downmixed to mono and resampled with the streaming engine's filter
(:func:`ssm_signal.frontends.resample.resample`, a whole-file call of the causal polyphase resampler), so a
file gives the training loaders the same samples a :class:`~ssm_signal.streaming.StreamingSession` computes
from it chunk by chunk.
Every failure is a :class:`DataError` naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssm_signal.data.file_checks import regular_file
from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.frontends.resample import resample

__all__ = ["AUDIO_EXTENSIONS", "AudioInfo", "audio_info", "fix_length", "read_audio", "read_audio_with_rate",
           "resample", "screen_audio", "write_audio"]

#: Suffixes (lower case) taken for audio files everywhere: the folder readers, ``evaluate`` and ``score``.
#: All are formats libsndfile reads (MP3 from libsndfile 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

# libsndfile raises LibsndfileError (a RuntimeError) for corrupt or unknown data; older soundfile
# versions raise a bare RuntimeError, and some malformed headers surface as TypeError/ValueError.
_SF_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError)


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, without decoding the samples."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Check a file's header (cheap: no decoding) and return its facts.

    Raises:
        DataError: missing file, unreadable or unsupported header, or 0 frames.
    """
    path = _existing(path)
    try:
        info = sf.info(str(path))
    except _SF_ERRORS as e:
        raise DataError(f"{path}: unreadable audio header ({_reason(e)})") from e
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise DataError(f"{path}: empty audio (0 samples)")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def read_audio(path: str | Path, sample_rate: int | None = 16000) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform.

    Args:
        path: any file libsndfile reads.
        sample_rate: resample to this rate (Hz); None keeps the file's own rate.

    Returns:
        (L,) float32 in [-1, 1] for PCM input; multichannel files are averaged over channels.

    Raises:
        DataError: missing, unreadable, corrupt or unsupported file; 0 samples; NaN or Inf samples.
    """
    wave, sr = read_audio_with_rate(path)
    if sample_rate is not None and sr != sample_rate:
        wave = resample(wave, sr, sample_rate)
    return wave


def read_audio_with_rate(path: str | Path) -> tuple[torch.Tensor, int]:
    """Like :func:`read_audio` without resampling: ``(waveform (L,) float32, sample_rate)``."""
    path = _existing(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except _SF_ERRORS as e:
        raise DataError(f"{path}: unreadable audio ({_reason(e)})") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio contains NaN or Inf samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), int(sr)


def write_audio(path: str | Path, waveform: torch.Tensor | np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a waveform (16-bit PCM WAV unless ``subtype``/the suffix say otherwise).

    Args:
        path: destination; parent folders are created. The format follows the suffix (.wav, .flac, .ogg).
        waveform: (L,) mono or (C, L) channels-first, float in [-1, 1]; values outside are clipped,
            because PCM conversion would otherwise wrap them around.
        sample_rate: Hz.
        subtype: a libsndfile subtype ("PCM_16", "PCM_24", "FLOAT", "VORBIS", ...).

    Raises:
        DataError: NaN/Inf samples or an empty waveform.
    """
    path = Path(path)
    x = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    x = x.astype(np.float32, copy=False)
    if x.ndim not in (1, 2) or x.size == 0:
        raise DataError(f"{path}: cannot write a waveform of shape {tuple(x.shape)}; want (L,) or (C, L), L > 0")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: waveform contains NaN or Inf samples")
    if x.ndim == 2:
        x = x.T  # soundfile wants (frames, channels)
    if subtype.startswith("PCM") or subtype in ("VORBIS", "ALAW", "ULAW"):
        x = np.clip(x, -1.0, 1.0)
    if path.suffix.lower() == ".ogg" and subtype == "PCM_16":
        subtype = "VORBIS"  # OGG holds no PCM; the default then means "the usual codec"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, int(sample_rate), subtype=subtype)
    return path


def fix_length(wave: torch.Tensor, length: int, mode: str = "start", offset: int | None = None) -> torch.Tensor:
    """Crop or zero-pad the last axis to exactly ``length`` samples.

    Args:
        wave: (..., L).
        length: the output length.
        mode: where a crop starts, and where a short input sits: ``"start"`` (keep the beginning, pad at
            the end) or ``"center"``.
        offset: an explicit crop start (or, for a short input, how many zeros come first); overrides mode.

    Returns:
        (..., length).
    """
    if mode not in ("start", "center"):
        raise ValueError(f"mode must be 'start' or 'center', got {mode!r}")
    n = wave.shape[-1]
    if n == length and offset is None:
        return wave
    if n >= length:
        start = offset if offset is not None else (0 if mode == "start" else (n - length) // 2)
        start = max(0, min(int(start), n - length))
        return wave[..., start : start + length]
    before = offset if offset is not None else (0 if mode == "start" else (length - n) // 2)
    before = max(0, min(int(before), length - n))
    return torch.nn.functional.pad(wave, (before, length - n - before))


def _existing(path: str | Path) -> Path:
    """The path of a regular file that is not 0 bytes long, else a DataError saying what it is."""
    st = regular_file(path)  # one system call per file: this runs for every clip read in training
    # libsndfile calls a 0-byte file "Format not recognised"; say what it is, so it is counted as empty
    if st.st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    return Path(path)


def _reason(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    # libsndfile prefixes the path; the DataError message already carries it.
    return msg.split(": ", 1)[-1] if msg.startswith("Error opening") else msg


CHECKS = ("header", "full", "none")


def screen_audio(paths: list[Path], check: str, skips: SkipLog) -> list[bool]:
    """Which files are usable, recording each rejected one in ``skips`` with its reason.

    Args:
        paths: files to check.
        check: ``"header"`` (soundfile.info: catches corrupt, unsupported and empty files cheaply),
            ``"full"`` (decode every file: also catches truncated data and NaN/Inf; slow on big sets),
            ``"none"`` (trust the listing).

    Returns:
        One flag per path, True = keep.
    """
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    keep = []
    for p in paths:
        try:
            if check == "header":
                audio_info(p)
            elif check == "full":
                read_audio_with_rate(p)
            keep.append(True)
        except DataError as e:
            skips.add(str(p), _skip_reason(str(e)))
            keep.append(False)
    return keep


def _skip_reason(message: str) -> str:
    # SkipLog counts by the text before the first colon: lead with a short category.
    text = message.split(": ", 1)[-1]
    for key in ("empty", "NaN", "no such file", "unreadable", "permission denied", "symlink loop", "not a regular"):
        if key in text:
            kind = {"no such file": "missing", "empty": "empty", "NaN": "NaN"}.get(key, "unreadable")
            return f"{kind}: {text}"
    return f"invalid: {text}"
