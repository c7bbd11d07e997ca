"""The one input normaliser: what every entry point does to a caller's samples and rate.

``predict`` and batch scoring (:func:`ssm_signal.bundle.prepare_signal`), a StreamingSession, a
StreamPool, the live page and the torch-free ONNX session (``ssm_signal.runtime``) all take samples
through :func:`as_array` (:func:`as_samples` is it as a torch tensor), a rate through
:func:`check_sample_rate` and a streamed chunk through :func:`admit`, so one set of rules holds everywhere:

- dtypes: int8, int16, int32 and uint8 PCM (scaled to [-1, 1)) or real floats; other integer widths,
  booleans, complex numbers, strings and objects are refused;
- shapes and channels: (n,) or (n, channels), time first (a (2, 16000) array is refused rather than
  read as 16000 channels); a multichannel signal for a mono model is downmixed by the mean, any other
  channel mismatch is an error; NaN and Inf are refused;
- rates: a whole number of Hz; the model's own rate always; otherwise 8-192 kHz for audio models and
  1 Hz-1 MHz for others, and never more than 8x upsampling.

The rules are numpy; torch is imported only by the functions that take or return tensors.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

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
# A signal's channels rarely exceed this (7.1 surround is 8); more "channels" than that, and more
# than there are samples, is almost always a channels-first array read the wrong way round.
MAX_PLAUSIBLE_CHANNELS = 8

# PCM formats and their full scale: x / scale in [-1, 1) (uint8 is offset by 128 first)
PCM_SCALE = {"int8": 2.0**7, "int16": 2.0**15, "int32": 2.0**31, "uint8": 2.0**7}


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


def takes_rate(rate: int, model_rate: int, audio: bool) -> bool:
    """Whether a model running at ``model_rate`` takes input at ``rate`` (:func:`check_sample_rate` as a test)."""
    try:
        check_sample_rate(rate, model_rate, audio)
    except ValueError:
        return False
    return True


def check_resampling(sample_rate: int, target_rate: int) -> None:
    """Refuse, before anything is allocated, a rate the model's rate is too far above."""
    if target_rate > MAX_UPSAMPLING * sample_rate:
        lowest = -(-target_rate // MAX_UPSAMPLING)
        raise ValueError(f"sample rate {sample_rate} Hz is below the {lowest} Hz this {target_rate} Hz model "
                         f"accepts (at most {MAX_UPSAMPLING}x upsampling); is the file's header right?")


def admit(n: int, channels: int, sample_rate, *, in_channels: int, model_rate: int, audio: bool, input_rate: int,
          finished: bool, max_chunk_seconds: float) -> int:
    """The checks a streamed chunk of ``n`` samples with ``channels`` channels passes before it touches a
    stream: the channel count, the rate (a valid one, and the stream's own once known: ``input_rate`` 0 =
    not yet), a stream not yet flushed, the length. Returns the rate; raises ValueError. Every streaming
    session and pool, torch or not, calls it."""
    if channels != in_channels:
        raise ValueError(f"chunk has {channels} channels, the model expects {in_channels}")
    rate = check_sample_rate(sample_rate, model_rate, audio)
    if finished:
        raise ValueError("the stream was flushed (ended); reset it to start a new one")
    if input_rate and input_rate != rate:
        raise ValueError(f"sample rate changed from {input_rate} to {rate} Hz mid-stream; reset the stream first")
    if n > max_chunk_seconds * rate:
        raise ValueError(f"chunk of {n / rate:.1f} s exceeds max_chunk_seconds={max_chunk_seconds:g}; "
                         "push it in parts")
    return rate


def check_time_first(shape: tuple[int, ...], name: str = "samples") -> None:
    """Refuse a 2-D (samples, channels) array that is more likely (channels, samples).

    A (2, 64) chunk read as 64 channels of 2 samples would be downmixed into a wrong signal without
    a word; the two readings are named instead. Shapes with n >= c, or c <= MAX_PLAUSIBLE_CHANNELS,
    pass (a short chunk of a stereo stream is (1, 2)).
    """
    if len(shape) != 2:
        return
    n, c = shape
    if c > MAX_PLAUSIBLE_CHANNELS and c > n >= 1:
        raise ValueError(f"{name} of shape {tuple(shape)} read time-first would be {c} channels of {n} samples; "
                         f"more likely {n} channels of {c} samples (channels first). Pass (samples,) or "
                         "(samples, channels), time first, e.g. x.T")


def downmixes(c: int, channels: int) -> bool:
    """Whether a signal of ``c`` channels is downmixed (by the mean) for a model of ``channels``; raises
    ValueError for any other mismatch."""
    if c == channels:
        return False
    if channels == 1 and 1 < c <= MAX_DOWNMIX_CHANNELS:
        return True
    if channels == 1:
        raise ValueError(f"samples have {c} channels? Pass (n,) or (n, channels) (time first)")
    raise ValueError(f"samples have {c} channels, the model expects {channels}")


def as_array(samples, channels: int) -> np.ndarray:
    """Raw samples (numpy array, tensor or sequence; (n,) or (n, c)) -> (n, channels) float32 numpy array,
    a copy (never a view of the caller's buffer). n = 0 is allowed (an empty chunk). Raises ValueError
    naming what is wrong (see the module docstring for the rules)."""
    arr = _tensor_as_numpy(samples) if _is_tensor(samples) else _as_numpy(samples)
    if arr.dtype.name in PCM_SCALE:
        x, is_pcm = pcm_array_to_float(arr), True
    elif arr.dtype.kind == "f":
        x, is_pcm = arr.astype(np.float32), False  # a copy
    else:
        raise ValueError(f"samples must be int8/int16/int32/uint8 PCM or float, got {arr.dtype}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"samples must have shape (n,) or (n, channels), got {tuple(x.shape)}")
    check_time_first(tuple(x.shape))
    if downmixes(x.shape[1], channels):
        x = x.mean(axis=1, keepdims=True, dtype=np.float32)
    if x.shape[0] and not is_pcm and not np.isfinite(x).all():  # PCM is finite by construction
        raise ValueError("samples contain NaN or Inf")
    return np.ascontiguousarray(x)


def pcm_array_to_float(x: np.ndarray) -> np.ndarray:
    """Integer PCM (numpy) to float32 in [-1, 1)."""
    scale = np.float32(PCM_SCALE[x.dtype.name])
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - np.float32(128.0)) / scale
    return x.astype(np.float32) / scale


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _tensor_as_numpy(t) -> np.ndarray:
    t = t.detach().cpu()
    name = str(t.dtype).removeprefix("torch.")
    if name in PCM_SCALE:
        return t.numpy()
    if t.is_floating_point():
        return t.float().numpy()  # half precision has no numpy twin (bfloat16)
    raise ValueError(f"samples must be int8/int16/int32/uint8 PCM or float, got {t.dtype}")


def _as_numpy(samples) -> np.ndarray:
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
    return arr


# -- torch -----------------------------------------------------------------------------------------
def as_samples(samples, channels: int) -> Tensor:
    """:func:`as_array` as a (n, channels) float32 CPU tensor (a copy)."""
    import torch

    return torch.from_numpy(as_array(samples, channels))


def pcm_to_float(x: Tensor) -> Tensor:
    """Integer PCM (a tensor, on any device) to float in [-1, 1)."""
    import torch

    scale = PCM_SCALE[str(x.dtype).removeprefix("torch.")]
    if x.dtype == torch.uint8:
        return (x.float() - 128.0) / scale
    return x.float() / scale


def to_model_channels(x: Tensor, channels: int) -> Tensor:
    """(n, c) tensor -> (n, channels): a multichannel signal for a mono model is downmixed (mean); any other
    mismatch is an error."""
    return x.mean(dim=1, keepdim=True) if downmixes(x.shape[1], channels) else x
