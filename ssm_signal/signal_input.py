"""The one input normaliser: what every entry point does to a caller's samples and rate.

``predict`` and batch scoring (:func:`ssm_signal.bundle.prepare_signal`), a StreamingSession, a
StreamPool and the live page all take samples through :func:`as_samples` and a rate through
:func:`check_sample_rate`, so one set of rules holds everywhere:

- dtypes: int8, int16, int32 and uint8 PCM (scaled to [-1, 1)) or real floats; other integer widths,
  booleans, complex numbers, strings and objects are refused;
- shapes and channels: (n,) or (n, channels), time first (a (2, 16000) array is refused rather than
  read as 16000 channels); a multichannel signal for a mono model is downmixed by the mean, any other
  channel mismatch is an error; NaN and Inf are refused;
- rates: a whole number of Hz; the model's own rate always; otherwise 8-192 kHz for audio models and
  1 Hz-1 MHz for others, and never more than 8x upsampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ssm_signal.validation import check_time_first

# Input rates an audio model accepts besides its own (Hz): telephone to high-resolution audio.
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 8000, 192000
# Any other model (sensors): rates a header can plausibly state.
MIN_RATE, MAX_RATE = 1, 1_000_000
# Upsampling by more than this is refused: the output (and the polyphase filter) grow with the
# ratio, and a header claiming 1 Hz would ask a 16 kHz model for 16,000 output samples per input
# sample (gigabytes from a 40 KB file). 8 admits 2 kHz input for a 16 kHz sensor model.
MAX_UPSAMPLING = 8
# A "mono" model downmixes up to this many channels; more is taken for a transposed array.
MAX_DOWNMIX_CHANNELS = 64

_PCM = (torch.int8, torch.int16, torch.int32, torch.uint8)


def check_sample_rate(sample_rate, model_rate: int, audio: bool) -> int:
    """``sample_rate`` as an int if a model running at ``model_rate`` takes it (see the module docstring)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer | float | np.floating):
        raise ValueError(f"sample_rate must be a number of Hz, got {type(sample_rate).__name__}")
    if not math.isfinite(float(sample_rate)) or float(sample_rate) != int(sample_rate):
        raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    rate = int(sample_rate)
    if rate == model_rate:
        return rate
    lo, hi = (MIN_AUDIO_RATE, MAX_AUDIO_RATE) if audio else (MIN_RATE, MAX_RATE)
    if not lo <= rate <= hi:
        raise ValueError(f"sample_rate {rate} Hz is outside the supported range [{lo}, {hi}] Hz "
                         f"(the model runs at {model_rate} Hz)")
    check_resampling(rate, model_rate)
    return rate


def check_resampling(sample_rate: int, target_rate: int) -> None:
    """Refuse, before anything is allocated, a rate the model's rate is too far above."""
    if target_rate > MAX_UPSAMPLING * sample_rate:
        lowest = -(-target_rate // MAX_UPSAMPLING)
        raise ValueError(f"sample rate {sample_rate} Hz is below the {lowest} Hz this {target_rate} Hz model "
                         f"accepts (at most {MAX_UPSAMPLING}x upsampling); is the file's header right?")


def pcm_to_float(x: Tensor) -> Tensor:
    """Integer PCM to float in [-1, 1)."""
    if x.dtype == torch.uint8:
        return (x.float() - 128.0) / 128.0
    scale = {torch.int8: 2.0**7, torch.int16: 2.0**15, torch.int32: 2.0**31}[x.dtype]
    return x.float() / scale


def to_model_channels(x: Tensor, channels: int) -> Tensor:
    """(n, c) -> (n, channels): a multichannel signal for a mono model is downmixed (mean); any other
    mismatch is an error."""
    c = x.shape[1]
    if c == channels:
        return x
    if channels == 1 and 1 < c <= MAX_DOWNMIX_CHANNELS:
        return x.mean(dim=1, keepdim=True)
    if channels == 1:
        raise ValueError(f"samples have shape {tuple(x.shape)}: {c} channels? Pass (n,) or (n, channels) "
                         "(time first)")
    raise ValueError(f"samples have {c} channels, the model expects {channels}")


def as_samples(samples, channels: int) -> Tensor:
    """Raw samples (numpy array, tensor or sequence; (n,) or (n, c)) -> (n, channels) float32 CPU tensor,
    a copy (never a view of the caller's buffer). n = 0 is allowed (an empty chunk). Raises ValueError
    naming what is wrong (see the module docstring for the rules)."""
    if isinstance(samples, Tensor):
        x = samples.detach().cpu()
    else:
        try:
            arr = np.asarray(samples)
        except (ValueError, TypeError) as e:
            raise ValueError(f"samples must be an array of numbers: {e}") from e
        if arr.dtype == object or arr.dtype.kind in "USVMm":
            raise ValueError(f"samples must be numeric PCM or float, got dtype {arr.dtype}")
        if arr.dtype.kind == "c":
            raise ValueError("samples must be real, got a complex array")
        if arr.dtype.kind == "b":
            raise ValueError("samples must be PCM or float, got booleans")
        if arr.dtype in (np.uint16, np.uint32, np.uint64, np.int64):
            raise ValueError(f"samples of dtype {arr.dtype} are not a PCM format; use int16/int32 or float")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    is_pcm = x.dtype in _PCM
    if is_pcm:
        x = pcm_to_float(x)
    elif not x.is_floating_point() or x.is_complex():
        raise ValueError(f"samples must be int8/int16/int32/uint8 PCM or float, got {x.dtype}")
    else:
        x = x.to(torch.float32, copy=True)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise ValueError(f"samples must have shape (n,) or (n, channels), got {tuple(x.shape)}")
    check_time_first(tuple(x.shape))
    x = to_model_channels(x, channels)
    # PCM is finite by construction; numpy's check is the faster on a CPU array
    if x.shape[0] and not is_pcm and not np.isfinite(x.numpy()).all():
        raise ValueError("samples contain NaN or Inf")
    return x
