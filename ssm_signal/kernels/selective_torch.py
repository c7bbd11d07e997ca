"""Mamba-1 selective scan in plain PyTorch: one autograd Function, blocked over time.

Same signature and semantics as :func:`ssm_signal.kernels.reference.selective_scan`
(the spec; symbols as in its glossary):

    Δ_t = softplus(dt_t + dt_bias)                        (B, L, D_in)
    Ā_t = exp(Δ_t A),  B̄_t x_t = Δ_t B_t x_t              (B, L, D_in, N)
    h_t = Ā_t h_{t-1} + B̄_t x_t,  y_t = (C_t · h_t + D x_t) * silu(z_t)

Why it is written this way. Ā and B̄x have B L D_in N elements: at B 16, L 1000, D_in 128,
N 16 that is 32M, 128 MB in float32, per tensor. Materialised whole, with autograd saving
every intermediate, each elementwise op becomes a trip to main memory. Here time is cut
into blocks of T steps sized to stay in cache (a few MB a tensor): each block's Ā, B̄x and
h are built, scanned, reduced to what the layer needs and dropped. The forward keeps only
the state entering each block; the backward rebuilds a block's Ā and h from it, which
costs one more exp per element but no memory traffic for stored (B, L, D_in, N) tensors.

Inside, everything is time-major with the state stored as (N, D_in): blocks are
(T, B, N, D_in), so one step ``[t]`` is contiguous for the sequential scan, and the
reductions over N or D_in are batched row-vector matmuls, ``(1, N) @ (N, D_in)`` or
``(1, D_in) @ (D_in, N)``, which run fast, rather than matrix-vector ones, which do not.

The backward pass is written out (the adjoint method). With G_t = dL/dh_t, the total
gradient reaching h_t through y_t and through h_{t+1},

    G_t = C_t ⊗ dL/dy_t + Ā_{t+1} G_{t+1}         (a linear scan backwards in time)
    dL/dB̄x_t = G_t,   dL/dĀ_t = G_t h_{t-1},      dL/dh_0 = Ā_1 G_1,

and the rest are contractions of these per block:

    dL/dC_t = Σ_d dL/dy_t h_t             dL/dB_t = Σ_d G_t Δ_t x_t
    dL/dx_t = Δ_t Σ_n G_t B_t             dL/dΔ_t = x_t Σ_n G_t B_t + Σ_n A G_t h_{t-1} Ā_t
    dL/dA   = Σ_{b,t} Δ_t G_t h_{t-1} Ā_t

then dL/ddt through softplus, dL/ddt_bias = Σ_{b,t} dL/ddt, and the D and z terms of the
output by hand. Work for inputs that need no gradient is skipped.

Arithmetic runs in float64 when an input is float64, else float32 (``compute_dtype``);
y is returned in x's dtype and h_L in h0's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_signal.kernels.linear_scan import default_chunk, scan_, time_major
from ssm_signal.kernels.reference import compute_dtype

# Elements of one (T, B, N, D_in) block tensor. On a CPU a block's few tensors should stay
# in cache (L2/L3: 2 MB each in float32); on a GPU larger blocks mean fewer launches.
_BLOCK_ELEMENTS = {"cpu": 1 << 19}
_BLOCK_ELEMENTS_OTHER = 1 << 25


def block_length(L: int, step_elements: int, device: torch.device) -> int:
    """Steps per block: the most that keep a block tensor within the device's budget."""
    budget = _BLOCK_ELEMENTS.get(device.type, _BLOCK_ELEMENTS_OTHER)
    return max(1, min(L, budget // max(1, step_elements)))


def _discretise(delta: Tensor, dx: Tensor, A_t: Tensor, B_: Tensor, a_out: Tensor, b_out: Tensor) -> None:
    """Ā = exp(Δ A) into ``a_out`` and B̄x = B ⊗ Δx into ``b_out``, both (n, B, N, D_in).

    delta, dx (Δ and Δ x): (n, B, D_in); A_t: (N, D_in); B_: (n, B, N).
    """
    torch.mul(delta.unsqueeze(2), A_t, out=a_out).exp_()
    torch.mul(B_.unsqueeze(3), dx.unsqueeze(2), out=b_out)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, h0, block, chunk):
        cd = compute_dtype(x, dt, A, h0)
        Bsz, L, Din = x.shape
        N = A.shape[-1]
        T = block if block is not None else block_length(L, Bsz * N * Din, x.device)
        if chunk is None:
            chunk = default_chunk(T, x.device)
        n_blocks = -(-L // T)
        training = any(ctx.needs_input_grad)

        # time-major (L, B, ·) copies of the small inputs
        pre = time_major(dt, cd)  # dt + dt_bias, before the softplus
        if dt_bias is not None:
            pre += dt_bias.to(cd)
        delta = F.softplus(pre)  # Δ
        xt = time_major(x, cd)
        dx = delta * xt  # Δ x
        Bt, Ct = time_major(B, cd), time_major(C, cd)
        A_t = A.to(cd).t().contiguous()  # (N, D_in)

        a_buf = torch.empty((T, Bsz, N, Din), dtype=cd, device=x.device)  # Ā
        h_buf = torch.empty_like(a_buf)  # B̄x, then h
        ys = torch.empty((L, Bsz, Din), dtype=cd, device=x.device)  # C · h
        # the state entering each block, then h_L: all of them when the backward pass will
        # restart blocks from them, else two slots used in turn. Preallocated, as (B, N, D_in)
        # tensors are just large enough for every fresh allocation to be a page-faulting mmap.
        states = torch.empty((n_blocks + 1 if training else 2, Bsz, N, Din), dtype=cd, device=x.device)
        states[0].copy_(h0.transpose(1, 2))
        for k in range(n_blocks):
            t0, t1 = k * T, min(L, (k + 1) * T)
            n = t1 - t0
            h_in, h_out = (states[k], states[k + 1]) if training else (states[k % 2], states[(k + 1) % 2])
            a, hb = a_buf[:n], h_buf[:n]
            _discretise(delta[t0:t1], dx[t0:t1], A_t, Bt[t0:t1], a, hb)
            h_out.copy_(scan_(a, hb, h_in, chunk=chunk))
            torch.bmm(Ct[t0:t1].view(n * Bsz, 1, N), hb.view(n * Bsz, N, Din), out=ys[t0:t1].view(n * Bsz, 1, Din))
        del a_buf, h_buf

        x_ = x.to(cd)
        if D is not None:
            y = (x_ * D.to(cd)).add_(ys.transpose(0, 1))  # (B, L, D_in), contiguous
        else:
            y = ys.transpose(0, 1).contiguous()
        y_pre = y  # before the gate
        if z is not None:
            y = y * F.silu(z.to(cd))
        if training:
            ctx.save_for_backward(pre, delta, xt, dx, Bt, Ct, A_t, x_, D, z, y_pre if z is not None else None,
                                  states[:-1])
            ctx.meta = (T, chunk, n_blocks, cd, [t.dtype if t is not None else None
                                                 for t in (x, dt, A, B, C, D, z, dt_bias, h0)])
        h_L = h_out.transpose(1, 2).to(h0.dtype, memory_format=torch.contiguous_format, copy=True)
        return y.to(x.dtype), h_L

    @staticmethod
    def backward(ctx, g_y, g_hL):
        pre, delta, xt, dx, Bt, Ct, A_t, x_, D, z, y_pre, states = ctx.saved_tensors
        T, chunk, n_blocks, cd, dtypes = ctx.meta
        need = ctx.needs_input_grad  # x, dt, A, B, C, D, z, dt_bias, h0
        L, Bsz, Din = xt.shape
        N = A_t.shape[0]
        dev = xt.device
        need_delta = need[1] or need[7]
        need_u = need[0] or need_delta  # u = Σ_n G B, for dx and dΔ
        need_P = need[2] or need_delta  # P = G h_{t-1} Ā, for dA and dΔ
        need_G = need_u or need_P or need[3] or need[8]
        need_h = need_P or need[4]
        grads: list[Tensor | None] = [None] * 9

        # output side: y = y_pre * silu(z), y_pre = C·h + D x
        g_y = g_y.to(cd)
        if z is not None:
            z_ = z.to(cd)
            if need[6]:
                s = torch.sigmoid(z_)
                grads[6] = g_y * y_pre * s * (1 + z_ * (1 - s))  # silu'(z) = s (1 + z (1 - s))
            g_y = g_y * F.silu(z_)
        if need[5]:
            grads[5] = (g_y * x_).sum((0, 1))
        gy = time_major(g_y, cd)  # dL/d(C·h), (L, B, D_in)

        a_buf = torch.empty((T, Bsz, N, Din), dtype=cd, device=dev)
        h_buf = torch.empty((T + 1, Bsz, N, Din), dtype=cd, device=dev)  # [h_{t0-1}, h_t0, ...]
        G_buf = torch.empty((T, Bsz, N, Din), dtype=cd, device=dev) if need_G else None
        u = torch.empty((L, Bsz, Din), dtype=cd, device=dev) if need_u else None
        dP = torch.empty((L, Bsz, Din), dtype=cd, device=dev) if need_delta else None  # Σ_n A P
        dA = torch.zeros((N, Din), dtype=cd, device=dev) if need[2] else None
        dB = torch.empty((L, Bsz, N), dtype=cd, device=dev) if need[3] else None
        dC = torch.empty((L, Bsz, N), dtype=cd, device=dev) if need[4] else None
        # G flowing back into the last state of a block: dL/dh_L from outside for the last
        # block, Ā_{t1} G_{t1} from the block after it for the others
        carry = torch.empty((Bsz, N, Din), dtype=cd, device=dev).copy_(g_hL.transpose(1, 2))  # written in place

        for k in reversed(range(n_blocks)):
            t0, t1 = k * T, min(L, (k + 1) * T)
            n, nb = t1 - t0, (t1 - t0) * Bsz
            a, h, h_prev = a_buf[:n], h_buf[1:n + 1], h_buf[:n]
            # rebuild the block: Ā, and h from the state that entered it
            _discretise(delta[t0:t1], dx[t0:t1], A_t, Bt[t0:t1], a, h)
            if need_h:
                h_buf[0].copy_(states[k])
                scan_(a, h, h_buf[0], chunk=chunk)
            if need[4]:
                torch.bmm(gy[t0:t1].view(nb, 1, Din), h.view(nb, N, Din).transpose(1, 2),
                          out=dC[t0:t1].view(nb, 1, N))
            if not need_G:
                continue
            G = G_buf[:n]
            torch.mul(Ct[t0:t1].unsqueeze(3), gy[t0:t1].unsqueeze(2), out=G)  # C_t ⊗ dL/dy_t
            G[-1].add_(carry)
            scan_(a[1:], G[:-1], G[-1], reverse=True, chunk=chunk)  # G_t += Ā_{t+1} G_{t+1}
            torch.mul(a[0], G[0], out=carry)
            Gv = G.view(nb, N, Din)
            if need_u:
                torch.bmm(Bt[t0:t1].view(nb, 1, N), Gv, out=u[t0:t1].view(nb, 1, Din))
            if need[3]:
                torch.bmm(dx[t0:t1].view(nb, 1, Din), Gv.transpose(1, 2), out=dB[t0:t1].view(nb, 1, N))
            if need_P:
                P = a.mul_(G).mul_(h_prev)  # dL/dĀ_t Ā_t = G_t h_{t-1} Ā_t, over Ā's buffer
                if need[2]:
                    dA += torch.mul(P, delta[t0:t1].unsqueeze(2), out=G).sum((0, 1))
                if need_delta:
                    torch.sum(P.mul_(A_t), 2, out=dP[t0:t1])

        if need[0]:
            dx_ = (delta * u).transpose(0, 1)
            grads[0] = dx_ + g_y * D.to(cd) if D is not None else dx_
        if need_delta:
            d_delta = torch.addcmul(dP, xt, u)
            d_pre = torch.ops.aten.softplus_backward(d_delta, pre, 1.0, 20.0)  # exactly F.softplus's
            if need[1]:
                grads[1] = d_pre.transpose(0, 1)
            if need[7]:
                grads[7] = d_pre.sum((0, 1))
        if need[2]:
            grads[2] = dA.t()
        if need[3]:
            grads[3] = dB.transpose(0, 1)
        if need[4]:
            grads[4] = dC.transpose(0, 1)
        if need[8]:
            grads[8] = carry.transpose(1, 2)  # Ā_1 G_1
        grads = [g.to(dt_) if g is not None else None for g, dt_ in zip(grads, dtypes, strict=True)]
        return (*grads, None, None)


def selective_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h0: Tensor,
    *, block: int | None = None, chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """x, dt, z: (B, L, D_in); A: (D_in, N); B, C: (B, L, N); D, dt_bias: (D_in,); h0: (B, D_in, N).

    Returns y (B, L, D_in) in x's dtype and h_L (B, D_in, N) in h0's. Differentiable in every
    tensor argument. Tuning knobs, for tests and benchmarks: ``block``, the steps per block
    (default: sized for the device's cache); ``chunk``, the schedule of the in-block scans
    (see :func:`ssm_signal.kernels.linear_scan.scan_`; default sequential on CPU, chunked
    elsewhere; ``0`` forces sequential).
    """
    return _SelectiveScan.apply(x, dt, A, B, C, D, z, dt_bias, h0, block, chunk)
