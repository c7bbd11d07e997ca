"""Depthwise causal convolution with an explicit carried input buffer.

The parameters are an ``nn.Conv1d(groups=channels)`` named like mamba_ssm's ``conv1d``
(weight (C, 1, K), bias (C,)), so checkpoints load unchanged. The state holds the last
K-1 inputs, so chunked and stepped calls see exactly the left context the whole-sequence
call sees through its zero padding.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.kernels import get_op
from ssm_signal.layers.base import StreamingModule
from ssm_signal.state import State


@dataclasses.dataclass(frozen=True)
class ConvState(State):
    """buffer: (B, C, K-1), the last K-1 inputs, oldest first."""

    buffer: Tensor


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, buffer: Tensor) -> tuple[Tensor, Tensor]:
    """Depthwise causal conv over time with a carried buffer.

    x: (B, L, C); weight: (C, 1, K); bias: (C,); buffer: (B, C, K-1). Returns y (B, L, C)
    and the new buffer. y_t = bias + sum_k weight[:, 0, k] * x_{t-K+1+k}.
    """
    K = weight.shape[-1]
    xt = torch.cat([buffer.to(x.dtype), x.transpose(1, 2)], dim=2)  # (B, C, K-1+L)
    y = F.conv1d(xt, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), groups=weight.shape[0])
    return y.transpose(1, 2), xt[:, :, xt.shape[2] - (K - 1):].to(buffer.dtype)


def causal_conv1d_step(x_t: Tensor, weight: Tensor, bias: Tensor | None, buffer: Tensor) -> tuple[Tensor, Tensor]:
    """One step: x_t (B, C), buffer (B, C, K-1) of the last K-1 inputs -> y_t (B, C), new buffer.
    y_t = bias + sum_k weight[:, 0, k] * [buffer, x_t]_k, through the kernel registry's ``conv_step``
    (``kernels.reference.conv_step`` is the spec)."""
    return get_op("conv_step", x_t.device)(x_t, weight, bias, buffer)


class CausalConv1d(StreamingModule):
    """Depthwise causal 1-D convolution, (B, L, C) -> (B, L, C), with :class:`ConvState`.

    Holds ``conv1d`` (an ``nn.Conv1d``) so parameter names match mamba_ssm: ``conv1d.weight``
    and ``conv1d.bias``.
    """

    def __init__(self, d_model: int, kernel_size: int = 4, bias: bool = True):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.d_model = d_model
        self.kernel_size = kernel_size
        self.conv1d = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=bias, padding=kernel_size - 1)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> ConvState:
        return ConvState(torch.zeros(batch_size, self.d_model, self.kernel_size - 1, device=device, dtype=dtype))

    def _forward(self, x: Tensor, state: ConvState) -> tuple[Tensor, ConvState]:
        y, buf = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias, state.buffer)
        return y, ConvState(buf)

    def _step(self, x_t: Tensor, state: ConvState) -> tuple[Tensor, ConvState]:
        y, buf = causal_conv1d_step(x_t, self.conv1d.weight, self.conv1d.bias, state.buffer)
        return y, ConvState(buf)
