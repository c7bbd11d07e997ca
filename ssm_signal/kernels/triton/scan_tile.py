"""What one program of the selective-scan kernels owns and reads: its block of BD channels with the
whole (padded) state axis, the per-channel parameters, and the inputs of a block of U time steps.

All helpers are :func:`~ssm_signal.kernels.triton.elementwise.device_fn` (inlined on the GPU)."""

from __future__ import annotations

import triton.language as tl

from ssm_signal.kernels.triton.elementwise import device_fn


@device_fn
def channel_tile(Din, N, BD: tl.constexpr, NP: tl.constexpr):
    """This program's channels (program axis 0) and the state axis padded to NP.

    Returns offs_d (BD,), offs_n (NP,), their masks md (BD,) and mn (NP,), mdn (BD, NP), and dn (BD, NP):
    the offsets of the tile in a contiguous (D_in, N) row (A, h0, h_L and their gradients).
    """
    offs_d = tl.program_id(0) * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    md = offs_d < Din
    mn = offs_n < N
    return offs_d, offs_n, md, mn, md[:, None] & mn[None, :], offs_d[:, None] * N + offs_n[None, :]


@device_fn
def channel_params(D_ptr, bias_ptr, offs_d, md, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The tile's D and dt_bias, (BD,) float32 each; zeros where the scan has none (compiled Triton cannot
    return None from a function, and the callers read them only under HAS_D / HAS_BIAS)."""
    Dv = offs_d.to(tl.float32) * 0.0
    bias = Dv
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    return Dv, bias


@device_fn
def load_steps(
    x_r, dt_r, z_r, B_r, C_r, s_xt, s_dtt, s_zt, s_Bt, s_Ct, offs_d, offs_n, md, mn,
    U: tl.constexpr, STEP: tl.constexpr, HAS_Z: tl.constexpr,
):
    """The inputs of U time steps as float32, a tuple of U per input: x (BD,), dt before softplus (BD,),
    B (NP,), C (NP,), z (BD,; an empty tuple without a gate). The row pointers point at the first step;
    STEP = 1 reads it and the U-1 after it, STEP = -1 it and the U-1 before it. All loads are issued
    before any use, so that they go out together."""
    xs = ()
    pres = ()
    Bs = ()
    Cs = ()
    zs = ()
    for u in tl.static_range(U):
        xs = xs + (tl.load(x_r + STEP * u * s_xt + offs_d, mask=md, other=0.0).to(tl.float32),)
        pres = pres + (tl.load(dt_r + STEP * u * s_dtt + offs_d, mask=md, other=0.0).to(tl.float32),)
        Bs = Bs + (tl.load(B_r + STEP * u * s_Bt + offs_n, mask=mn, other=0.0).to(tl.float32),)
        Cs = Cs + (tl.load(C_r + STEP * u * s_Ct + offs_n, mask=mn, other=0.0).to(tl.float32),)
        if HAS_Z:
            zs = zs + (tl.load(z_r + STEP * u * s_zt + offs_d, mask=md, other=0.0).to(tl.float32),)
    return xs, pres, Bs, Cs, zs
