"""What both causal frontends are: a framer that carries a phase, then a fitted standardisation.

    frames, state = _features(x, state)        (B, L, C_in) -> (B, F, D)   F = frames_for(L, phase)
    y             = (frames - mean) / std      (B, F, D)                   training-set statistics

A frontend emits one output step (a frame) per ``samples_per_frame`` input samples; the state carries the
phase, samples seen mod ``samples_per_frame``, so a frame is emitted by the call that delivers its last
sample whatever the chunking. :class:`FramedFrontend` holds what follows from that alone: the frame count
of a chunk, the ``mean``/``std`` buffers and their fit, and the checks on the phase (:func:`read_phase`,
:func:`check_aligned`); a subclass says how samples become un-normalised frames.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ssm_signal.layers.base import StreamingModule
from ssm_signal.state import State


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


class FramedFrontend(StreamingModule):
    """A causal frontend: (B, L, d_model) samples -> (B, F, d_output) standardised frames, F possibly 0.

    ``samples_per_frame``: input samples per output step (the hop, the decimation block). ``mean``/``std``
    are (n_features,) buffers, 0 and 1 until :meth:`fit_normalization`. Subclasses implement
    ``init_state`` (its state has a ``phase`` (B,) int64), ``_features`` (samples to un-normalised frames)
    and ``_as_stream`` (a raw training batch, in the shapes the frontend accepts, to (B, L, d_model)).
    """

    def __init__(self, n_features: int, samples_per_frame: int):
        super().__init__()
        self.samples_per_frame = samples_per_frame
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def frames_for(self, n_samples: int, phase: int = 0) -> int:
        """Output steps completed by a chunk of ``n_samples`` arriving at ``phase`` (samples seen mod
        ``samples_per_frame``)."""
        if n_samples < 0 or not 0 <= phase < self.samples_per_frame:
            raise ValueError(f"frames_for: need n_samples >= 0 and 0 <= phase < {self.samples_per_frame}")
        return (phase + n_samples) // self.samples_per_frame

    @torch.no_grad()
    def fit_normalization(self, data: Tensor | Iterable, *, features: bool = False, min_std: float = 1e-5):
        """Set ``mean``/``std`` from training data; returns self.

        ``data`` is a tensor or an iterable of batches (a DataLoader; from (x, ...) tuples the first
        element is used). With ``features=False`` each batch is raw input (see the subclass's
        ``_as_stream``), turned into un-normalised frames from a zero state (as each recording starts at
        inference); with ``features=True`` batches are such frames already, (..., d_output). Statistics
        accumulate in float64 over all batches (:class:`RunningMoments`), so memory does not grow with the
        data set. Padding in padded batches counts as data: pass unpadded items or precomputed frames.

        The statistics are global, fitted once on the training set. Per-recording normalisation (mean/std
        over each recording) is deliberately not offered: it needs the whole recording before the first
        frame, which a causal stream never has.
        """
        moments = RunningMoments(self.d_output)
        for batch in iter_batches(data):
            if not features:
                batch = self._as_stream(batch)
                batch = self._features(batch, self.init_state(batch.shape[0], device=batch.device, dtype=batch.dtype))[0]
            moments.update(batch)
        mean, std = moments.result(min_std)
        self.mean.copy_(mean)
        self.std.copy_(std)
        return self

    # -- unchecked ---------------------------------------------------------------------------
    def _forward(self, x: Tensor, state: State, phase: int | None = None) -> tuple[Tensor, State]:
        """``phase``: the streams' phase (samples seen mod ``samples_per_frame``) where the caller knows
        it, which saves reading it from the device (a synchronisation, not allowed inside a CUDA-graph
        capture); it must equal ``state.phase``. None: read from the state."""
        y, state = self._features(x, state, phase)
        return self._normalize(y), state

    def _features(self, x: Tensor, state: State, phase: int | None = None) -> tuple[Tensor, State]:
        """Un-normalised frames: x (B, L, d_model) -> (B, F, d_output), and the new state."""
        raise NotImplementedError

    def _as_stream(self, batch: Tensor) -> Tensor:
        """A raw batch given to ``fit_normalization``, checked, as (B, L, d_model)."""
        raise NotImplementedError

    def _normalize(self, y: Tensor) -> Tensor:
        return (y - self.mean.to(y.dtype)) / self.std.to(y.dtype)
