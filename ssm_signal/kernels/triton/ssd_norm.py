"""Mamba-2's gated RMSNorm as one Triton pass forward and one backward (an optional fast path).

    out = rmsnorm(x * silu(z)) * weight, normalised over each group of ``group_size`` channels

is :class:`ssm_signal.layers.norm.RMSNormGated` (mamba_ssm's ``RMSNormGated`` with
norm_before_gate=False). The plain-PyTorch form runs about ten elementwise passes over
(B, L, d_inner) in fp32 forward and more backward; this reads x and z once and writes out once
(plus one fp32 1/rms per row and group), and the backward reads x, z, dout and writes dx, dz.

Backward, with g = x silu(z), r = 1/sqrt(mean(g^2) + eps), ĝ = g r, u = dout * weight:
    dweight = sum_rows dout ĝ,   dg = r (u - ĝ mean(u ĝ)),   dx = dg silu(z),
    dz = dg x σ(z) (1 + z (1 - σ(z))).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

ROWS = 4  # rows (b, t) per program


@triton.jit
def gated_rmsnorm_fwd_kernel(
    x_ptr, z_ptr, w_ptr, out_ptr, rstd_ptr,
    M, D, GS, eps,
    s_x, s_z, s_o,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """x, z, out: (M, D) rows with strides s_*; w: (D,). Grid: (cdiv(M, ROWS), D / GS groups)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    grp = tl.program_id(1)
    cols = grp * GS + tl.arange(0, BLOCK)
    rmask = rows < M
    cmask = tl.arange(0, BLOCK) < GS
    m = rmask[:, None] & cmask[None, :]
    r64 = rows.to(tl.int64)[:, None]
    x = tl.load(x_ptr + r64 * s_x + cols[None, :], mask=m, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + r64 * s_z + cols[None, :], mask=m, other=0.0).to(tl.float32)
    g = x * z * tl.sigmoid(z)
    rstd = 1.0 / tl.sqrt(tl.sum(g * g, axis=1) / GS + eps)
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    tl.store(out_ptr + r64 * s_o + cols[None, :], g * rstd[:, None] * w[None, :], mask=m)
    tl.store(rstd_ptr + rows.to(tl.int64) * tl.num_programs(1) + grp, rstd, mask=rmask)


@triton.jit
def gated_rmsnorm_bwd_kernel(
    x_ptr, z_ptr, w_ptr, rstd_ptr, dout_ptr, dx_ptr, dz_ptr, dw_ptr,
    M, D, GS,
    s_x, s_z, s_do, iters,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    """dx, dz: (M, D) contiguous; dw: (n_programs_0, D) fp32 partial sums.

    Each program walks ``iters`` blocks of ROWS rows so that the weight gradient is summed in
    registers before one store. Grid: (cdiv(M, ROWS iters), D / GS).
    """
    grp = tl.program_id(1)
    cols = grp * GS + tl.arange(0, BLOCK)
    cmask = tl.arange(0, BLOCK) < GS
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(iters):
        rows = (tl.program_id(0) * iters + i) * ROWS + tl.arange(0, ROWS)
        rmask = rows < M
        m = rmask[:, None] & cmask[None, :]
        r64 = rows.to(tl.int64)[:, None]
        x = tl.load(x_ptr + r64 * s_x + cols[None, :], mask=m, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + r64 * s_z + cols[None, :], mask=m, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + r64 * s_do + cols[None, :], mask=m, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows.to(tl.int64) * tl.num_programs(1) + grp, mask=rmask, other=0.0)
        sig = tl.sigmoid(z)
        g = x * z * sig
        gh = g * rstd[:, None]
        dw += tl.sum(dout * gh, axis=0)
        u = dout * w[None, :]
        dg = rstd[:, None] * (u - gh * (tl.sum(u * gh, axis=1) / GS)[:, None])
        tl.store(dx_ptr + r64 * D + cols[None, :], dg * z * sig, mask=m)
        tl.store(dz_ptr + r64 * D + cols[None, :], dg * x * sig * (1.0 + z * (1.0 - sig)), mask=m)
    tl.store(dw_ptr + tl.program_id(0).to(tl.int64) * D + cols, dw, mask=cmask)


def _rows(t: Tensor) -> Tensor:
    """(..., D) -> (M, D) with unit stride along D (a view when possible)."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


class GatedRMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, z, weight, eps, group_size):
        shape = x.shape
        x2, z2 = _rows(x), _rows(z)
        M, D = x2.shape
        out = torch.empty(M, D, device=x.device, dtype=x.dtype)
        rstd = torch.empty(M, D // group_size, device=x.device, dtype=torch.float32)
        block = triton.next_power_of_2(group_size)
        gated_rmsnorm_fwd_kernel[(triton.cdiv(M, ROWS), D // group_size)](
            x2, z2, weight, out, rstd, M, D, group_size, eps,
            x2.stride(0), z2.stride(0), out.stride(0), ROWS=ROWS, BLOCK=block, num_warps=4,
        )
        ctx.save_for_backward(x2, z2, weight, rstd)
        ctx.group_size = group_size
        ctx.shape = shape
        return out.reshape(shape)

    @staticmethod
    def backward(ctx, dout):
        x2, z2, weight, rstd = ctx.saved_tensors
        gs = ctx.group_size
        M, D = x2.shape
        do2 = _rows(dout)
        dx = torch.empty(M, D, device=x2.device, dtype=x2.dtype)
        dz = torch.empty(M, D, device=z2.device, dtype=z2.dtype)
        iters = max(1, min(64, M // (ROWS * 1024)))  # ~1k programs per group, or fewer for short inputs
        n_prog = triton.cdiv(M, ROWS * iters)
        dw = torch.empty(n_prog, D, device=x2.device, dtype=torch.float32)
        gated_rmsnorm_bwd_kernel[(n_prog, D // gs)](
            x2, z2, weight, rstd, do2, dx, dz, dw, M, D, gs,
            x2.stride(0), z2.stride(0), do2.stride(0), iters,
            ROWS=ROWS, BLOCK=triton.next_power_of_2(gs), num_warps=4,
        )
        return dx.reshape(ctx.shape), dz.reshape(ctx.shape), dw.sum(0).to(weight.dtype), None, None


def gated_rms_norm(x: Tensor, z: Tensor, weight: Tensor, eps: float = 1e-5, group_size: int | None = None) -> Tensor:
    """rmsnorm(x * silu(z)) * weight per group of ``group_size`` channels, in fp32, cast to x's dtype.

    x, z: (..., D) same shape; weight: (D,). Matches RMSNormGated(norm_before_gate=False).
    """
    D = x.shape[-1]
    gs = group_size or D
    if z.shape != x.shape or weight.shape != (D,) or D % gs:
        raise ValueError(f"gated_rms_norm: x {tuple(x.shape)}, z {tuple(z.shape)}, weight {tuple(weight.shape)} "
                         f"and group_size {gs} do not fit")
    return GatedRMSNormFn.apply(x, z, weight, float(eps), gs)
