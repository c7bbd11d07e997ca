"""Causal streaming log-mel frontend for mono audio.

Framing (causal, no centring, no look-ahead): with hop H and FFT size N, frame k covers
samples ``[(k+1)H - N, (k+1)H)``, samples before 0 being zeros. A signal of n samples
therefore yields ``n // H`` frames, and each frame is emitted by the call that delivers
its last sample. The state carries the last N samples and the phase (samples seen mod H),
so any split of a waveform into chunks gives exactly the frames of the whole waveform.

    frame_k  = x[(k+1)H - N : (k+1)H]                                   (N,)
    P_k      = |rfft(w * frame_k)|^2                                   (N//2 + 1,)   w: periodic Hann
    logmel_k = log(P_k @ fbank + eps)                                  (n_mels,)     fbank: HTK mel triangles
    y_k      = (logmel_k - mean) / std                                 training-set statistics

This module also holds the pieces the sensor frontend shares: :class:`RunningMoments` (the
streaming mean/variance behind ``fit_normalization``), :func:`read_phase` and :func:`check_aligned`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
import torchaudio.functional as AF
from torch import Tensor

from ssm_signal.kernels import get_op
from ssm_signal.layers.base import StreamingModule
from ssm_signal.state import State
from ssm_signal.validation import check_sequence, check_step


@dataclasses.dataclass(frozen=True)
class LogMelState(State):
    """history: (B, n_fft), the last n_fft samples, oldest first (zeros at start);
    phase: (B,) int64, samples seen mod hop_length (equal for all streams of a batch)."""

    history: Tensor
    phase: Tensor


class RunningMoments:
    """Per-feature mean and variance accumulated over many batches, in float64.

    Merges each batch's (count, mean, M2) with Chan et al.'s parallel form of Welford's
    update, which unlike sum/sum-of-squares does not cancel when |mean| >> std (log-mel
    values sit around -10 with a std of a few units). Population variance (ddof 0).
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, x: Tensor) -> None:
        """x: (..., dim), every leading index one observation."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected features of width {self.dim}, got shape {tuple(x.shape)}")
        x = x.detach().reshape(-1, self.dim).double()
        n = x.shape[0]
        if n == 0:
            return
        b_mean = x.mean(0)
        b_m2 = (x - b_mean).square().sum(0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, b_mean, b_m2
            return
        total = self.count + n
        delta = b_mean.to(self.mean.device) - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + b_m2.to(self.m2.device) + delta.square() * (self.count * n / total)
        self.count = total

    def result(self, min_std: float = 1e-5) -> tuple[Tensor, Tensor]:
        """(mean, std), each (dim,) float64; std floored at ``min_std`` so dead features stay finite."""
        if self.count == 0 or self.mean is None:
            raise ValueError("fit_normalization saw no feature frames (empty data, or every chunk too short)")
        return self.mean, (self.m2 / self.count).sqrt().clamp_min(min_std)


def read_phase(phase: Tensor, period: int, owner: str) -> int:
    """The common phase of all streams as a Python int (one device sync).

    Frame boundaries fall at the same chunk offsets only if every stream of the batch has
    seen the same number of samples mod ``period``; a batch mixing phases would need a
    ragged output, so it is refused rather than silently misaligned.
    """
    lo = hi = int(phase) if phase.numel() == 1 else None  # a single stream needs no reduction
    if lo is None:
        lo, hi = torch.stack([phase.min(), phase.max()]).tolist()
    if lo != hi:
        raise ValueError(
            f"{owner}: all streams of a batch must be at the same phase (samples seen mod {period}), "
            f"got phases from {lo} to {hi}; feed streams in {period}-sample-aligned chunks or run them apart"
        )
    if not 0 <= lo < period:
        raise ValueError(f"{owner}: state phase {lo} is outside [0, {period})")
    return int(lo)


def check_aligned(phase: Tensor, owner: str, aligned: str, unit: str) -> None:
    """Refuse a single step on streams not at phase 0 (one device read: the public ``step`` does it,
    so that the unchecked ``_step`` the compiled and captured runners wrap never synchronises)."""
    if bool((phase != 0).any()):
        raise ValueError(f"{owner} needs {aligned} streams (phase 0); got phases {phase.tolist()}. "
                         f"Use forward for chunks that are not whole {unit}.")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs of half-precision inputs run in float32 (CPU rfft has no half kernels)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def iter_batches(data: Tensor | Iterable) -> Iterable[Tensor]:
    """A tensor, or an iterable of tensors or of (tensor, ...) tuples such as a DataLoader's."""
    if isinstance(data, Tensor):
        yield data
        return
    for item in data:
        if isinstance(item, (tuple, list)):
            item = item[0]
        if not isinstance(item, Tensor):
            raise ValueError(f"fit_normalization expects tensors or (tensor, ...) tuples, got {type(item).__name__}")
        yield item


class LogMel(StreamingModule):
    """Causal log-mel spectrogram, (B, L, 1) waveform -> (B, F, n_mels) frames.

    F = ``frames_for(L, phase)`` is the number of frames this chunk completes, possibly 0.
    Defaults: 16 kHz, 25 ms Hann window (n_fft=400), 10 ms hop (160), 40 HTK mel bands
    over 20-7600 Hz, ``log(mel + eps)``; then ``(logmel - mean) / std`` with the buffers
    ``mean``/``std`` (n_mels,) set by :meth:`fit_normalization` (0 and 1 until fitted).

    ``step`` takes one hop of samples, x_t (B, hop_length), and returns exactly one frame
    (B, n_mels); it needs the stream to be hop-aligned (phase 0). ``samples_per_frame`` is
    that hop, for containers that drive the frontend step by step.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float = 7600.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        if sample_rate < 1 or n_fft < 2 or hop_length < 1 or n_mels < 1:
            raise ValueError(
                f"LogMel: need sample_rate >= 1, n_fft >= 2, hop_length >= 1, n_mels >= 1; got "
                f"{sample_rate}, {n_fft}, {hop_length}, {n_mels}"
            )
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"LogMel: need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
        if not eps > 0:
            raise ValueError(f"LogMel: eps must be > 0, got {eps}")
        self.d_model = 1
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.eps = f_min, f_max, eps
        # window and filterbank follow from the config, so they stay out of the state_dict;
        # the fitted statistics do not and are saved with the model
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate)  # (n_freqs, n_mels)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # rebuild the window at the new dtype: upcasting the float32 one would leave the
        # float64 path with float32-rounded window coefficients
        w = self.window
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=w.dtype, device=w.device)
        return self

    @property
    def d_output(self) -> int:
        return self.n_mels

    @property
    def samples_per_frame(self) -> int:
        return self.hop_length

    def frames_for(self, n_samples: int, phase: int = 0) -> int:
        """Frames completed by a chunk of ``n_samples`` arriving at ``phase`` (samples seen mod hop)."""
        if n_samples < 0 or not 0 <= phase < self.hop_length:
            raise ValueError(f"frames_for: need n_samples >= 0 and 0 <= phase < {self.hop_length}")
        return (phase + n_samples) // self.hop_length

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> LogMelState:
        return LogMelState(
            history=torch.zeros(batch_size, self.n_fft, device=device, dtype=dtype),
            phase=torch.zeros(batch_size, device=device, dtype=torch.int64),
        )

    # -- public, checked ---------------------------------------------------------------------
    def step(self, x_t: Tensor, state: LogMelState | None = None) -> tuple[Tensor, LogMelState]:
        """One hop in, one frame out: x_t (B, hop_length) -> y_t (B, n_mels). Needs phase 0."""
        check_step(x_t, self.hop_length)
        state = self._prepare_state(state, x_t)
        check_aligned(state.phase, "LogMel.step", "hop-aligned", "hops")
        return self._step(x_t, state)

    @torch.no_grad()
    def fit_normalization(self, data: Tensor | Iterable, *, features: bool = False, min_std: float = 1e-5) -> LogMel:
        """Set ``mean``/``std`` from training data; returns self.

        ``data`` is a tensor or an iterable of batches (a DataLoader; from (x, ...) tuples the
        first element is used). With ``features=False`` each batch is raw audio, (B, L, 1),
        (B, L) or (L,), turned into un-normalised log-mel frames from a zero state (as each
        utterance starts at inference); with ``features=True`` batches are such frames
        already, (..., n_mels). Statistics accumulate in float64 over all batches
        (:class:`RunningMoments`), so memory does not grow with the data set. Padding in
        padded batches counts as data: pass unpadded items or precomputed frames.

        The statistics are global, fitted once on the training set. Per-utterance
        normalisation (mean/std over each recording) is deliberately not offered: it needs
        the whole utterance before the first frame, which a causal stream never has.
        """
        moments = RunningMoments(self.n_mels)
        for batch in iter_batches(data):
            if not features:
                if batch.dim() == 1:
                    batch = batch[None, :, None]
                elif batch.dim() == 2:
                    batch = batch[:, :, None]
                check_sequence(batch, 1)
                batch = self._logmel(batch, self.init_state(batch.shape[0], device=batch.device, dtype=batch.dtype))[0]
            moments.update(batch)
        mean, std = moments.result(min_std)
        self.mean.copy_(mean)
        self.std.copy_(std)
        return self

    # -- unchecked ---------------------------------------------------------------------------
    def _forward(self, x: Tensor, state: LogMelState, phase: int | None = None) -> tuple[Tensor, LogMelState]:
        """``phase``: the streams' phase (samples seen mod hop) where the caller knows it, which
        saves reading it from the device (a synchronisation, not allowed inside a CUDA-graph
        capture); it must equal ``state.phase``. None: read from the state."""
        y, state = self._logmel(x, state, phase)
        return self._normalize(y), state

    def _step(self, x_t: Tensor, state: LogMelState) -> tuple[Tensor, LogMelState]:
        """x_t (B, hop_length) at phase 0 (``step`` checks it; this reads nothing from the device, so
        it compiles and captures) -> y_t (B, n_mels)."""
        # at phase 0 the frame is exactly the last n_fft samples, which is also the new history
        frame = torch.cat([state.history.to(x_t.dtype), x_t], dim=1)[:, -self.n_fft:]
        y = self._normalize(self._frames_to_logmel(frame))
        return y, LogMelState(history=frame.to(state.history.dtype), phase=state.phase)

    def _logmel(self, x: Tensor, state: LogMelState, phase: int | None = None) -> tuple[Tensor, LogMelState]:
        """Un-normalised log-mel frames: x (B, L, 1) -> (B, F, n_mels), and the new state."""
        B, L, _ = x.shape
        p = read_phase(state.phase, self.hop_length, type(self).__name__) if phase is None else phase
        H, N = self.hop_length, self.n_fft
        buf = torch.cat([state.history.to(x.dtype), x[..., 0]], dim=1)  # (B, N + L); sample j of x at N + j
        n_frames = (p + L) // H
        if n_frames == 0:
            y = x.new_zeros(B, 0, self.n_mels)
        else:
            # the first frame ends after chunk sample H - p - 1, i.e. at buffer index N + H - p
            start = H - p
            frames = buf[:, start:start + (n_frames - 1) * H + N].unfold(1, N, H)  # (B, F, N), a view
            y = self._frames_to_logmel(frames)
        history = buf[:, -N:].to(state.history.dtype, copy=True)  # a copy, so buf is not kept alive
        return y, LogMelState(history=history, phase=torch.full_like(state.phase, (p + L) % H))

    def _frames_to_logmel(self, frames: Tensor) -> Tensor:
        """frames (..., n_fft) -> log(|rfft(w * frame)|^2 @ fbank + eps), (..., n_mels)."""
        out_dtype = frames.dtype
        dt = compute_dtype(out_dtype)
        power = get_op("power_spectrum", frames.device)(frames.to(dt), self.window.to(dt), self.n_fft)
        return torch.log(power @ self.fbank.to(dt) + self.eps).to(out_dtype)

    def _normalize(self, y: Tensor) -> Tensor:
        return (y - self.mean.to(y.dtype)) / self.std.to(y.dtype)
