"""Scoring files too long to hold whole: read in blocks, resampled and run with the state carried.

Why: the batch path (:class:`pipelines.score.batching.ScoreDataset`) reads a file whole and
resamples it whole: one hour of 16 kHz audio took 1.76 GB, one hour of 44.1 kHz stereo 4.25 GB,
and ten hours would not fit a machine. A long file is read here :data:`BLOCK_SECONDS` at a time through soundfile, checked,
downmixed, resampled by the streaming :class:`Resampler` (``prepare_signal``'s whole-signal
``resample`` is that resampler run from a zero state and flushed, so blocks give the same
samples) and run through the model in the windows of ``Bundle.frame_outputs`` with the state
carried (same windows from the start, so the same frames). The clip score is reduced on the way
(classification: the last frame; anomaly: the running maximum), so memory is bounded by a block
and a window whatever the file's length; only ``--frames`` keeps the per-frame outputs (a few
percent of the audio's size). benchmarks/bench_score_memory.py measures the bound.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import torch
from torch import Tensor

from pipelines.score.inputs import Item, soundfile_source
from pipelines.score.runtime import OnnxFrames, TorchFrames
from ssm_signal.bundle import Bundle, check_sample_rate, clip_scores, to_model_channels
from ssm_signal.data.audio_io import AUDIO_EXTENSIONS
from ssm_signal.data.file_checks import file_problem, os_error_words
from ssm_signal.frontends.resample import shared_resampler

BLOCK_SECONDS = 10.0  # of input read at a time
# A file whose decoded float32 samples (at the larger of its rate and the model's) exceed this is
# read in blocks; headers are read only for files larger than LONG_BYTES / COMPRESSION (a compressed
# file decodes to up to ~this many times its size), so a collection of clips costs no header reads.
LONG_BYTES = 64 << 20
COMPRESSION = 8


def decoded_bytes(path: str, model_rate: int) -> int | None:
    """float32 bytes of a file's samples at the larger of its rate and ``model_rate``, from its header
    (None where soundfile cannot read the header: the batch path reports that file)."""
    import soundfile as sf

    try:
        info = sf.info(soundfile_source(path))
    except Exception:
        return None
    return int(info.frames * max(1.0, model_rate / max(info.samplerate, 1)) * info.channels * 4)


def split_long(items: list[Item], audio: bool, model_rate: int, limit: int = LONG_BYTES
               ) -> tuple[list[Item], list[Item]]:
    """``(short, long)``: the long ones are audio files decoding to more than ``limit`` bytes."""
    if not audio:
        return items, []  # sensor tables are read whole (pandas), and small
    short, long = [], []
    for it in items:
        big = (it.problem is None and it.size > limit // COMPRESSION
               and os.path.splitext(it.path)[1].lower() in AUDIO_EXTENSIONS
               and (decoded_bytes(it.path, model_rate) or 0) > limit)
        (long if big else short).append(it)
    return short, long


@dataclasses.dataclass
class LongResult:
    """scores: (1, K) clip scores (None on error); frames: [(F, out_dim)] with ``frames``; seconds read."""

    scores: Tensor | None = None
    frames: list[Tensor] | None = None
    seconds: float = 0.0
    error: str | None = None


class _Clip:
    """The clip score's reduction over windows: what ``clip_scores`` reads of all the frames."""

    def __init__(self, bundle: Bundle, keep_frames: bool):
        self.config, self.anomaly = bundle.config, bundle.config.head.kind == "anomaly"
        self.red: Tensor | None = None  # (1, 1, out_dim): the last frame, or (1, 1, 1) the running max
        self.frames: list[Tensor] | None = [] if keep_frames else None

    def add(self, y: Tensor) -> None:
        if not y.shape[1]:
            return
        if self.anomaly:
            m = y.float().amax(dim=(1, 2), keepdim=True)
            self.red = m if self.red is None else torch.maximum(self.red, m)
        else:
            self.red = y[:, -1:]
        if self.frames is not None:
            self.frames.append(y[0].float().cpu())

    def result(self, seconds: float) -> LongResult:
        scores = clip_scores(self.red, torch.ones(1, dtype=torch.int64), self.config).cpu()
        return LongResult(scores, [torch.cat(self.frames)] if self.frames is not None else None, seconds)


def score_long_file(path: str, bundle: Bundle, runner: TorchFrames | OnnxFrames, keep_frames: bool,
                    stop: Callable[[], None] = lambda: None) -> LongResult:
    """One long audio file -> its row's results; a problem with the file is the result's ``error``.
    ``stop()`` runs between blocks (it raises to end the job early)."""
    problem = file_problem(path)
    if problem is not None:
        return LongResult(error=f"FileError: {problem}")
    try:
        return _stream(path, bundle, runner, keep_frames, stop)
    except OSError as e:
        return LongResult(error=f"FileError: {os_error_words(e)}")
    except (ValueError, RuntimeError, TypeError, EOFError) as e:  # soundfile's and the checks' errors
        return LongResult(error=f"{type(e).__name__}: {e}")


@torch.inference_mode()
def _stream(path: str, bundle: Bundle, runner: TorchFrames | OnnxFrames, keep_frames: bool,
            stop: Callable[[], None]) -> LongResult:
    import soundfile as sf

    model, rate_out, channels, window = bundle.model, bundle.sample_rate, bundle.in_channels, bundle.window_samples
    clip = _Clip(bundle, keep_frames)
    with sf.SoundFile(soundfile_source(path)) as f:
        rate = int(f.samplerate)
        check_sample_rate(rate, rate_out, audio=True)  # long files are audio (split_long)
        resampler = shared_resampler(rate, rate_out, channels)
        rs, state = resampler.init_state(1), runner.init_state(1)
        pending, n_pending, n_in, n_out = [], 0, 0, 0

        def run(x: Tensor) -> None:
            nonlocal state
            y, state = runner.run(x[None], state)
            clip.add(y)

        for block in f.blocks(blocksize=max(1, int(BLOCK_SECONDS * rate)), dtype="float32", always_2d=True):
            stop()
            x = torch.from_numpy(block)
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"waveform contains NaN or Inf (in the block at {n_in / rate:.1f} s)")
            n_in += x.shape[0]
            y, rs = resampler._forward(to_model_channels(x, channels)[None], rs)
            pending.append(y[0])
            n_pending += y.shape[1]
            n_out += y.shape[1]
            if n_pending >= window:  # whole windows from the start, as Bundle.frame_outputs runs them
                buf = torch.cat(pending)
                for start in range(0, n_pending - window + 1, window):
                    run(buf[start:start + window])
                done = n_pending // window * window
                pending, n_pending = [buf[done:]], n_pending - done
        tail, _ = resampler.flush(rs)
        n_out += tail.shape[1]
        rest = torch.cat(pending + [tail[0]])
        for start in range(0, rest.shape[0], window):  # the tail can complete one more whole window
            run(rest[start:start + window])
    if n_out < model.samples_per_frame:
        raise ValueError(f"too short: {n_out} samples, need at least {model.samples_per_frame}")
    return clip.result(n_in / rate)
