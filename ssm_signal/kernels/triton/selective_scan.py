"""Mamba-1 selective scan (S6) in Triton: forward and backward, initial and final state.

Same signature and semantics as :func:`ssm_signal.kernels.reference.selective_scan` (the
spec; symbols as in its glossary):

    Δ_t = softplus(dt_t + dt_bias)                              (B, L, D_in)
    h_t = Ā_t h_{t-1} + B̄_t x_t,  Ā_t = exp(Δ_t A),  B̄_t x_t = Δ_t B_t x_t     (B, D_in, N)
    y_t = (C_t · h_t + D x_t) * silu(z_t)

Design. One program per (batch row, block of BD channels) holds its (BD, N) slice of h in
registers, in float32, and walks time sequentially: one exp per state element per step,
the least arithmetic any formulation needs, and inputs read exactly once. Time goes in
blocks of U steps whose loads are issued together and software-pipelined
(``tl.range(num_stages=...)``). No (B, L, D_in, N) tensor is ever written.

With time sequential, parallelism is only batch x channel blocks and each step's dependent
chain is long, so the loop is latency-bound: far faster than the torch backend, yet well above
the memory floor (docs/performance.md, "Mamba-1 selective scan"). Parallelism over time (chunked
local scans plus a pass over chunk states) would lift that bound.

The backward pass is the adjoint recurrence (see :mod:`ssm_signal.kernels.selective_torch`
for the derivation), G_t = dL/dh_t = C_t gy_t + Ā_{t+1} G_{t+1}, gy = dL/d(C·h), which
runs backwards in time, while dC and dz need h_t, which runs forwards. The only term
needing both at one step is r_t = G_t Ā_t h_{t-1} (= dL/d log Ā_t), which feeds dΔ and dA.
It telescopes: with q_t = C_t gy_t h_t − G_t B̄_t x_t,

    r_t = q_t + r_{t+1},   so   r_t = Σ_{s=t}^{t1-1} q_s + r_{t1}   (r_{t1} = Ā_{t1} G_{t1} h_{t1-1})

and q splits into a part that needs only h (forward order) and one that needs only G
(reverse order). Because A does not depend on t, the reductions the gradients need
commute with the time sums:

    Σ_n A r_t      = Σ_{s≥t} (α_s − β_s) + Σ_n A r_{t1},  α_s = gy_s Σ_n A C_s h_s,  β_s = Δ_s x_s Σ_n A G_s B_s
    Σ_t Δ_t r_t    = Σ_s c_s q_s + c_{t1-1} r_{t1},       c_s = Σ_{t0≤t≤s} Δ_t  (per segment)

So the backward is two sequential kernels: ``_bwd_fwd_kernel`` re-runs the recurrence
forwards from h0 and emits dz, dC, dD, α (one float32 (B, L, D_in) tensor) and its half
of dA; ``_bwd_rev_kernel`` runs G backwards and emits dx, ddt, dB, ddt_bias, dh0 and the
other half of dA. Time is cut into segments of K steps at whose ends the forward-order
kernel stores h (B, L/K, D_in, N: N/K of one input tensor); the reverse kernel restarts
the telescoped sums from the exact r there, which keeps their rounding error bounded by
K steps rather than L.

Arithmetic is float32 for float32/bf16/fp16 inputs; y is returned in x's dtype, h_L in
h0's; gradients in each input's dtype. Float64 inputs are served by the torch backend
(Triton's float64 is not what a GPU is fast at, and the torch backend keeps float64).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from ssm_signal.kernels.triton._interpret import interpreting

LOG2E = tl.constexpr(1.4426950408889634)  # a constexpr: kernels may read it


# ---------------------------------------------------------------------------------------
# elementwise helpers
# ---------------------------------------------------------------------------------------
def _softplus_body(v):
    """F.softplus(v) with its threshold 20, written as max(v, 0) + log1p(exp(-|v|))."""
    e = tl.exp(-tl.abs(v))
    log1p_e = tl.where(e < 1e-4, e * (1.0 - 0.5 * e), tl.log(1.0 + e))
    return tl.where(v > 20.0, v, tl.maximum(v, 0.0) + log1p_e)


def _softplus_and_grad_body(v):
    """softplus(v) and its derivative sigmoid(v) (exactly 1 above the threshold, as torch),
    sharing one exp: three special-function instructions instead of four."""
    e = tl.exp(-tl.abs(v))
    log1p_e = tl.where(e < 1e-4, e * (1.0 - 0.5 * e), tl.log(1.0 + e))
    r = 1.0 / (1.0 + e)
    sig = tl.where(v >= 0.0, r, e * r)
    return tl.where(v > 20.0, v, tl.maximum(v, 0.0) + log1p_e), tl.where(v > 20.0, 1.0, sig)


# Under the interpreter every call of a @triton.jit helper re-patches the language (about
# 5 ms, per step of every program); there the kernels call the plain functions instead,
# which the interpreter runs as ordinary Python on its tensors.
if interpreting():
    _softplus, _softplus_and_grad = _softplus_body, _softplus_and_grad_body
else:
    _softplus, _softplus_and_grad = triton.jit(_softplus_body), triton.jit(_softplus_and_grad_body)


def _device_fn(fn):
    """A helper the kernels call: @triton.jit on the GPU, plain Python under the interpreter."""
    return fn if interpreting() else triton.jit(fn)


# Each kernel walks time in blocks of U steps (U a launch constant, then single steps for the
# rest). A block issues the loads of all U steps first, runs the recurrence, and stores last:
# with no store between them the loads go out together, and the work of a step that is not on
# the recurrence's chain (softplus, the reductions, the gate) overlaps the next steps' work.


# ---------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------
@_device_fn
def _fwd_block(
    h, x_r, dt_r, z_r, y_r, B_r, C_r, s_xt, s_dtt, s_zt, s_yt, s_Bt, s_Ct,
    offs_d, offs_n, md, mn, A2, Dv, bias,
    U: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """Steps t .. t+U-1; the row pointers point at step t. Returns h after them."""
    xs = ()
    pres = ()
    Bs = ()
    Cs = ()
    zs = ()
    for u in tl.static_range(U):
        xs = xs + (tl.load(x_r + u * s_xt + offs_d, mask=md, other=0.0).to(tl.float32),)
        pres = pres + (tl.load(dt_r + u * s_dtt + offs_d, mask=md, other=0.0).to(tl.float32),)
        Bs = Bs + (tl.load(B_r + u * s_Bt + offs_n, mask=mn, other=0.0).to(tl.float32),)
        Cs = Cs + (tl.load(C_r + u * s_Ct + offs_n, mask=mn, other=0.0).to(tl.float32),)
        if HAS_Z:
            zs = zs + (tl.load(z_r + u * s_zt + offs_d, mask=md, other=0.0).to(tl.float32),)
    ys = ()
    for u in tl.static_range(U):
        pre = pres[u]
        if HAS_BIAS:
            pre = pre + bias
        delta = _softplus(pre)
        h = tl.exp2(delta[:, None] * A2) * h + (delta * xs[u])[:, None] * Bs[u][None, :]
        y = tl.sum(h * Cs[u][None, :], axis=1)
        if HAS_D:
            y += Dv * xs[u]
        if HAS_Z:
            y *= zs[u] * tl.sigmoid(zs[u])
        ys = ys + (y,)
    for u in tl.static_range(U):
        tl.store(y_r + u * s_yt + offs_d, ys[u].to(y_r.dtype.element_ty), mask=md)
    return h


@triton.jit
def _fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, y_ptr, hL_ptr,
    L, Din, N,
    s_xb, s_xt, s_dtb, s_dtt, s_zb, s_zt, s_yb, s_yt, s_Bb, s_Bt, s_Cb, s_Ct,
    BD: tl.constexpr, NP: tl.constexpr, U: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, STAGES: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    md = offs_d < Din
    mn = offs_n < N
    mdn = md[:, None] & mn[None, :]
    dn = offs_d[:, None] * N + offs_n[None, :]  # A, h0, h_L are contiguous (D_in, N) per row

    # A in base 2, so that Ā = exp2(Δ A log2 e): one multiply and one ex2 per element
    A2 = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32) * LOG2E
    h = tl.load(h0_ptr + b * Din * N + dn, mask=mdn, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32) if HAS_D else None
    bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32) if HAS_BIAS else None

    # scalar pointers to the current time step's rows: carrying one pointer per element
    # through the loop would cost two registers per element
    x_r = x_ptr + b * s_xb
    dt_r = dt_ptr + b * s_dtb
    z_r = z_ptr + b * s_zb if HAS_Z else z_ptr
    y_r = y_ptr + b * s_yb
    B_r = B_ptr + b * s_Bb
    C_r = C_ptr + b * s_Cb
    L_full = (L // U) * U
    for _t in tl.range(0, L_full, U, num_stages=STAGES):
        h = _fwd_block(h, x_r, dt_r, z_r, y_r, B_r, C_r, s_xt, s_dtt, s_zt, s_yt, s_Bt, s_Ct,
                       offs_d, offs_n, md, mn, A2, Dv, bias, U, HAS_D, HAS_Z, HAS_BIAS)
        x_r += U * s_xt
        dt_r += U * s_dtt
        if HAS_Z:
            z_r += U * s_zt
        y_r += U * s_yt
        B_r += U * s_Bt
        C_r += U * s_Ct
    for _t in tl.range(L_full, L):
        h = _fwd_block(h, x_r, dt_r, z_r, y_r, B_r, C_r, s_xt, s_dtt, s_zt, s_yt, s_Bt, s_Ct,
                       offs_d, offs_n, md, mn, A2, Dv, bias, 1, HAS_D, HAS_Z, HAS_BIAS)
        x_r += s_xt
        dt_r += s_dtt
        if HAS_Z:
            z_r += s_zt
        y_r += s_yt
        B_r += s_Bt
        C_r += s_Ct
    tl.store(hL_ptr + b * Din * N + dn, h.to(hL_ptr.dtype.element_ty), mask=mdn)


# ---------------------------------------------------------------------------------------
# backward, forward-order half: h from h0 again; dz, dC, dD, α, dA (h part), h at segment ends
# ---------------------------------------------------------------------------------------
@_device_fn
def _bwd_fwd_block(
    h, c, dA_acc, dD_acc, x_r, dt_r, z_r, dy_r, dz_r, al_r, dC_r, B_r, C_r,
    s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
    U: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
):
    """Steps t .. t+U-1 (row pointers at step t). Returns the carries h, c, dA_acc, dD_acc."""
    xs = ()
    pres = ()
    dys = ()
    Bs = ()
    Cs = ()
    zs = ()
    for u in tl.static_range(U):
        xs = xs + (tl.load(x_r + u * s_xt + offs_d, mask=md, other=0.0).to(tl.float32),)
        pres = pres + (tl.load(dt_r + u * s_dtt + offs_d, mask=md, other=0.0).to(tl.float32),)
        dys = dys + (tl.load(dy_r + u * Din + offs_d, mask=md, other=0.0).to(tl.float32),)
        Bs = Bs + (tl.load(B_r + u * s_Bt + offs_n, mask=mn, other=0.0).to(tl.float32),)
        Cs = Cs + (tl.load(C_r + u * s_Ct + offs_n, mask=mn, other=0.0).to(tl.float32),)
        if HAS_Z:
            zs = zs + (tl.load(z_r + u * s_zt + offs_d, mask=md, other=0.0).to(tl.float32),)
    dzs = ()
    alphas = ()
    dCs = ()
    for u in tl.static_range(U):
        x = xs[u]
        dy = dys[u]
        pre = pres[u]
        if HAS_BIAS:
            pre = pre + bias
        delta = _softplus(pre)
        h = tl.exp2(delta[:, None] * A2) * h + (delta * x)[:, None] * Bs[u][None, :]
        p = h * Cs[u][None, :]
        if HAS_Z:
            z = zs[u]
            y_pre = tl.sum(p, axis=1)
            if HAS_D:
                y_pre += Dv * x
            sz = tl.sigmoid(z)
            dzs = dzs + (dy * y_pre * sz * (1.0 + z * (1.0 - sz)),)
            gy = dy * z * sz
        else:
            gy = dy
        c += delta
        alphas = alphas + (gy * tl.sum(p * A, axis=1),)
        dA_acc += (c * gy)[:, None] * p
        dD_acc += gy * x
        dCs = dCs + (tl.sum(gy[:, None] * h, axis=0),)
    for u in tl.static_range(U):
        if HAS_Z:
            tl.store(dz_r + u * Din + offs_d, dzs[u].to(dz_r.dtype.element_ty), mask=md)
        tl.store(al_r + u * Din + offs_d, alphas[u], mask=md)
        if ATOMIC:
            tl.atomic_add(dC_r + u * N + offs_n, dCs[u], mask=mn, sem="relaxed")
        else:
            tl.store(dC_r + u * N + offs_n, dCs[u], mask=mn)
    return h, c, dA_acc, dD_acc


@triton.jit
def _bwd_fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, dy_ptr,
    dz_ptr, alpha_ptr, dC_ptr, dA_ptr, dD_ptr, hseg_ptr, dseg_ptr,
    L, Din, N, K, n_seg, s_dC_part,
    s_xb, s_xt, s_dtb, s_dtt, s_zb, s_zt, s_Bb, s_Bt, s_Cb, s_Ct,
    BD: tl.constexpr, NP: tl.constexpr, U: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    ATOMIC: tl.constexpr, STAGES: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    md = offs_d < Din
    mn = offs_n < N
    mdn = md[:, None] & mn[None, :]
    dn = offs_d[:, None] * N + offs_n[None, :]

    A = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    h = tl.load(h0_ptr + b * Din * N + dn, mask=mdn, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32) if HAS_D else None
    bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32) if HAS_BIAS else None
    dA_acc = tl.zeros((BD, NP), dtype=tl.float32)  # Σ_s c_s gy_s C_s h_s
    dD_acc = tl.zeros((BD,), dtype=tl.float32)

    # (B, L, D_in) tensors written here are contiguous
    row = b * L * Din
    x_r = x_ptr + b * s_xb
    dt_r = dt_ptr + b * s_dtb
    z_r = z_ptr + b * s_zb if HAS_Z else z_ptr
    dz_r = dz_ptr + row if HAS_Z else dz_ptr
    dy_r = dy_ptr + row
    al_r = alpha_ptr + row
    B_r = B_ptr + b * s_Bb
    C_r = C_ptr + b * s_Cb
    dC_r = dC_ptr + pid_d.to(tl.int64) * s_dC_part + b * L * N
    for j in range(0, n_seg):
        t0 = j * K
        n = tl.minimum(t0 + K, L) - t0
        n_full = (n // U) * U
        c = tl.zeros((BD,), dtype=tl.float32)  # Σ Δ since the segment start
        for _t in tl.range(0, n_full, U, num_stages=STAGES):
            h, c, dA_acc, dD_acc = _bwd_fwd_block(
                h, c, dA_acc, dD_acc, x_r, dt_r, z_r, dy_r, dz_r, al_r, dC_r, B_r, C_r,
                s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
                U, HAS_D, HAS_Z, HAS_BIAS, ATOMIC)
            x_r += U * s_xt
            dt_r += U * s_dtt
            if HAS_Z:
                z_r += U * s_zt
                dz_r += U * Din
            dy_r += U * Din
            al_r += U * Din
            B_r += U * s_Bt
            C_r += U * s_Ct
            dC_r += U * N
        for _t in tl.range(n_full, n):
            h, c, dA_acc, dD_acc = _bwd_fwd_block(
                h, c, dA_acc, dD_acc, x_r, dt_r, z_r, dy_r, dz_r, al_r, dC_r, B_r, C_r,
                s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
                1, HAS_D, HAS_Z, HAS_BIAS, ATOMIC)
            x_r += s_xt
            dt_r += s_dtt
            if HAS_Z:
                z_r += s_zt
                dz_r += Din
            dy_r += Din
            al_r += Din
            B_r += s_Bt
            C_r += s_Ct
            dC_r += N
        seg = b * n_seg + j
        tl.store(hseg_ptr + seg * Din * N + dn, h, mask=mdn)
        tl.store(dseg_ptr + seg * Din + offs_d, c, mask=md)
    tl.store(dA_ptr + b * Din * N + dn, dA_acc, mask=mdn)
    if HAS_D:
        tl.store(dD_ptr + b * Din + offs_d, dD_acc, mask=md)


# ---------------------------------------------------------------------------------------
# backward, reverse-order half: G from dL/dh_L; dx, ddt, dB, ddt_bias, dh0, dA (G part)
# ---------------------------------------------------------------------------------------
@_device_fn
def _bwd_rev_block(
    Q, R, rho, dA_acc, dbias_acc, c_end, x_r, dt_r, z_r, dy_r, al_r, dx_r, ddt_r, dB_r, B_r, C_r,
    s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
    U: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
):
    """Steps t, t-1, .. t-U+1, backwards (row pointers at step t). Returns the carries."""
    xs = ()
    pres = ()
    dys = ()
    als = ()
    Bs = ()
    Cs = ()
    zs = ()
    for u in tl.static_range(U):
        xs = xs + (tl.load(x_r - u * s_xt + offs_d, mask=md, other=0.0).to(tl.float32),)
        pres = pres + (tl.load(dt_r - u * s_dtt + offs_d, mask=md, other=0.0).to(tl.float32),)
        dys = dys + (tl.load(dy_r - u * Din + offs_d, mask=md, other=0.0).to(tl.float32),)
        als = als + (tl.load(al_r - u * Din + offs_d, mask=md, other=0.0),)
        Bs = Bs + (tl.load(B_r - u * s_Bt + offs_n, mask=mn, other=0.0).to(tl.float32),)
        Cs = Cs + (tl.load(C_r - u * s_Ct + offs_n, mask=mn, other=0.0).to(tl.float32),)
        if HAS_Z:
            zs = zs + (tl.load(z_r - u * s_zt + offs_d, mask=md, other=0.0).to(tl.float32),)
    dxs = ()
    ddts = ()
    dBs = ()
    for u in tl.static_range(U):
        x = xs[u]
        gy = dys[u]
        pre = pres[u]
        if HAS_BIAS:
            pre = pre + bias
        if HAS_Z:
            gy = gy * zs[u] * tl.sigmoid(zs[u])
        delta, dsp = _softplus_and_grad(pre)
        dx_ = delta * x
        G = Cs[u][None, :] * gy[:, None] + Q  # dL/dh_t
        q = G * Bs[u][None, :]
        gB = tl.sum(q, axis=1)  # Σ_n G B
        R += als[u] - dx_ * tl.sum(q * A, axis=1)  # α_t − β_t
        ddt = (x * gB + R) * dsp  # dL/dΔ through softplus
        ddts = ddts + (ddt,)
        dbias_acc += ddt
        dxv = delta * gB
        if HAS_D:
            dxv += Dv * gy
        dxs = dxs + (dxv,)
        dBs = dBs + (tl.sum(G * dx_[:, None], axis=0),)
        dA_acc -= ((c_end - rho) * dx_)[:, None] * q  # c_t = Σ Δ from the segment start to t
        rho += delta
        Q = tl.exp2(delta[:, None] * A2) * G
    for u in tl.static_range(U):
        tl.store(dx_r - u * Din + offs_d, dxs[u].to(dx_r.dtype.element_ty), mask=md)
        tl.store(ddt_r - u * Din + offs_d, ddts[u].to(ddt_r.dtype.element_ty), mask=md)
        if ATOMIC:
            tl.atomic_add(dB_r - u * N + offs_n, dBs[u], mask=mn, sem="relaxed")
        else:
            tl.store(dB_r - u * N + offs_n, dBs[u], mask=mn)
    return Q, R, rho, dA_acc, dbias_acc


@triton.jit
def _bwd_rev_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dy_ptr, alpha_ptr, hseg_ptr, dseg_ptr, ghL_ptr,
    dx_ptr, ddt_ptr, dB_ptr, dA_ptr, dbias_ptr, dh0_ptr,
    L, Din, N, K, n_seg, s_dB_part,
    s_xb, s_xt, s_dtb, s_dtt, s_zb, s_zt, s_Bb, s_Bt, s_Cb, s_Ct,
    BD: tl.constexpr, NP: tl.constexpr, U: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    ATOMIC: tl.constexpr, STAGES: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    md = offs_d < Din
    mn = offs_n < N
    mdn = md[:, None] & mn[None, :]
    dn = offs_d[:, None] * N + offs_n[None, :]

    A = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32) if HAS_D else None
    bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32) if HAS_BIAS else None
    # Q = Ā_{t+1} G_{t+1}, what flows into h_t from later steps; dL/dh_L at the end
    Q = tl.load(ghL_ptr + b * Din * N + dn, mask=mdn, other=0.0).to(tl.float32)
    dA_acc = tl.zeros((BD, NP), dtype=tl.float32)
    dbias_acc = tl.zeros((BD,), dtype=tl.float32)

    # pointers at the last step, walked backwards
    last = L - 1
    row = b * L * Din + last * Din
    x_r = x_ptr + b * s_xb + last * s_xt
    dt_r = dt_ptr + b * s_dtb + last * s_dtt
    z_r = z_ptr + b * s_zb + last * s_zt if HAS_Z else z_ptr
    dy_r = dy_ptr + row
    al_r = alpha_ptr + row
    dx_r = dx_ptr + row
    ddt_r = ddt_ptr + row
    B_r = B_ptr + b * s_Bb + last * s_Bt
    C_r = C_ptr + b * s_Cb + last * s_Ct
    dB_r = dB_ptr + pid_d.to(tl.int64) * s_dB_part + b * L * N + last * N
    for jj in range(0, n_seg):
        j = n_seg - 1 - jj
        t0 = j * K
        n = tl.minimum(t0 + K, L) - t0
        n_full = (n // U) * U
        seg = b * n_seg + j
        h_end = tl.load(hseg_ptr + seg * Din * N + dn, mask=mdn, other=0.0)
        c_end = tl.load(dseg_ptr + seg * Din + offs_d, mask=md, other=0.0)
        r_end = Q * h_end  # r_{t1} = Ā_{t1} G_{t1} h_{t1-1}, exact
        R = tl.sum(r_end * A, axis=1)  # Σ_n A r_t, restarted exactly at each segment end
        dA_acc += c_end[:, None] * r_end
        rho = tl.zeros((BD,), dtype=tl.float32)  # Σ Δ after step t within the segment
        for _i in tl.range(0, n_full, U, num_stages=STAGES):
            Q, R, rho, dA_acc, dbias_acc = _bwd_rev_block(
                Q, R, rho, dA_acc, dbias_acc, c_end, x_r, dt_r, z_r, dy_r, al_r, dx_r, ddt_r, dB_r, B_r, C_r,
                s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
                U, HAS_D, HAS_Z, HAS_BIAS, ATOMIC)
            x_r -= U * s_xt
            dt_r -= U * s_dtt
            if HAS_Z:
                z_r -= U * s_zt
            dy_r -= U * Din
            al_r -= U * Din
            dx_r -= U * Din
            ddt_r -= U * Din
            B_r -= U * s_Bt
            C_r -= U * s_Ct
            dB_r -= U * N
        for _i in tl.range(n_full, n):
            Q, R, rho, dA_acc, dbias_acc = _bwd_rev_block(
                Q, R, rho, dA_acc, dbias_acc, c_end, x_r, dt_r, z_r, dy_r, al_r, dx_r, ddt_r, dB_r, B_r, C_r,
                s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
                1, HAS_D, HAS_Z, HAS_BIAS, ATOMIC)
            x_r -= s_xt
            dt_r -= s_dtt
            if HAS_Z:
                z_r -= s_zt
            dy_r -= Din
            al_r -= Din
            dx_r -= Din
            ddt_r -= Din
            B_r -= s_Bt
            C_r -= s_Ct
            dB_r -= N
    tl.store(dh0_ptr + b * Din * N + dn, Q, mask=mdn)
    tl.store(dA_ptr + b * Din * N + dn, dA_acc, mask=mdn)
    if HAS_BIAS:
        tl.store(dbias_ptr + b * Din + offs_d, dbias_acc, mask=md)


# ---------------------------------------------------------------------------------------
# launch configuration
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """Launch knobs. ``block_d``: channels per program (BD); ``num_warps``; ``unroll``: U, the
    time steps per block of the loop; ``stages``: the software-pipelining depth of that loop;
    ``segment``: K, the steps between the states the backward keeps; ``atomic``: reduce dB/dC
    across channel blocks with float32 atomics (summation order not fixed) instead of
    per-block partials summed afterwards."""

    block_d: int
    num_warps: int
    stages: int = 3
    segment: int = 256
    atomic: bool = False
    unroll: int = 4


# The launch policy by state size (d_state <= 32, larger): warps per program, state elements
# per thread, unroll U, pipelining stages. Chosen by the sweep in benchmarks/bench_gpu_scan.py
# (numbers in benchmarks/notes/triton_scan.md).
POLICY = {
    "small_state": dict(num_warps=1, per_thread=4, unroll=4, stages=2),
    "large_state": dict(num_warps=1, per_thread=16, unroll=1, stages=3),
}


def default_config(
    batch: int, d_inner: int, d_state: int, device: torch.device, *,
    num_warps: int | None = None, per_thread: int | None = None, unroll: int | None = None,
    stages: int | None = None,
) -> ScanConfig:
    """The launch policy for this state size (overridable), with channel blocks narrowed until
    there are enough programs for every SM: parallelism is batch x channel blocks only, since
    time is walked sequentially. Few warps per program keep the reductions over channels
    (dB, dC) inside a warp."""
    n_p = triton.next_power_of_2(d_state)
    pol = dict(POLICY["small_state" if n_p <= 32 else "large_state"])
    for k, v in (("num_warps", num_warps), ("per_thread", per_thread), ("unroll", unroll), ("stages", stages)):
        if v is not None:
            pol[k] = v
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    block_d = min(triton.next_power_of_2(d_inner), max(4, pol["per_thread"] * 32 * pol["num_warps"] // n_p))
    while block_d > 4 and batch * math.ceil(d_inner / block_d) < 2 * sms:
        block_d //= 2
    # per-block partials of dB, dC cost n_blocks x (B, L, N) of traffic; atomics cost L2 work only
    atomic = math.ceil(d_inner / block_d) > 2
    return ScanConfig(block_d=block_d, num_warps=pol["num_warps"], stages=pol["stages"], atomic=atomic,
                      unroll=pol["unroll"])


# ---------------------------------------------------------------------------------------
# autograd wrapper
# ---------------------------------------------------------------------------------------
def _last_dim_contiguous(t: Tensor | None) -> Tensor | None:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _bt_strides(t: Tensor | None) -> tuple[int, int]:
    return (0, 0) if t is None else (t.stride(0), t.stride(1))


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, h0, cfg: ScanConfig):
        x, dt, B, C, z = (_last_dim_contiguous(t) for t in (x, dt, B, C, z))
        A, h0 = A.contiguous(), h0.contiguous()
        Bsz, L, Din = x.shape
        N = A.shape[1]
        y = torch.empty((Bsz, L, Din), dtype=x.dtype, device=x.device)
        hL = torch.empty_like(h0)
        grid = (triton.cdiv(Din, cfg.block_d), Bsz)
        _fwd_kernel[grid](
            x, dt, A, B, C, D, z, dt_bias, h0, y, hL,
            L, Din, N,
            *_bt_strides(x), *_bt_strides(dt), *_bt_strides(z), *_bt_strides(y), *_bt_strides(B), *_bt_strides(C),
            BD=cfg.block_d, NP=triton.next_power_of_2(N), U=cfg.unroll,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, STAGES=cfg.stages,
            num_warps=cfg.num_warps,
        )
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, h0)
        ctx.cfg = cfg
        return y, hL

    @staticmethod
    def backward(ctx, g_y, g_hL):
        x, dt, A, B, C, D, z, dt_bias, h0 = ctx.saved_tensors
        cfg: ScanConfig = ctx.cfg
        Bsz, L, Din = x.shape
        N = A.shape[1]
        dev = x.device
        f32 = dict(dtype=torch.float32, device=dev)
        g_y = torch.zeros_like(x) if g_y is None else g_y.contiguous()
        g_hL = torch.zeros(h0.shape, **f32) if g_hL is None else g_hL.contiguous()
        n_db = triton.cdiv(Din, cfg.block_d)
        K = max(1, min(cfg.segment, L))
        n_seg = triton.cdiv(L, K)
        NP = triton.next_power_of_2(N)
        flags = dict(BD=cfg.block_d, NP=NP, U=cfg.unroll, HAS_D=D is not None, HAS_Z=z is not None,
                     HAS_BIAS=dt_bias is not None, ATOMIC=cfg.atomic, STAGES=cfg.stages)
        strides = (*_bt_strides(x), *_bt_strides(dt), *_bt_strides(z), *_bt_strides(B), *_bt_strides(C))

        dz = torch.empty((Bsz, L, Din), dtype=z.dtype, device=dev) if z is not None else None
        alpha = torch.empty((Bsz, L, Din), **f32)
        # dB, dC: per channel block partials (summed below) or one buffer of atomics
        parts = 1 if cfg.atomic else n_db
        alloc = torch.zeros if cfg.atomic else torch.empty
        dC = alloc((parts, Bsz, L, N), **f32)
        dB = alloc((parts, Bsz, L, N), **f32)
        s_part = 0 if cfg.atomic else Bsz * L * N
        dA1 = torch.empty((Bsz, Din, N), **f32)
        dA2 = torch.empty((Bsz, Din, N), **f32)
        dDp = torch.empty((Bsz, Din), **f32) if D is not None else None
        dbp = torch.empty((Bsz, Din), **f32) if dt_bias is not None else None
        hseg = torch.empty((Bsz, n_seg, Din, N), **f32)
        dseg = torch.empty((Bsz, n_seg, Din), **f32)
        grid = (n_db, Bsz)
        _bwd_fwd_kernel[grid](
            x, dt, A, B, C, D, z, dt_bias, h0, g_y,
            dz, alpha, dC, dA1, dDp, hseg, dseg,
            L, Din, N, K, n_seg, s_part, *strides, **flags, num_warps=cfg.num_warps,
        )
        dx = torch.empty((Bsz, L, Din), dtype=x.dtype, device=dev)
        ddt = torch.empty((Bsz, L, Din), dtype=dt.dtype, device=dev)
        dh0 = torch.empty(h0.shape, **f32)
        _bwd_rev_kernel[grid](
            x, dt, A, B, C, D, z, dt_bias, g_y, alpha, hseg, dseg, g_hL,
            dx, ddt, dB, dA2, dbp, dh0,
            L, Din, N, K, n_seg, s_part, *strides, **flags, num_warps=cfg.num_warps,
        )
        need = ctx.needs_input_grad
        grads = [
            dx,
            ddt,
            (dA1.sum(0) + dA2.sum(0)).to(A.dtype) if need[2] else None,
            dB.sum(0).to(B.dtype) if need[3] else None,
            dC.sum(0).to(C.dtype) if need[4] else None,
            dDp.sum(0).to(D.dtype) if D is not None and need[5] else None,
            dz,
            dbp.sum(0).to(dt_bias.dtype) if dt_bias is not None and need[7] else None,
            dh0.to(h0.dtype) if need[8] else None,
        ]
        grads = [g if n else None for g, n in zip(grads, need[:9], strict=True)]
        return (*grads, None)


# ---------------------------------------------------------------------------------------
# public op
# ---------------------------------------------------------------------------------------
def check_scan_inputs(x, dt, A, B, C, D, z, dt_bias, h0) -> None:
    """Clear errors for inputs that do not fit the selective-scan contract."""
    if x.dim() != 3:
        raise ValueError(f"selective_scan: x must be (B, L, D_in), got {tuple(x.shape)}")
    Bsz, L, Din = x.shape
    if A.dim() != 2 or A.shape[0] != Din:
        raise ValueError(f"selective_scan: A must be (D_in={Din}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    expect = {"dt": (dt, (Bsz, L, Din)), "B": (B, (Bsz, L, N)), "C": (C, (Bsz, L, N)),
              "h0": (h0, (Bsz, Din, N)), "z": (z, (Bsz, L, Din)), "D": (D, (Din,)), "dt_bias": (dt_bias, (Din,))}
    for name, (t, shape) in expect.items():
        if t is None:
            continue
        if tuple(t.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape}, got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"selective_scan: {name} is on {t.device}, x on {x.device}")
        if not t.is_floating_point():
            raise ValueError(f"selective_scan: {name} must be floating point, got {t.dtype}")
    if L < 1 or Bsz < 1:
        raise ValueError(f"selective_scan: need batch >= 1 and length >= 1, got {tuple(x.shape)}")


def selective_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h0: Tensor, *, config: ScanConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """x, dt, z: (B, L, D_in); A: (D_in, N); B, C: (B, L, N); D, dt_bias: (D_in,); h0: (B, D_in, N).

    Returns y (B, L, D_in) in x's dtype and h_L (B, D_in, N) in h0's, differentiable in every
    tensor argument. ``config`` overrides the launch knobs (tests and benchmarks).
    """
    check_scan_inputs(x, dt, A, B, C, D, z, dt_bias, h0)
    if any(t is not None and t.dtype == torch.float64 for t in (x, dt, A, B, C, D, z, dt_bias, h0)):
        from ssm_signal.kernels.selective_torch import selective_scan as torch_scan

        return torch_scan(x, dt, A, B, C, D, z, dt_bias, h0)
    cfg = config or default_config(x.shape[0], x.shape[2], A.shape[1], x.device)
    return _SelectiveScanFn.apply(x, dt, A, B, C, D, z, dt_bias, h0, cfg)
