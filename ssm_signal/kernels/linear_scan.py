"""Chunked parallel scan for the diagonal linear recurrence h_t = a_t * h_{t-1} + b_t.

This is the prefix-sum structure under every selective SSM: the pairs (a, b) compose
associatively, (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2), so a sequence can be cut
into chunks that are scanned independently and stitched by carrying one state per chunk.

Plain PyTorch has no fused scan, and a loop over L time steps costs L kernel launches.
Here the sequence of length L is cut into n_c chunks of T ~ sqrt(L) steps:

1. all chunks are scanned at once from a zero state, a loop of T vectorised steps that
   also yields each position's decay since its chunk start, P_t = a_{start} ... a_t;
2. the chunk-final states are carried across chunks, a loop of n_c small steps;
3. every position gets its chunk's incoming state added back: h_t += P_t * h_{start-1}.

So ~2 sqrt(L) launches instead of L, and only products of decays (|a| <= 1 for a
stable SSM) are formed: no exp(-cumsum) division tricks that overflow for long chunks.

The backward pass is the same scan run in reverse (the adjoint of a linear recurrence
is a linear recurrence): g_t = dL/dh_t + a_{t+1} g_{t+1}, then dL/db_t = g_t,
dL/da_t = g_t h_{t-1}, dL/dh0 = a_1 g_1. Only a, h and h0 are saved.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _scan_forward(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """All states h_1..h_L. a, b: (B, L, *S); h0: (B, *S). Returns (B, L, *S)."""
    Bsz, L = a.shape[:2]
    S = a.shape[2:]
    T = max(1, int(math.isqrt(L)))
    n_c = -(-L // T)
    pad = n_c * T - L
    if pad:
        # a = 1, b = 0 leaves the state unchanged: padding is exact.
        a = torch.cat([a, a.new_ones((Bsz, pad) + S)], dim=1)
        b = torch.cat([b, b.new_zeros((Bsz, pad) + S)], dim=1)
    a = a.reshape((Bsz, n_c, T) + S)
    b = b.reshape((Bsz, n_c, T) + S)

    # 1. scan inside every chunk at once, from a zero state
    h = torch.empty_like(b)
    P = torch.empty_like(a)
    h[:, :, 0], P[:, :, 0] = b[:, :, 0], a[:, :, 0]
    for t in range(1, T):
        torch.addcmul(b[:, :, t], a[:, :, t], h[:, :, t - 1], out=h[:, :, t])
        torch.mul(a[:, :, t], P[:, :, t - 1], out=P[:, :, t])

    # 2. carry: the state entering chunk c
    carry = torch.empty((Bsz, n_c) + S, dtype=h.dtype, device=h.device)
    carry[:, 0] = h0
    for c in range(1, n_c):
        torch.addcmul(h[:, c - 1, -1], P[:, c - 1, -1], carry[:, c - 1], out=carry[:, c])

    # 3. stitch
    h = torch.addcmul(h, P, carry.unsqueeze(2))
    return h.reshape((Bsz, n_c * T) + S)[:, :L]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        h = _scan_forward(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):
        a, h, h0 = ctx.saved_tensors
        # g_t = grad_h_t + a_{t+1} g_{t+1}: a scan over reversed time with decays shifted by one
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
        g = _scan_forward(a_next.flip(1), grad_h.flip(1), torch.zeros_like(h0)).flip(1)
        h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)
        grad_a = g * h_prev if ctx.needs_input_grad[0] else None
        grad_h0 = a[:, 0] * g[:, 0] if ctx.needs_input_grad[2] else None
        return grad_a, g, grad_h0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 1..L, from h_0 = ``h0``.

    a, b: (B, L, *S) in one dtype; h0: (B, *S). Returns all states (B, L, *S); the final
    state is ``h[:, -1]``. Differentiable in a, b and h0.
    """
    if a.shape != b.shape or a.shape[:1] + a.shape[2:] != h0.shape:
        raise ValueError(f"linear_scan shapes: a {tuple(a.shape)}, b {tuple(b.shape)}, h0 {tuple(h0.shape)}")
    return _LinearScan.apply(a, b, h0.to(a.dtype))
