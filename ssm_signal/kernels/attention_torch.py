"""Causal sliding-window attention against a ring-buffer KV cache, in plain PyTorch.

Queries are processed in blocks of ``window`` positions; each block attends to the
cache (the previous window-1 keys) plus itself under a mask, then writes its newest keys
into the ring. Memory is O(L · window), never O(L^2).

Same signature and semantics as :func:`ssm_signal.kernels.reference.local_attention`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _slot_times(t0: Tensor, slots: int) -> Tensor:
    """Absolute time held by each ring slot when t0 tokens have been seen: (B, slots).

    Slot s holds the latest tau < t0 with tau ≡ s (mod slots); negative means empty.
    """
    s = torch.arange(slots, device=t0.device)
    return t0[:, None] - 1 - torch.remainder(t0[:, None] - 1 - s, slots)


def _block(q, k, v, k_cache, v_cache, t0, window):
    Bsz, nh, L, hd = q.shape
    slots = window - 1
    tau = _slot_times(t0, slots)  # (B, slots)
    t_new = t0[:, None] + torch.arange(L, device=q.device)  # (B, L)
    times = torch.cat([tau, t_new], dim=1)  # (B, slots + L)
    tq = t_new[:, :, None]  # (B, L, 1)
    valid = (times[:, None, :] >= 0) & (times[:, None, :] <= tq) & (times[:, None, :] > tq - window)
    keys = torch.cat([k_cache.to(q.dtype), k], dim=2)
    vals = torch.cat([v_cache.to(q.dtype), v], dim=2)
    scores = torch.einsum("bhld,bhsd->bhls", q, keys) / math.sqrt(hd)
    scores = scores.masked_fill(~valid[:, None], -torch.inf)
    y = torch.einsum("bhls,bhsd->bhld", torch.softmax(scores, dim=-1), vals)

    # write the newest min(L, slots) keys into their ring slots
    m = min(L, slots)
    idx = torch.remainder(t_new[:, L - m:], slots)  # (B, m)
    idx = idx[:, None, :, None].expand(Bsz, nh, m, hd)
    k_cache = k_cache.scatter(2, idx, k[:, :, L - m:].to(k_cache.dtype))
    v_cache = v_cache.scatter(2, idx, v[:, :, L - m:].to(v_cache.dtype))
    return y, k_cache, v_cache


def local_attention(q, k, v, k_cache, v_cache, t0, window: int):
    """q, k, v: (B, nh, L, hd); caches (B, nh, window-1, hd); t0: (B,) int64."""
    ys = []
    for s in range(0, q.shape[2], window):
        e = s + window
        y, k_cache, v_cache = _block(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], k_cache, v_cache, t0 + s, window)
        ys.append(y)
    return torch.cat(ys, dim=2), k_cache, v_cache
