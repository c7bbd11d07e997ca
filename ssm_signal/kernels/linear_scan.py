"""In-place scans for the diagonal linear recurrence h_t = a_t * h_{t-1} + b_t.

This is the prefix-sum structure under every selective SSM: the pairs (a, b) compose
associatively, (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2). Tensors are *time-major*,
(T, *S) with time on dim 0, so one time step ``x[t]`` is a contiguous block and the scan
is ``T`` in-place ``addcmul_`` calls on it, with no padding and no copies.

Two schedules, same result:

* ``sequential``: one op per step. On a CPU it is the fastest: a step of a Mamba layer
  (B D_in N elements, ~32K) stays in cache, and the work is the minimum, one multiply-add
  per element.
* ``chunked`` (``chunk=T_c``): the steps are cut into chunks of T_c that are scanned all at
  once from a zero state, then the chunk-final states are carried across chunks and every
  position gets its chunk's incoming state back, h_t += (a_start ... a_t) h_{start-1}.
  About 3 T_c + T / T_c launches instead of T: what a GPU wants, where a launch costs more
  than a step's arithmetic. Only products of decays (|a| <= 1 for a stable SSM) are
  formed: no exp(-cumsum) division tricks that overflow for long chunks. Steps that do
  not fill a last chunk run sequentially (no padding).

``reverse=True`` runs the same recurrence backwards in time, h_t = a_t * h_{t+1} + b_t:
the adjoint of a linear recurrence is a linear recurrence, so backward passes reuse it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def scan_(a: Tensor, h: Tensor, h0: Tensor, *, reverse: bool = False, chunk: int | None = None) -> Tensor:
    """In place over time (dim 0): ``h[t] = a[t] * h[t-1] + h[t]``, with ``h[-1] = h0``.

    a, h: (T, *S), h contiguous and holding b_t on entry, h_t on exit; h0: (*S), the state
    before the first step. With ``reverse``, ``h[t] = a[t] * h[t+1] + h[t]`` and ``h0`` is
    the state after the last step. ``chunk``: ``None`` for the sequential schedule, else
    the chunk length of the chunked one. Returns the last state computed (a view of h).
    """
    T = h.shape[0]
    if chunk is None or chunk < 2 or T < 2 * chunk:
        return _sequential_(a, h, h0, range(T - 1, -1, -1) if reverse else range(T))
    n_c, rem = divmod(T, chunk)
    # the whole chunks sit at the start (forward) or at the end (reverse) of the sequence,
    # so the remainder is what is scanned last
    lo = T - n_c * chunk if reverse else 0
    last = _chunked_(a[lo:lo + n_c * chunk], h[lo:lo + n_c * chunk], h0, chunk, reverse)
    if rem == 0:
        return last
    steps = range(rem - 1, -1, -1) if reverse else range(n_c * chunk, T)
    return _sequential_(a, h, last, steps)


def _sequential_(a: Tensor, h: Tensor, prev: Tensor, steps: range) -> Tensor:
    a_t, h_t = a.unbind(0), h.unbind(0)  # all step views in one call: indexing would cost a dispatch per step
    for t in steps:
        h_t[t].addcmul_(a_t[t], prev)
        prev = h_t[t]
    return prev


def _chunked_(a: Tensor, h: Tensor, h0: Tensor, chunk: int, reverse: bool) -> Tensor:
    """The chunked schedule on a length that is a multiple of ``chunk``."""
    n_c = h.shape[0] // chunk
    af = a.reshape((n_c, chunk) + a.shape[1:])
    hf = h.view((n_c, chunk) + h.shape[1:])  # a view: the result lands in h
    # position j of the scan order -> index inside a chunk / chunk index
    pos = (lambda j: chunk - 1 - j) if reverse else (lambda j: j)
    cpos = (lambda k: n_c - 1 - k) if reverse else (lambda k: k)

    # 1. every chunk from a zero state, all chunks at once
    for j in range(1, chunk):
        hf[:, pos(j)].addcmul_(af[:, pos(j)], hf[:, pos(j - 1)])
    decay = af.prod(dim=1)  # (n_c, *S): a over a whole chunk

    # 2. the state entering each chunk
    carry = torch.empty((n_c,) + h.shape[1:], dtype=h.dtype, device=h.device)
    carry[cpos(0)] = h0
    for k in range(1, n_c):
        c, p = cpos(k), cpos(k - 1)
        torch.addcmul(hf[p, pos(chunk - 1)], decay[p], carry[p], out=carry[c])

    # 3. stitch: h_t += (a_start ... a_t) * carry, the product kept as a running one
    run = carry
    for j in range(chunk):
        i = pos(j)
        hf[:, i].add_(run.mul_(af[:, i]))
    return hf[cpos(n_c - 1), pos(chunk - 1)]


def time_major(t: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """(B, L, ...) -> a new contiguous (L, B, ...) tensor (in ``dtype``, default t's).

    Always a copy, never a view: the scans write into it in place, and ``.contiguous()``
    returns its input itself when a size-1 dimension makes the transpose contiguous.
    """
    out = torch.empty((t.shape[1], t.shape[0]) + t.shape[2:], dtype=dtype or t.dtype, device=t.device)
    return out.copy_(t.transpose(0, 1))


def default_chunk(T: int, device: torch.device) -> int | None:
    """The schedule :func:`scan_` should use for ``T`` steps on ``device``."""
    return None if device.type == "cpu" else max(2, math.isqrt(T))


class _LinearScan(torch.autograd.Function):
    """Batch-major wrapper: a, b (B, L, *S), h0 (B, *S) -> all states (B, L, *S)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, chunk: int | None) -> Tensor:
        at, h = time_major(a), time_major(b)
        scan_(at, h, h0, chunk=chunk)
        ctx.chunk = chunk
        ctx.save_for_backward(at, h, h0)
        return h.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_h: Tensor):
        at, h, h0 = ctx.saved_tensors
        # g_t = dL/dh_t + a_{t+1} g_{t+1}: the reverse scan with the decays shifted by one
        g = time_major(grad_h)
        scan_(at[1:], g[:-1], g[-1], reverse=True, chunk=ctx.chunk)
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(g)
            torch.mul(g[1:], h[:-1], out=grad_a[1:])  # dL/da_t = g_t h_{t-1}
            torch.mul(g[0], h0, out=grad_a[0])
            grad_a = grad_a.transpose(0, 1)
        grad_h0 = at[0] * g[0] if ctx.needs_input_grad[2] else None
        return grad_a, g.transpose(0, 1), grad_h0, None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, chunk: int | None = None) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 1..L, from h_0 = ``h0``.

    a, b: (B, L, *S) in one dtype; h0: (B, *S). Returns all states (B, L, *S); the final
    state is ``h[:, -1]``. Differentiable in a, b and h0. ``chunk`` picks the schedule of
    :func:`scan_` (``None``: sequential).
    """
    if a.shape != b.shape or a.shape[:1] + a.shape[2:] != h0.shape:
        raise ValueError(f"linear_scan shapes: a {tuple(a.shape)}, b {tuple(b.shape)}, h0 {tuple(h0.shape)}")
    return _LinearScan.apply(a, b, h0.to(a.dtype), chunk)
