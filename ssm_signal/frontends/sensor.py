"""Causal streaming frontend for multichannel sensor streams.

    block_j = mean(x[j*D : (j+1)*D])            (C,)   D = decimate; D = 1 keeps every sample
    y_j     = (block_j - mean) / std            (C,)   per-channel training-set statistics

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


class SensorFrontend(FramedFrontend):
    """Per-channel standardisation with optional block-average decimation, (B, L, C) -> (B, L', C).

    L' = ``frames_for(L, phase)`` = (phase + L) // decimate, possibly 0. ``mean``/``std``
    are (C,) buffers (0 and 1 until :meth:`fit_normalization`). NaN/Inf inputs are refused:
    filling gaps belongs to the data readers, not to a causal frontend.

    ``step`` consumes one output step's worth of input: x_t (B, C) when decimate == 1 (the
    usual contract), else one whole block x_t (B, decimate, C) at phase 0; it returns (B, C).
    """

    def __init__(self, channels: int, decimate: int = 1):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"SensorFrontend: channels must be a positive int, got {channels!r}")
        if isinstance(decimate, bool) or not isinstance(decimate, int) or decimate < 1:
            raise ValueError(f"SensorFrontend: decimate must be a positive int, got {decimate!r}")
        super().__init__(channels, samples_per_frame=decimate)
        self.d_model = channels
        self.channels, self.decimate = channels, decimate

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> SensorFrontendState:
        return SensorFrontendState(
            partial_sum=torch.zeros(batch_size, self.channels, device=device, dtype=dtype),
            phase=torch.zeros(batch_size, device=device, dtype=torch.int64),
        )

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
        # at phase 0 the partial sum is empty, and a whole block leaves it empty again
        y = (state.partial_sum.to(x_t.dtype) + x_t.sum(1)) / self.decimate
        return self._normalize(y), state

    def _features(self, x: Tensor, state: SensorFrontendState, phase: int | None = None
                  ) -> tuple[Tensor, SensorFrontendState]:
        """Un-normalised block means: x (B, L, C) -> (B, L', C), and the new state."""
        D = self.decimate
        if D == 1:
            return x, state
        B, L, C = x.shape
        p = read_phase(state.phase, D, type(self).__name__) if phase is None else phase
        n_out = (p + L) // D
        acc = state.partial_sum.to(x.dtype)
        if n_out == 0:
            y, rest = x.new_zeros(B, 0, C), x
        else:
            first = D - p  # samples that complete the carried partial block
            end = first + (n_out - 1) * D
            head = acc + x[:, :first].sum(1)  # (B, C)
            body = x[:, first:end].reshape(B, n_out - 1, D, C).sum(2)  # (B, n_out - 1, C)
            y = torch.cat([head.unsqueeze(1), body], dim=1) / D
            rest, acc = x[:, end:], torch.zeros_like(acc)
        partial = (acc + rest.sum(1)).to(state.partial_sum.dtype)
        return y, SensorFrontendState(partial_sum=partial, phase=torch.full_like(state.phase, (p + L) % D))
