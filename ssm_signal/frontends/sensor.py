"""Causal streaming frontend for multichannel sensor streams.

    block_j  = mean(x[j*D : (j+1)*D])                       (C,)   D = decimate; D = 1 keeps every sample
    spread_j = mean(|x[i] - x[i-1]|, i = j*D+1 .. (j+1)*D-1)  (C,)   only with ``spread`` (D >= 2)
    y_j      = ([block_j, spread_j] - mean) / std           (C or 2C,)  per-feature training-set statistics

A block mean keeps what changes slowly and averages away what changes from sample to sample: a burst of noise,
or a sensor that stops moving, can leave it as it was. ``spread`` adds each block's mean absolute step between
consecutive samples (within the block, so no step spans two frames), which rises with noise and falls to 0
for a frozen channel.

Decimation averages non-overlapping blocks of D samples, which is causal: block j is
emitted by the call that delivers its last sample. The state carries the sum of the
current partial block and its fill count (the phase, samples seen mod D), so any split of
a stream into chunks gives the blocks of the whole stream (up to float summation order).

Standardising the block average equals averaging standardised samples (the map is
affine), but ``std`` is fitted on the frontend's own output, i.e. on block averages, so
the output of the fitted frontend has unit variance whatever D is.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ssm_signal.frontends.base import FramedFrontend, check_aligned, read_phase
from ssm_signal.state import State
from ssm_signal.validation import check_sequence, check_step


@dataclasses.dataclass(frozen=True)
class SensorFrontendState(State):
    """partial_sum: (B, C), sum of the samples of the unfinished block (zeros at a boundary);
    phase: (B,) int64, samples in that block = samples seen mod decimate (equal across the batch)."""

    partial_sum: Tensor
    phase: Tensor


@dataclasses.dataclass(frozen=True)
class SpreadState(SensorFrontendState):
    """The state with ``spread``: also partial_steps (B, C), the sum of the absolute steps within the unfinished
    block, and last (B, C), the last sample seen (the one a chunk's first step starts from)."""

    partial_steps: Tensor
    last: Tensor


class SensorFrontend(FramedFrontend):
    """Per-channel standardisation with optional block-average decimation, (B, L, C) -> (B, L', C), or
    (B, L', 2C) with ``spread`` (the block means, then the blocks' mean absolute steps).

    L' = ``frames_for(L, phase)`` = (phase + L) // decimate, possibly 0. ``mean``/``std``
    are (d_output,) buffers (0 and 1 until :meth:`fit_normalization`). NaN/Inf inputs are refused:
    filling gaps belongs to the data readers, not to a causal frontend.

    ``step`` consumes one output step's worth of input: x_t (B, C) when decimate == 1 (the
    usual contract), else one whole block x_t (B, decimate, C) at phase 0; it returns (B, C).
    """

    def __init__(self, channels: int, decimate: int = 1, spread: bool = False):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"SensorFrontend: channels must be a positive int, got {channels!r}")
        if isinstance(decimate, bool) or not isinstance(decimate, int) or decimate < 1:
            raise ValueError(f"SensorFrontend: decimate must be a positive int, got {decimate!r}")
        if spread and decimate < 2:
            raise ValueError("SensorFrontend: spread needs blocks of 2 samples or more (decimate >= 2)")
        super().__init__(channels * (2 if spread else 1), samples_per_frame=decimate)
        self.d_model = channels
        self.channels, self.decimate, self.spread = channels, decimate, bool(spread)

    @property
    def d_output(self) -> int:
        return self.channels * (2 if self.spread else 1)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> SensorFrontendState:
        common = {"partial_sum": torch.zeros(batch_size, self.channels, device=device, dtype=dtype),
                  "phase": torch.zeros(batch_size, device=device, dtype=torch.int64)}
        if not self.spread:
            return SensorFrontendState(**common)
        return SpreadState(**common, partial_steps=torch.zeros(batch_size, self.channels, device=device, dtype=dtype),
                           last=torch.zeros(batch_size, self.channels, device=device, dtype=dtype))

    # -- public, checked ---------------------------------------------------------------------
    def step(self, x_t: Tensor, state: SensorFrontendState | None = None) -> tuple[Tensor, SensorFrontendState]:
        """x_t (B, C) if decimate == 1, else (B, decimate, C) -> y_t (B, C)."""
        if self.decimate == 1:
            check_step(x_t, self.channels)
        else:
            check_sequence(x_t, self.channels, "x_t")
            if x_t.shape[1] != self.decimate:
                raise ValueError(
                    f"x_t must hold one block, shape (batch, {self.decimate}, {self.channels}), got {tuple(x_t.shape)}"
                )
        state = self._prepare_state(state, x_t)
        if self.decimate > 1:
            check_aligned(state.phase, "SensorFrontend.step", "block-aligned", "blocks")
        return self._step(x_t, state)

    # -- unchecked ---------------------------------------------------------------------------
    def _as_stream(self, batch: Tensor) -> Tensor:
        """Raw streams to fit on, (B, L, C) or (L, C) -> (B, L, C)."""
        if batch.dim() == 2:
            batch = batch[None]
        check_sequence(batch, self.channels)
        return batch

    def _step(self, x_t: Tensor, state: SensorFrontendState) -> tuple[Tensor, SensorFrontendState]:
        """x_t (B, C), or one block (B, decimate, C) at phase 0 (``step`` checks it) -> y_t (B, C)."""
        if self.decimate == 1:
            return self._normalize(x_t), state
        # at phase 0 the partial sums are empty, and a whole block leaves them empty again
        y = (state.partial_sum.to(x_t.dtype) + x_t.sum(1)) / self.decimate
        if not self.spread:
            return self._normalize(y), state
        steps = (x_t[:, 1:] - x_t[:, :-1]).abs().sum(1) / (self.decimate - 1)  # (B, C)
        return self._normalize(torch.cat([y, steps], -1)), dataclasses.replace(state, last=x_t[:, -1].to(state.last.dtype))

    def _features(self, x: Tensor, state: SensorFrontendState, phase: int | None = None
                  ) -> tuple[Tensor, SensorFrontendState]:
        """Un-normalised frames: x (B, L, C) -> block means (B, L', C), with ``spread`` followed by the blocks'
        mean absolute steps (B, L', 2C); and the new state."""
        D = self.decimate
        if D == 1:
            return x, state
        L = x.shape[1]
        p = read_phase(state.phase, D, type(self).__name__) if phase is None else phase
        sums, partial = block_sums(x, state.partial_sum.to(x.dtype), p, D)
        y = sums / D
        new = dataclasses.replace(state, partial_sum=partial.to(state.partial_sum.dtype),
                                  phase=torch.full_like(state.phase, (p + L) % D))
        if self.spread and L:
            # step i: |x_i - x_{i-1}|, the first from the carried last sample; a block's first sample has none
            prev = torch.cat([state.last.to(x.dtype)[:, None], x[:, :-1]], dim=1)
            first_of_block = ((p + torch.arange(L, device=x.device)) % D == 0)[None, :, None]
            steps = ((x - prev).abs() * ~first_of_block).to(x.dtype)
            step_sums, partial_steps = block_sums(steps, state.partial_steps.to(x.dtype), p, D)
            y = torch.cat([y, step_sums / (D - 1)], dim=-1)
            new = dataclasses.replace(new, partial_steps=partial_steps.to(state.partial_steps.dtype),
                                      last=x[:, -1].to(state.last.dtype))
        elif self.spread:
            y = torch.cat([y, y], dim=-1)  # no frame: (B, 0, 2C)
        return y, new


def block_sums(x: Tensor, carried: Tensor, phase: int, D: int) -> tuple[Tensor, Tensor]:
    """Sums of the blocks of D samples that ``x`` (B, L, C), arriving at ``phase`` after samples summing to
    ``carried`` (B, C), completes: (B, (phase + L) // D, C), and the sum of the unfinished block's samples."""
    B, L, C = x.shape
    n_out = (phase + L) // D
    if n_out == 0:
        return x.new_zeros(B, 0, C), carried + x.sum(1)
    first = D - phase  # samples that complete the carried partial block
    end = first + (n_out - 1) * D
    head = carried + x[:, :first].sum(1)  # (B, C)
    body = x[:, first:end].reshape(B, n_out - 1, D, C).sum(2)  # (B, n_out - 1, C)
    return torch.cat([head.unsqueeze(1), body], dim=1), x[:, end:].sum(1)
