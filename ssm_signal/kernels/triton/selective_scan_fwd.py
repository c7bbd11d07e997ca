"""The forward kernel of the Mamba-1 selective scan (:mod:`.selective_scan` has the design and the op):
y (B, L, D_in) and h_L (B, D_in, N) from h0, one program per (channel block, batch row)."""

from __future__ import annotations

import triton
import triton.language as tl

from ssm_signal.kernels.triton.elementwise import LOG2E, device_fn, softplus
from ssm_signal.kernels.triton.scan_tile import channel_params, channel_tile, load_steps


@device_fn
def _fwd_block(
    h, x_r, dt_r, z_r, y_r, B_r, C_r, s_xt, s_dtt, s_zt, s_yt, s_Bt, s_Ct,
    offs_d, offs_n, md, mn, A2, Dv, bias,
    U: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """Steps t .. t+U-1; the row pointers point at step t. Returns h (BD, NP) after them."""
    xs, pres, Bs, Cs, zs = load_steps(x_r, dt_r, z_r, B_r, C_r, s_xt, s_dtt, s_zt, s_Bt, s_Ct,
                                      offs_d, offs_n, md, mn, U, 1, HAS_Z)
    ys = ()
    for u in tl.static_range(U):
        pre = pres[u]
        if HAS_BIAS:
            pre = pre + bias
        delta = softplus(pre)
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
def fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, y_ptr, hL_ptr,
    L, Din, N,
    s_xb, s_xt, s_dtb, s_dtt, s_zb, s_zt, s_yb, s_yt, s_Bb, s_Bt, s_Cb, s_Ct,
    BD: tl.constexpr, NP: tl.constexpr, U: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, STAGES: tl.constexpr,
):
    """Grid (cdiv(D_in, BD), B). x, dt, z, y: (B, L, D_in) with unit stride over channels; B, C: (B, L, N)
    likewise; A, h0, h_L: contiguous (D_in, N) per row. Writes y and h_L."""
    b = tl.program_id(1).to(tl.int64)
    offs_d, offs_n, md, mn, mdn, dn = channel_tile(Din, N, BD, NP)

    # A in base 2, so that Ā = exp2(Δ A log2 e): one multiply and one ex2 per element
    A2 = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32) * LOG2E
    h = tl.load(h0_ptr + b * Din * N + dn, mask=mdn, other=0.0).to(tl.float32)
    Dv, bias = channel_params(D_ptr, bias_ptr, offs_d, md, HAS_D, HAS_BIAS)

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
