"""Causal sliding-window multi-head attention for hybrid stacks (Jamba-style).

Lieber et al. (2024), "Jamba", and the Mamba-2 paper (section 9.2.3) find a few attention
layers among SSM layers help recall. Full attention would need an unbounded KV cache to
stream, so each query here attends only to the last ``window`` positions (itself
included), and the state is a ring buffer of the last window-1 keys and values: constant
memory per stream, however long the stream runs. No positional encoding: the SSM layers
around it carry order (Jamba uses none either), and it keeps the ring order-free.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ssm_signal.kernels import get_op
from ssm_signal.layers.base import StreamingModule
from ssm_signal.state import State


@dataclasses.dataclass(frozen=True)
class AttentionState(State):
    """k, v: (B, heads, window-1, head_dim) ring buffers; t: (B,) int64 tokens seen."""

    k: Tensor
    v: Tensor
    t: Tensor


class LocalAttention(StreamingModule):
    """Causal local attention, (B, L, d_model) -> (B, L, d_model).

    Args: n_heads (4; must divide d_model), window (64 positions, >= 2), bias (False).
    """

    def __init__(self, d_model: int, n_heads: int = 4, window: int = 64, bias: bool = False):
        super().__init__()
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"LocalAttention: n_heads={n_heads} must divide d_model={d_model}")
        if window < 2:
            raise ValueError(f"LocalAttention: window must be >= 2, got {window}")
        self.d_model, self.n_heads, self.window = d_model, n_heads, window
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> AttentionState:
        shape = (batch_size, self.n_heads, self.window - 1, self.head_dim)
        return AttentionState(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            t=torch.zeros(batch_size, device=device, dtype=torch.int64),
        )

    def _forward(self, x: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState]:
        Bsz, L, _ = x.shape
        q, k, v = self.qkv(x).view(Bsz, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attend = get_op("local_attention", x.device)
        y, kc, vc = attend(q, k, v, state.k.to(q.dtype), state.v.to(q.dtype), state.t, self.window)
        y = self.out_proj(y.transpose(1, 2).reshape(Bsz, L, self.d_model))
        return y, AttentionState(k=kc.to(state.k.dtype), v=vc.to(state.v.dtype), t=state.t + L)
