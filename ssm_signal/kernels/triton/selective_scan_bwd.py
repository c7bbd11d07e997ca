"""The backward kernels of the Mamba-1 selective scan (:mod:`.selective_scan` has the derivation):
``bwd_fwd_kernel`` re-runs the recurrence forwards, ``bwd_rev_kernel`` runs the adjoint backwards.

Both take grid (cdiv(D_in, BD), B) and the layouts of :func:`.selective_scan_fwd.fwd_kernel`; the
(B, L, D_in) tensors they write or pass between them (dy, dz, α, dx, ddt) are contiguous; dB, dC are
(parts, B, L, N) float32, one part per channel block or one part of atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ssm_signal.kernels.triton.elementwise import LOG2E, device_fn, softplus, softplus_and_grad
from ssm_signal.kernels.triton.scan_tile import channel_params, channel_tile, load_steps


# ---------------------------------------------------------------------------------------
# backward, forward-order half: h from h0 again; dz, dC, dD, α, dA (h part), h at segment ends
# ---------------------------------------------------------------------------------------
@device_fn
def _bwd_fwd_block(
    h, c, dA_acc, dD_acc, x_r, dt_r, z_r, dy_r, dz_r, al_r, dC_r, B_r, C_r,
    s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
    U: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
):
    """Steps t .. t+U-1 (row pointers at step t). Returns the carries h, c, dA_acc, dD_acc."""
    xs, pres, Bs, Cs, zs = load_steps(x_r, dt_r, z_r, B_r, C_r, s_xt, s_dtt, s_zt, s_Bt, s_Ct,
                                      offs_d, offs_n, md, mn, U, 1, HAS_Z)
    dys = ()
    for u in tl.static_range(U):
        dys = dys + (tl.load(dy_r + u * Din + offs_d, mask=md, other=0.0).to(tl.float32),)
    dzs = ()
    alphas = ()
    dCs = ()
    for u in tl.static_range(U):
        x = xs[u]
        dy = dys[u]
        pre = pres[u]
        if HAS_BIAS:
            pre = pre + bias
        delta = softplus(pre)
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
def bwd_fwd_kernel(
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
    offs_d, offs_n, md, mn, mdn, dn = channel_tile(Din, N, BD, NP)

    A = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    h = tl.load(h0_ptr + b * Din * N + dn, mask=mdn, other=0.0).to(tl.float32)
    Dv, bias = channel_params(D_ptr, bias_ptr, offs_d, md, HAS_D, HAS_BIAS)
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
@device_fn
def _bwd_rev_block(
    Q, R, rho, dA_acc, dbias_acc, c_end, x_r, dt_r, z_r, dy_r, al_r, dx_r, ddt_r, dB_r, B_r, C_r,
    s_xt, s_dtt, s_zt, s_Bt, s_Ct, Din, N, offs_d, offs_n, md, mn, A, A2, Dv, bias,
    U: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
):
    """Steps t, t-1, .. t-U+1, backwards (row pointers at step t). Returns the carries."""
    xs, pres, Bs, Cs, zs = load_steps(x_r, dt_r, z_r, B_r, C_r, s_xt, s_dtt, s_zt, s_Bt, s_Ct,
                                      offs_d, offs_n, md, mn, U, -1, HAS_Z)
    dys = ()
    als = ()
    for u in tl.static_range(U):
        dys = dys + (tl.load(dy_r - u * Din + offs_d, mask=md, other=0.0).to(tl.float32),)
        als = als + (tl.load(al_r - u * Din + offs_d, mask=md, other=0.0),)
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
        delta, dsp = softplus_and_grad(pre)
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
def bwd_rev_kernel(
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
    offs_d, offs_n, md, mn, mdn, dn = channel_tile(Din, N, BD, NP)

    A = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    Dv, bias = channel_params(D_ptr, bias_ptr, offs_d, md, HAS_D, HAS_BIAS)
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
