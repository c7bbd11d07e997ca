"""Forward Triton kernels of the chunked SSD scan (Dao & Gu 2024, "Transformers are SSMs", section 6).

Notation (per batch row b and head h; the chunk c holds the Q steps t = c Q + l, l = 0..Q-1):
    δ_t = softplus(dt_t + dt_bias)            Δ, the step size                    ``delta``  (Bz, H, n_c, Q) fp32
    Λ_l = sum_{k<=l} δ_k A  (inside chunk c)  log of the decay from the chunk start ``lam``    (Bz, H, n_c, Q) fp32
    S_c = sum_l exp(Λ_{Q-1} - Λ_l) δ_l x_l ⊗ B_l    the state chunk c adds, from zero           (P, N)
    E_0 = h0,  E_{c+1} = exp(Λ_{Q-1}) E_c + S_c       the state entering chunk c; E_{n_c} = h_L (P, N)
    y_l = exp(Λ_l) E_c C_l                                   off-diagonal block: the carried state
        + sum_{s<=l} (C_l · B_s) exp(Λ_l - Λ_s) δ_s x_s     diagonal block: masked "attention"
        + D x_l                                             skip

Steps past L are padded with δ = 0 (Ā = 1, no input), which leaves every state unchanged, so a
short last chunk needs no special case beyond masking loads and stores.

Kernels (launched by :mod:`ssm_signal.kernels.triton.ssd`):
    ``dt_fwd_kernel``        δ and the in-chunk cumsum Λ
    ``chunk_state_kernel``   sum_l w_l u_l ⊗ v_l over a chunk (S_c in the forward; reused by the backward)
    ``state_pass_fwd_kernel``  the sequential recurrence over chunks, E_c and h_L
    ``chunk_scan_fwd_kernel``  y: off-diagonal + diagonal blocks + D skip

Matrix products run on the tensor cores (bf16/fp16 operands, or tf32 for fp32 operands) and
accumulate in fp32; decays, cumsums and states stay fp32.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def softplus(v):
    """log(1 + e^v) without overflow, with log1p's accuracy for small e^v (fp32)."""
    u = tl.exp(tl.minimum(v, 20.0))
    w = 1.0 + u
    # log1p(u) = log(w) * u / (w - 1): exact rounding compensation when 1 + u rounds (Goldberg 1991)
    lp = tl.where(w == 1.0, u, tl.log(w) * (u / tl.where(w == 1.0, 1.0, w - 1.0)))
    return tl.where(v > 20.0, v, lp)


@triton.jit
def dt_fwd_kernel(
    dt_ptr, A_ptr, bias_ptr, delta_ptr, lam_ptr,
    L, H, Q, nc,
    s_dt_b, s_dt_l, s_dt_h,
    HAS_BIAS: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """δ = softplus(dt + dt_bias) and Λ = cumsum(δ A) inside each chunk.

    dt: (Bz, L, H) any float dtype; A, dt_bias: (H,). Writes delta, lam: (Bz, H, n_c, Q) fp32,
    zero δ (and so a flat Λ) on the padded steps t >= L. Grid: (Bz n_c, cdiv(H, BLOCK_H)).
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
    v = tl.load(dt_ptr + b * s_dt_b + t[:, None] * s_dt_l + offs_h[None, :] * s_dt_h,
                mask=valid[:, None] & hmask[None, :], other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(bias_ptr + offs_h, mask=hmask, other=0.0).to(tl.float32)[None, :]
    delta = tl.where(valid[:, None], softplus(v), 0.0)
    A = tl.load(A_ptr + offs_h, mask=hmask, other=0.0).to(tl.float32)
    lam = tl.cumsum(delta * A[None, :], axis=0)
    idx = ((b * H + offs_h[None, :]) * nc + c) * Q + offs_l[:, None]
    m = in_chunk[:, None] & hmask[None, :]
    tl.store(delta_ptr + idx, delta, mask=m)
    tl.store(lam_ptr + idx, lam, mask=m)


@triton.jit
def chunk_state_kernel(
    u_ptr, v_ptr, lam_ptr, delta_ptr, out_ptr,
    L, H, G, P, N, Q, nc,
    s_u_b, s_u_l, s_u_h, s_u_p,
    s_v_b, s_v_l, s_v_g, s_v_n,
    s_o_bh, s_o_c,
    WEIGHT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """out[b, h, c] = sum_{l in chunk c} w_l u_l ⊗ v_l, a (P, N) fp32 matrix per chunk and head.

    u: (Bz, L, H, P) (x, or dy in the backward); v: (Bz, L, G, N) (B, or C); head h reads group
    h // (H / G). WEIGHT 0: w_l = exp(Λ_{Q-1} - Λ_l) δ_l, giving the chunk state S_c;
    WEIGHT 1: w_l = exp(Λ_l), giving the gradient of the entering state E_c through y's
    off-diagonal term. out rows are (b H + h) * s_o_bh + c * s_o_c, then p N + n.
    Grid: (cdiv(P, BLOCK_P) cdiv(N, BLOCK_N), Bz n_c H), heads fastest so that the programs
    reading one chunk's v run together and share it in L2.
    """
    pid_pn = tl.program_id(0)
    pid = tl.program_id(1).to(tl.int64)
    h = pid % H
    bc = pid // H
    c = bc % nc
    b = bc // nc
    g = h // (H // G)
    n_pb = tl.cdiv(P, BLOCK_P)
    offs_p = (pid_pn % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = (pid_pn // n_pb) * BLOCK_N + tl.arange(0, BLOCK_N)
    lam_row = lam_ptr + ((b * H + h) * nc + c) * Q
    delta_row = delta_ptr + ((b * H + h) * nc + c) * Q
    if WEIGHT == 0:
        lam_last = tl.load(lam_row + Q - 1)
    u_base = u_ptr + b * s_u_b + h * s_u_h
    v_base = v_ptr + b * s_v_b + g * s_v_g
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, Q, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        t = c * Q + offs_k
        valid = (offs_k < Q) & (t < L)
        lam = tl.load(lam_row + offs_k, mask=offs_k < Q, other=0.0)
        if WEIGHT == 0:
            w = tl.exp(lam_last - lam) * tl.load(delta_row + offs_k, mask=offs_k < Q, other=0.0)
        else:
            w = tl.exp(lam)
        uT = tl.load(u_base + t[None, :] * s_u_l + offs_p[:, None] * s_u_p,
                     mask=valid[None, :] & (offs_p[:, None] < P), other=0.0)  # (BLOCK_P, BLOCK_K)
        v = tl.load(v_base + t[:, None] * s_v_l + offs_n[None, :] * s_v_n,
                    mask=valid[:, None] & (offs_n[None, :] < N), other=0.0)  # (BLOCK_K, BLOCK_N)
        vw = (v.to(tl.float32) * w[:, None]).to(uT.dtype)
        acc = tl.dot(uT, vw, acc)
    out = out_ptr + (b * H + h) * s_o_bh + c * s_o_c + offs_p[:, None] * N + offs_n[None, :]
    tl.store(out, acc, mask=(offs_p[:, None] < P) & (offs_n[None, :] < N))


@triton.jit
def state_pass_fwd_kernel(
    E_ptr, lam_ptr, h0_ptr,
    H, P, N, Q, nc,
    s_h0_b, s_h0_h, s_h0_p, s_h0_n,
    BLOCK: tl.constexpr,
):
    """E_0 = h0, E_{c+1} = exp(Λ^c_{Q-1}) E_c + S_c, in place.

    E: (Bz, H, n_c + 1, P, N) fp32 holding S_c in slots 0..n_c-1 on entry; on exit slot c holds
    E_c, the state entering chunk c, and slot n_c the final state h_L. h0: (Bz, H, P, N).
    Grid: (cdiv(P N, BLOCK), Bz H); each program walks the chunks in order on BLOCK elements.
    """
    pid = tl.program_id(1).to(tl.int64)
    b = pid // H
    h = pid % H
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < P * N
    p = offs // N
    n = offs % N
    state = tl.load(h0_ptr + b * s_h0_b + h * s_h0_h + p * s_h0_p + n * s_h0_n, mask=mask, other=0.0).to(tl.float32)
    base = E_ptr + pid * (nc + 1) * P * N + offs
    lam_last = lam_ptr + pid * nc * Q + Q - 1
    for c in range(nc):
        s = tl.load(base + c * P * N, mask=mask, other=0.0)
        tl.store(base + c * P * N, state, mask=mask)
        state = tl.exp(tl.load(lam_last + c * Q)) * state + s
    tl.store(base + nc * P * N, state, mask=mask)


@triton.jit
def chunk_scan_fwd_kernel(
    x_ptr, B_ptr, C_ptr, D_ptr, lam_ptr, delta_ptr, E_ptr, y_ptr,
    L, H, G, P, N, Q, nc,
    s_x_b, s_x_l, s_x_h, s_x_p,
    s_b_b, s_b_l, s_b_g, s_b_n,
    s_c_b, s_c_l, s_c_g, s_c_n,
    s_y_b, s_y_l, s_y_h, s_y_p,
    HAS_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """y_l = exp(Λ_l) E_c C_l + sum_{s<=l} (C_l · B_s) exp(Λ_l - Λ_s) δ_s x_s + D x_l for BLOCK_M steps l.

    x, y: (Bz, L, H, P); B, C: (Bz, L, G, N); E: (Bz, H, n_c + 1, P, N) fp32 entering states.
    Grid: (cdiv(Q, BLOCK_M), Bz n_c H). The whole head (P <= BLOCK_P) and state (N <= BLOCK_N)
    sit in one tile, so C_l B_s^T is formed once per program; only the causal s-blocks are visited.
    """
    m = tl.program_id(0)
    pid = tl.program_id(1).to(tl.int64)
    h = pid % H
    bc = pid // H
    c = bc % nc
    b = bc // nc
    g = h // (H // G)
    offs_l = m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t_l = c * Q + offs_l
    valid_l = (offs_l < Q) & (t_l < L)
    pmask = offs_p < P
    nmask = offs_n < N
    lam_row = lam_ptr + ((b * H + h) * nc + c) * Q
    delta_row = delta_ptr + ((b * H + h) * nc + c) * Q
    lam_l = tl.load(lam_row + offs_l, mask=offs_l < Q, other=0.0)

    C_l = tl.load(C_ptr + b * s_c_b + g * s_c_g + t_l[:, None] * s_c_l + offs_n[None, :] * s_c_n,
                  mask=valid_l[:, None] & nmask[None, :], other=0.0)  # (BLOCK_M, BLOCK_N)
    # off-diagonal block: the state entering the chunk, read out through C and the decay from the chunk start
    E_T = tl.load(E_ptr + ((b * H + h) * (nc + 1) + c) * P * N
                  + offs_n[:, None] + offs_p[None, :] * N,
                  mask=nmask[:, None] & pmask[None, :], other=0.0)  # E_c^T (BLOCK_N, BLOCK_P)
    acc = tl.dot(C_l, E_T.to(C_l.dtype)) * tl.exp(lam_l)[:, None]

    # diagonal block: s-blocks up to and including this one
    x_base = x_ptr + b * s_x_b + h * s_x_h
    hi = tl.minimum((m + 1) * BLOCK_M, Q)
    for k0 in range(0, hi, BLOCK_K):
        offs_s = k0 + tl.arange(0, BLOCK_K)
        t_s = c * Q + offs_s
        valid_s = (offs_s < Q) & (t_s < L)
        B_sT = tl.load(B_ptr + b * s_b_b + g * s_b_g + t_s[None, :] * s_b_l + offs_n[:, None] * s_b_n,
                       mask=valid_s[None, :] & nmask[:, None], other=0.0)  # (BLOCK_N, BLOCK_K)
        CB = tl.dot(C_l, B_sT.to(C_l.dtype))  # (BLOCK_M, BLOCK_K)
        lam_s = tl.load(lam_row + offs_s, mask=offs_s < Q, other=0.0)
        delta_s = tl.load(delta_row + offs_s, mask=offs_s < Q, other=0.0)
        causal = (offs_s[None, :] <= offs_l[:, None]) & valid_s[None, :] & valid_l[:, None]
        decay = tl.exp(tl.where(causal, lam_l[:, None] - lam_s[None, :], float("-inf")))
        x_s = tl.load(x_base + t_s[:, None] * s_x_l + offs_p[None, :] * s_x_p,
                      mask=valid_s[:, None] & pmask[None, :], other=0.0)  # (BLOCK_K, BLOCK_P)
        Mw = CB * decay * delta_s[None, :]
        acc = tl.dot(Mw.to(x_s.dtype), x_s, acc)

    x_l = tl.load(x_base + t_l[:, None] * s_x_l + offs_p[None, :] * s_x_p,
                  mask=valid_l[:, None] & pmask[None, :], other=0.0)
    if HAS_D:
        acc += tl.load(D_ptr + h).to(tl.float32) * x_l.to(tl.float32)
    tl.store(y_ptr + b * s_y_b + h * s_y_h + t_l[:, None] * s_y_l + offs_p[None, :] * s_y_p, acc,
             mask=valid_l[:, None] & pmask[None, :])
