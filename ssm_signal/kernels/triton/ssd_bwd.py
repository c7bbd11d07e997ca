"""Backward Triton kernels of the chunked SSD scan (notation of :mod:`ssm_signal.kernels.triton.ssd_fwd`).

Given dy (Bz, L, H, P) and dh_L (Bz, H, P, N), with xd_s = δ_s x_s, M_ls = (C_l · B_s) exp(Λ_l - Λ_s):

    dE_c   = sum_l exp(Λ_l) dy_l ⊗ C_l  +  exp(Λ^c_{Q-1}) dE_{c+1},   dE_{n_c} = dh_L,  dh0 = dE_0
    dS_c   = dE_{c+1}                                                  (gradient of the chunk state)
    dxd_s  = exp(Λ_{Q-1} - Λ_s) dS_c B_s + sum_{l>=s} M_ls dy_l
    dB_s   = exp(Λ_{Q-1} - Λ_s) dS_c^T xd_s + sum_{l>=s} (dy_l · xd_s) exp(Λ_l - Λ_s) C_l      (summed over the heads of a group)
    dC_l   = exp(Λ_l) dy_l E_c + sum_{s<=l} (dy_l · xd_s) exp(Λ_l - Λ_s) B_s
    dx_s   = δ_s dxd_s + D dy_s,     dD = sum dy · x
    dΛ     : with R_ls = (dy_l · xd_s) M_ls, dΛ_l += sum_s R_ls and dΛ_s -= sum_l R_ls (diagonal blocks);
             dΛ_l += exp(Λ_l) (dy_l E_c) · C_l (off-diagonal); with w_s = exp(Λ_{Q-1} - Λ_s) xd_s · (dS_c B_s),
             dΛ_s -= w_s and dΛ_{Q-1} += sum_s w_s (chunk state); dΛ_{Q-1} += exp(Λ_{Q-1}) <E_c, dE_{c+1}>
             (state passing)
    da_k   = sum_{l>=k} dΛ_l (Λ is a cumsum of a = δ A),  dδ = x · dxd + A da,  ddt = dδ σ(dt + dt_bias),
    dA = sum δ da,  ddt_bias = sum ddt

Most of these dΛ terms cancel in da (every R_ls with s >= k drops out of da_k, and so does every
w_s with s >= k): each cancelling pair is therefore summed from the SAME fp32 values, computed once
in ``bwd_dx_db_kernel``, never from two separately rounded tf32/bf16 products (which left dA and
ddt_bias with percent-level errors).

Kernels (launched by :mod:`ssm_signal.kernels.triton.ssd`; the dE_c readout reuses the forward's
``chunk_state_kernel`` with WEIGHT 1):
    ``state_pass_bwd_kernel``  the reverse recurrence over chunks: dS_c, dh0 and dΛ_{Q-1}
    ``bwd_dx_db_kernel``       per block of source steps s: dx, x · dxd, dΛ_s terms and dB (heads of a group summed)
    ``bwd_dc_kernel``          per block of target steps l: dC (heads of a group summed) and dΛ_l terms
    ``dt_bwd_kernel``          reverse cumsum to da, then ddt and the per-chunk partial sums of dA and ddt_bias
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def state_pass_bwd_kernel(
    G_ptr, E_ptr, lam_ptr, dhL_ptr, dh0_ptr, glast_ptr,
    H, P, N, Q, nc,
    s_dh_b, s_dh_h, s_dh_p, s_dh_n,
    HAS_DHL: tl.constexpr, BLOCK: tl.constexpr,
):
    """Reverse recurrence: dE_c = G_c + exp(Λ^c_{Q-1}) dE_{c+1} from dE_{n_c} = dh_L, in place.

    G: (Bz, H, n_c, P, N) fp32, on entry the readout gradient sum_l exp(Λ_l) dy_l ⊗ C_l of each chunk,
    on exit dS_c = dE_{c+1}. E: (Bz, H, n_c + 1, P, N) fp32 forward states. dh0: (Bz, H, P, N) fp32.
    glast: (Bz H, n_c, n_blocks) fp32 partial sums of exp(Λ^c_{Q-1}) <E_c, dE_{c+1}>, the state-passing
    part of the gradient of Λ^c_{Q-1}.
    Grid: (n_blocks = cdiv(P N, BLOCK), Bz H).
    """
    pid_blk = tl.program_id(0)
    n_blk = tl.num_programs(0)
    pid = tl.program_id(1).to(tl.int64)
    b = pid // H
    h = pid % H
    offs = pid_blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < P * N
    if HAS_DHL:
        p = offs // N
        n = offs % N
        dh = tl.load(dhL_ptr + b * s_dh_b + h * s_dh_h + p * s_dh_p + n * s_dh_n, mask=mask, other=0.0)
        dh = dh.to(tl.float32)
    else:
        dh = tl.zeros((BLOCK,), dtype=tl.float32)
    G_base = G_ptr + pid * nc * P * N + offs
    E_base = E_ptr + pid * (nc + 1) * P * N + offs
    lam_last = lam_ptr + pid * nc * Q + Q - 1
    for i in range(nc):
        c = nc - 1 - i
        decay = tl.exp(tl.load(lam_last + c * Q))
        E_c = tl.load(E_base + c * P * N, mask=mask, other=0.0)
        tl.store(glast_ptr + (pid * nc + c) * n_blk + pid_blk, decay * tl.sum(E_c * dh, axis=0))
        gy = tl.load(G_base + c * P * N, mask=mask, other=0.0)
        tl.store(G_base + c * P * N, dh, mask=mask)
        dh = decay * dh + gy
    tl.store(dh0_ptr + pid * P * N + offs, dh, mask=mask)


@triton.jit
def bwd_dx_db_kernel(
    x_ptr, B_ptr, C_ptr, D_ptr, dy_ptr, lam_ptr, delta_ptr, dS_ptr,
    dx_ptr, dB_ptr, xddx_ptr, dlam_ptr, rowpart_ptr, wsum_ptr, dD_ptr,
    L, H, G, P, N, Q, nc,
    s_x_b, s_x_l, s_x_h, s_x_p,
    s_b_b, s_b_l, s_b_g, s_b_n,
    s_c_b, s_c_l, s_c_g, s_c_n,
    s_dy_b, s_dy_l, s_dy_h, s_dy_p,
    HAS_D: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_L: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """For BLOCK_S source steps s of one chunk and group, loop over the group's heads:

    dxd_s = exp(Λ_{Q-1} - Λ_s) B_s dS_c^T + sum_{l>=s} M_ls dy_l       (BLOCK_S, P) per head
    dB_s  = sum_heads [exp(Λ_{Q-1} - Λ_s) xd_s dS_c + sum_{l>=s} dM_ls exp(Λ_l - Λ_s) C_l]   (BLOCK_S, N)
    Writes dx = δ dxd + D dy (Bz, L, H, P); xddx = x · dxd and dlam = -w_s - sum_l R_ls (Bz, H, n_c, Q);
    rowpart[j] = sum_{s in block j} R_ls for the target steps l (Bz, H, n_c, n_sblocks, Q; only blocks
    l >= block j are written); wsum[j] = sum_{s in block j} w_s (Bz, H, n_c, n_sblocks); dD partials
    (Bz, n_c, H, n_sblocks); dB (Bz, L, G, N). All fp32 except dx, dB. dS: (Bz, H, n_c, P, N) fp32.
    Grid: (cdiv(Q, BLOCK_S), Bz n_c G).
    """
    j = tl.program_id(0)
    n_sb = tl.num_programs(0)
    pid = tl.program_id(1).to(tl.int64)
    g = pid % G
    bc = pid // G
    c = bc % nc
    b = bc // nc
    hpg = H // G
    offs_s = j * BLOCK_S + tl.arange(0, BLOCK_S)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t_s = c * Q + offs_s
    in_s = offs_s < Q
    valid_s = in_s & (t_s < L)
    pmask = offs_p < P
    nmask = offs_n < N
    B_s = tl.load(B_ptr + b * s_b_b + g * s_b_g + t_s[:, None] * s_b_l + offs_n[None, :] * s_b_n,
                  mask=valid_s[:, None] & nmask[None, :], other=0.0)  # (BLOCK_S, BLOCK_N)
    acc_dB = tl.zeros((BLOCK_S, BLOCK_N), dtype=tl.float32)
    for hh in range(hpg):
        h = g * hpg + hh
        lam_row = lam_ptr + ((b * H + h) * nc + c) * Q
        lam_s = tl.load(lam_row + offs_s, mask=in_s, other=0.0)
        lam_last = tl.load(lam_row + Q - 1)
        delta_s = tl.load(delta_ptr + ((b * H + h) * nc + c) * Q + offs_s, mask=in_s, other=0.0)
        sx_mask = valid_s[:, None] & pmask[None, :]
        x_s = tl.load(x_ptr + b * s_x_b + h * s_x_h + t_s[:, None] * s_x_l + offs_p[None, :] * s_x_p,
                      mask=sx_mask, other=0.0)
        dy_s = tl.load(dy_ptr + b * s_dy_b + h * s_dy_h + t_s[:, None] * s_dy_l + offs_p[None, :] * s_dy_p,
                       mask=sx_mask, other=0.0)
        xd = (x_s.to(tl.float32) * delta_s[:, None]).to(x_s.dtype)  # δ_s x_s, (BLOCK_S, BLOCK_P)

        # chunk-state path: S_c = sum_s exp(Λ_{Q-1} - Λ_s) xd_s ⊗ B_s
        dS_base = dS_ptr + ((b * H + h) * nc + c) * P * N
        dS = tl.load(dS_base + offs_p[:, None] * N + offs_n[None, :],
                     mask=pmask[:, None] & nmask[None, :], other=0.0)  # (BLOCK_P, BLOCK_N)
        w_end = tl.exp(lam_last - lam_s)
        dxd = tl.dot(B_s, tl.trans(dS).to(B_s.dtype)) * w_end[:, None]  # (BLOCK_S, BLOCK_P)
        acc_dB += tl.dot(xd, dS.to(xd.dtype)) * w_end[:, None]
        w = tl.sum(xd.to(tl.float32) * dxd, axis=1)  # w_s
        dlam = -w
        chunk_row = (b * H + h) * nc + c
        tl.store(wsum_ptr + chunk_row * n_sb + j, tl.sum(w, axis=0))

        # diagonal blocks: every target step l >= s of the chunk
        for k0 in range(j * BLOCK_S, Q, BLOCK_L):
            offs_l = k0 + tl.arange(0, BLOCK_L)
            t_l = c * Q + offs_l
            valid_l = (offs_l < Q) & (t_l < L)
            lam_l = tl.load(lam_row + offs_l, mask=offs_l < Q, other=0.0)
            C_l = tl.load(C_ptr + b * s_c_b + g * s_c_g + t_l[:, None] * s_c_l + offs_n[None, :] * s_c_n,
                          mask=valid_l[:, None] & nmask[None, :], other=0.0)  # (BLOCK_L, BLOCK_N)
            dy_l = tl.load(dy_ptr + b * s_dy_b + h * s_dy_h + t_l[:, None] * s_dy_l + offs_p[None, :] * s_dy_p,
                           mask=valid_l[:, None] & pmask[None, :], other=0.0)  # (BLOCK_L, BLOCK_P)
            causal = (offs_l[None, :] >= offs_s[:, None]) & valid_l[None, :] & valid_s[:, None]
            decay = tl.exp(tl.where(causal, lam_l[None, :] - lam_s[:, None], float("-inf")))  # (BLOCK_S, BLOCK_L)
            Mt = tl.dot(B_s, tl.trans(C_l).to(B_s.dtype)) * decay  # M^T_sl
            dxd = tl.dot(Mt.to(dy_l.dtype), dy_l, dxd)
            dMt = tl.dot(xd, tl.trans(dy_l).to(xd.dtype))  # dy_l · xd_s, (BLOCK_S, BLOCK_L)
            Rt = dMt * Mt  # R^T_sl: its sums over l (for dΛ_s) and over s (for dΛ_l) come from one rounding
            dlam -= tl.sum(Rt, axis=1)
            tl.store(rowpart_ptr + (chunk_row * n_sb + j) * Q + offs_l, tl.sum(Rt, axis=0), mask=offs_l < Q)
            acc_dB = tl.dot((dMt * decay).to(C_l.dtype), C_l, acc_dB)

        dyf = dy_s.to(tl.float32)
        xf = x_s.to(tl.float32)
        dx = dxd * delta_s[:, None]
        if HAS_D:
            dx += tl.load(D_ptr + h).to(tl.float32) * dyf
            tl.store(dD_ptr + ((b * nc + c) * H + h) * n_sb + j, tl.sum(tl.sum(dyf * xf, axis=1), axis=0))
        tl.store(dx_ptr + ((b * L + t_s[:, None]) * H + h) * P + offs_p[None, :], dx, mask=sx_mask)
        row = chunk_row * Q + offs_s
        tl.store(xddx_ptr + row, tl.sum(xf * dxd, axis=1), mask=in_s)
        tl.store(dlam_ptr + row, dlam, mask=in_s)
    tl.store(dB_ptr + ((b * L + t_s[:, None]) * G + g) * N + offs_n[None, :], acc_dB,
             mask=valid_s[:, None] & nmask[None, :])


@triton.jit
def bwd_dc_kernel(
    x_ptr, B_ptr, C_ptr, dy_ptr, lam_ptr, delta_ptr, E_ptr,
    dC_ptr, dlam_ptr,
    L, H, G, P, N, Q, nc,
    s_x_b, s_x_l, s_x_h, s_x_p,
    s_b_b, s_b_l, s_b_g, s_b_n,
    s_c_b, s_c_l, s_c_g, s_c_n,
    s_dy_b, s_dy_l, s_dy_h, s_dy_p,
    BLOCK_L: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """For BLOCK_L target steps l of one chunk and group, loop over the group's heads:

    dC_l = sum_heads [exp(Λ_l) dy_l E_c + sum_{s<=l} (dy_l · xd_s) exp(Λ_l - Λ_s) B_s]   (BLOCK_L, N)
    dlam_l = exp(Λ_l) (dy_l E_c) · C_l, the off-diagonal dΛ_l term, written to dlam (Bz, H, n_c, Q) fp32
    (the diagonal R terms come from bwd_dx_db_kernel, see the module docstring).
    E: (Bz, H, n_c + 1, P, N) fp32 forward states; dC: (Bz, L, G, N). Grid: (cdiv(Q, BLOCK_L), Bz n_c G).
    """
    k = tl.program_id(0)
    pid = tl.program_id(1).to(tl.int64)
    g = pid % G
    bc = pid // G
    c = bc % nc
    b = bc // nc
    hpg = H // G
    offs_l = k * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t_l = c * Q + offs_l
    in_l = offs_l < Q
    valid_l = in_l & (t_l < L)
    pmask = offs_p < P
    nmask = offs_n < N
    C_l = tl.load(C_ptr + b * s_c_b + g * s_c_g + t_l[:, None] * s_c_l + offs_n[None, :] * s_c_n,
                  mask=valid_l[:, None] & nmask[None, :], other=0.0)  # (BLOCK_L, BLOCK_N)
    Cf = C_l.to(tl.float32)
    acc_dC = tl.zeros((BLOCK_L, BLOCK_N), dtype=tl.float32)
    hi = tl.minimum((k + 1) * BLOCK_L, Q)
    for hh in range(hpg):
        h = g * hpg + hh
        lam_row = lam_ptr + ((b * H + h) * nc + c) * Q
        delta_row = delta_ptr + ((b * H + h) * nc + c) * Q
        lam_l = tl.load(lam_row + offs_l, mask=in_l, other=0.0)
        dy_l = tl.load(dy_ptr + b * s_dy_b + h * s_dy_h + t_l[:, None] * s_dy_l + offs_p[None, :] * s_dy_p,
                       mask=valid_l[:, None] & pmask[None, :], other=0.0)  # (BLOCK_L, BLOCK_P)
        # off-diagonal: y_l gets exp(Λ_l) E_c C_l
        E_c = tl.load(E_ptr + ((b * H + h) * (nc + 1) + c) * P * N + offs_p[:, None] * N + offs_n[None, :],
                      mask=pmask[:, None] & nmask[None, :], other=0.0)  # (BLOCK_P, BLOCK_N)
        dC_off = tl.dot(dy_l, E_c.to(dy_l.dtype)) * tl.exp(lam_l)[:, None]
        acc_dC += dC_off
        dlam = tl.sum(dC_off * Cf, axis=1)
        for s0 in range(0, hi, BLOCK_S):
            offs_s = s0 + tl.arange(0, BLOCK_S)
            t_s = c * Q + offs_s
            valid_s = (offs_s < Q) & (t_s < L)
            lam_s = tl.load(lam_row + offs_s, mask=offs_s < Q, other=0.0)
            delta_s = tl.load(delta_row + offs_s, mask=offs_s < Q, other=0.0)
            B_s = tl.load(B_ptr + b * s_b_b + g * s_b_g + t_s[:, None] * s_b_l + offs_n[None, :] * s_b_n,
                          mask=valid_s[:, None] & nmask[None, :], other=0.0)  # (BLOCK_S, BLOCK_N)
            x_s = tl.load(x_ptr + b * s_x_b + h * s_x_h + t_s[:, None] * s_x_l + offs_p[None, :] * s_x_p,
                          mask=valid_s[:, None] & pmask[None, :], other=0.0)  # (BLOCK_S, BLOCK_P)
            xd = (x_s.to(tl.float32) * delta_s[:, None]).to(dy_l.dtype)
            causal = (offs_s[None, :] <= offs_l[:, None]) & valid_s[None, :] & valid_l[:, None]
            decay = tl.exp(tl.where(causal, lam_l[:, None] - lam_s[None, :], float("-inf")))  # (BLOCK_L, BLOCK_S)
            dCB = tl.dot(dy_l, tl.trans(xd)) * decay  # dM_ls exp(Λ_l - Λ_s)
            acc_dC = tl.dot(dCB.to(B_s.dtype), B_s, acc_dC)
        tl.store(dlam_ptr + ((b * H + h) * nc + c) * Q + offs_l, dlam, mask=in_l)
    tl.store(dC_ptr + ((b * L + t_l[:, None]) * G + g) * N + offs_n[None, :], acc_dC,
             mask=valid_l[:, None] & nmask[None, :])


@triton.jit
def dt_bwd_kernel(
    dt_ptr, A_ptr, bias_ptr, delta_ptr, xddx_ptr, dlam_s_ptr, dlam_l_ptr, rowpart_ptr, wsum_ptr, glast_ptr,
    ddt_ptr, dA_ptr, dbias_ptr,
    L, H, Q, nc, n_tb,
    s_dt_b, s_dt_l, s_dt_h,
    HAS_BIAS: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """da = reverse cumsum of dΛ inside the chunk; dδ = x · dxd + A da; ddt = dδ σ(dt + dt_bias).

    delta, xddx, dlam_s, dlam_l: (Bz, H, n_c, Q) fp32; rowpart (Bz, H, n_c, n_tb, Q), of which block j holds
    the R sums for steps in tiles >= j; wsum (Bz, H, n_c, n_tb) and glast (Bz, H, n_c), the dΛ_{Q-1} terms.
    Writes ddt (Bz, L, H) and per-chunk partials dA, dbias (Bz, n_c, H) fp32.
    Grid: (Bz n_c, cdiv(H, BLOCK_H)).
    """
    pid = tl.program_id(0).to(tl.int64)
    b = pid // nc
    c = pid % nc
    offs_l = tl.arange(0, BLOCK_Q)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    t = c * Q + offs_l
    in_chunk = offs_l < Q
    valid = in_chunk & (t < L)
    hmask = offs_h < H
    m = in_chunk[:, None] & hmask[None, :]
    idx = ((b * H + offs_h[None, :]) * nc + c) * Q + offs_l[:, None]
    dlam = tl.load(dlam_s_ptr + idx, mask=m, other=0.0) + tl.load(dlam_l_ptr + idx, mask=m, other=0.0)
    chunk_row = (b * H + offs_h[None, :]) * nc + c  # (1, BLOCK_H)
    last = tl.load(glast_ptr + chunk_row, mask=hmask[None, :], other=0.0)
    for jb in range(n_tb):
        # tile jb of source steps wrote R sums only for target steps in tiles >= jb
        m_j = m & (offs_l[:, None] // BLOCK_T >= jb)
        dlam += tl.load(rowpart_ptr + (chunk_row * n_tb + jb) * Q + offs_l[:, None], mask=m_j, other=0.0)
        last += tl.load(wsum_ptr + chunk_row * n_tb + jb, mask=hmask[None, :], other=0.0)
    dlam += tl.where(offs_l[:, None] == Q - 1, last, 0.0)
    da = tl.cumsum(dlam, axis=0, reverse=True)
    A = tl.load(A_ptr + offs_h, mask=hmask, other=0.0).to(tl.float32)
    delta = tl.load(delta_ptr + idx, mask=m, other=0.0)
    ddelta = tl.load(xddx_ptr + idx, mask=m, other=0.0) + A[None, :] * da
    vm = valid[:, None] & hmask[None, :]
    v = tl.load(dt_ptr + b * s_dt_b + t[:, None] * s_dt_l + offs_h[None, :] * s_dt_h, mask=vm, other=0.0)
    v = v.to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + offs_h, mask=hmask, other=0.0).to(tl.float32)[None, :]
    ddt = tl.where(vm, ddelta * tl.sigmoid(v), 0.0)
    tl.store(ddt_ptr + (b * L + t[:, None]) * H + offs_h[None, :], ddt, mask=vm)
    part = (b * nc + c) * H + offs_h
    tl.store(dA_ptr + part, tl.sum(tl.where(vm, delta * da, 0.0), axis=0), mask=hmask)
    tl.store(dbias_ptr + part, tl.sum(ddt, axis=0), mask=hmask)
