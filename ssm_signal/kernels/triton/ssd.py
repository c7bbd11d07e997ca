"""Mamba-2's chunked SSD scan as Triton kernels, forward and backward, with initial and final states.

``ssd_scan`` has the signature and semantics of :func:`ssm_signal.kernels.reference.ssd_scan`:

    x (Bz, L, H, P), dt (Bz, L, H) before softplus, A (H,), B and C (Bz, L, G, N), D (H,) or None,
    dt_bias (H,) or None, h0 (Bz, H, P, N)  ->  y (Bz, L, H, P) in x's dtype, h_L (Bz, H, P, N) in h0's.

It computes the chunked matrix form of Dao & Gu (2024), section 6 (the plain-PyTorch twin is
:mod:`ssm_signal.kernels.ssd_torch`): δ and the in-chunk decay cumsum Λ, one state per chunk,
the sequential pass over chunks from h0 (giving h_L), and the output of every chunk from its
entering state plus its masked intra-chunk "attention". The kernels are in ``ssd_fwd`` and
``ssd_bwd``; this module allocates, launches and wraps them in a ``torch.autograd.Function``
whose backward returns gradients for x, dt, A, B, C, D, dt_bias and h0, taking an incoming
gradient for h_L.

Precision: fp32 accumulation, fp32 decays and states; the matrix products take bf16/fp16
operands for half inputs and tf32 for fp32 inputs (as mamba_ssm's kernels do), so fp32 results
match the float64 reference to about 1e-3 relative, not 1e-6. float64 inputs are delegated to
the plain-PyTorch chunked form (exact semantics, no kernel).
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from ssm_signal.kernels.ssd_torch import ssd_scan as _ssd_scan_torch
from ssm_signal.kernels.triton import ssd_bwd, ssd_fwd  # the package applies the interpreter fix (_interpret.py)

# Launch parameters. A module-level table so that a benchmark can try variants.
CONFIG = {
    "block_t": 64,  # steps per tile of the intra-chunk products (clamped to the chunk length)
    "warps_scan": 4,  # chunk_scan_fwd_kernel
    "warps_state": 4,  # chunk_state_kernel
    # bwd_dx_db_kernel, bwd_dc_kernel: 4 warps beat 8 in both dtypes (docs/performance.md,
    # "Figures behind code choices")
    "warps_bwd": 4,
    "state_block": 1024,  # state elements per program of the sequential passes over chunks
    "stages": 2,
}


def _pow2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(n))


def _check(x, dt, A, B, C, D, dt_bias, h0, chunk_size) -> None:
    if x.dim() != 4:
        raise ValueError(f"ssd_scan: x must be (B, L, H, P), got shape {tuple(x.shape)}")
    Bsz, L, H, P = x.shape
    if B.dim() != 4 or B.shape[:2] != (Bsz, L) or C.shape != B.shape:
        raise ValueError(f"ssd_scan: B and C must both be (B, L, G, N) = ({Bsz}, {L}, G, N), got "
                         f"{tuple(B.shape)} and {tuple(C.shape)}")
    G, N = B.shape[2], B.shape[3]
    if G < 1 or H % G:
        raise ValueError(f"ssd_scan: nheads={H} is not a multiple of ngroups={G}")
    if dt.shape != (Bsz, L, H):
        raise ValueError(f"ssd_scan: dt must be (B, L, H) = {(Bsz, L, H)}, got {tuple(dt.shape)}")
    for name, t in (("A", A), ("D", D), ("dt_bias", dt_bias)):
        if t is not None and t.shape != (H,):
            raise ValueError(f"ssd_scan: {name} must be (H,) = ({H},), got {tuple(t.shape)}")
    if h0.shape != (Bsz, H, P, N):
        raise ValueError(f"ssd_scan: h0 must be (B, H, P, N) = {(Bsz, H, P, N)}, got {tuple(h0.shape)}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"ssd_scan: chunk_size must be a positive int, got {chunk_size!r}")
    devices = {t.device for t in (x, dt, A, B, C, D, dt_bias, h0) if t is not None}
    if len(devices) != 1:
        raise ValueError(f"ssd_scan: all tensors must be on one device, got {sorted(map(str, devices))}")


def _forward(x, dt, A, B, C, D, dt_bias, h0, Q):
    """Launch the forward kernels. Returns y, h_L and what the backward needs (delta, lam, E)."""
    Bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc = -(-L // Q)
    dev = x.device
    f32 = dict(device=dev, dtype=torch.float32)
    BQ, BP, BN = _pow2(Q), _pow2(P), _pow2(N)
    BT = min(CONFIG["block_t"], BQ)
    BH = max(1, min(16, 4096 // BQ, triton.next_power_of_2(H)))

    delta = torch.empty(Bsz, H, nc, Q, **f32)
    lam = torch.empty(Bsz, H, nc, Q, **f32)
    ssd_fwd.dt_fwd_kernel[(Bsz * nc, triton.cdiv(H, BH))](
        dt, A, dt_bias if dt_bias is not None else A, delta, lam,
        L, H, Q, nc, *dt.stride(),
        HAS_BIAS=dt_bias is not None, BLOCK_Q=BQ, BLOCK_H=BH,
    )
    # slot c: S_c, then E_c after the state pass; slot n_c: h_L
    E = torch.empty(Bsz, H, nc + 1, P, N, **f32)
    ssd_fwd.chunk_state_kernel[(1, Bsz * nc * H)](
        x, B, lam, delta, E,
        L, H, G, P, N, Q, nc, *x.stride(), *B.stride(), (nc + 1) * P * N, P * N,
        WEIGHT=0, BLOCK_P=BP, BLOCK_N=BN, BLOCK_K=BT,
        num_warps=CONFIG["warps_state"], num_stages=CONFIG["stages"],
    )
    blk = min(CONFIG["state_block"], triton.next_power_of_2(P * N))
    ssd_fwd.state_pass_fwd_kernel[(triton.cdiv(P * N, blk), Bsz * H)](
        E, lam, h0, H, P, N, Q, nc, *h0.stride(), BLOCK=blk,
    )
    y = torch.empty(Bsz, L, H, P, device=dev, dtype=x.dtype)
    ssd_fwd.chunk_scan_fwd_kernel[(triton.cdiv(Q, BT), Bsz * nc * H)](
        x, B, C, D if D is not None else A, lam, delta, E, y,
        L, H, G, P, N, Q, nc, *x.stride(), *B.stride(), *C.stride(), *y.stride(),
        HAS_D=D is not None, BLOCK_M=BT, BLOCK_K=BT, BLOCK_P=BP, BLOCK_N=BN,
        num_warps=CONFIG["warps_scan"], num_stages=CONFIG["stages"],
    )
    return y, E[:, :, nc], delta, lam, E


def _backward(dy, dhL, x, dt, A, B, C, D, dt_bias, delta, lam, E, Q):
    """Launch the backward kernels. Returns dx, ddt, dB, dC in their inputs' dtypes, and dA, dD, ddt_bias, dh0 fp32.

    dy: (Bz, L, H, P) in x's dtype; dhL: (Bz, H, P, N) or None; delta, lam, E: the forward's fp32 buffers.
    """
    Bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nc = -(-L // Q)
    dev = x.device
    f32 = dict(device=dev, dtype=torch.float32)
    BQ, BP, BN = _pow2(Q), _pow2(P), _pow2(N)
    BT = min(CONFIG["block_t"], BQ)
    BH = max(1, min(16, 4096 // BQ, triton.next_power_of_2(H)))
    n_tb = triton.cdiv(Q, BT)
    warps_bwd = CONFIG["warps_bwd"]

    # dE through y's off-diagonal term, then the reverse pass over chunks turns it into dS_c
    dS = torch.empty(Bsz, H, nc, P, N, **f32)
    ssd_fwd.chunk_state_kernel[(1, Bsz * nc * H)](
        dy, C, lam, delta, dS,
        L, H, G, P, N, Q, nc, *dy.stride(), *C.stride(), nc * P * N, P * N,
        WEIGHT=1, BLOCK_P=BP, BLOCK_N=BN, BLOCK_K=BT,
        num_warps=CONFIG["warps_state"], num_stages=CONFIG["stages"],
    )
    blk = min(CONFIG["state_block"], triton.next_power_of_2(P * N))
    n_blk = triton.cdiv(P * N, blk)
    dh0 = torch.empty(Bsz, H, P, N, **f32)
    glast = torch.empty(Bsz, H, nc, n_blk, **f32)
    ssd_bwd.state_pass_bwd_kernel[(n_blk, Bsz * H)](
        dS, E, lam, dhL if dhL is not None else dh0, dh0, glast,
        H, P, N, Q, nc, *(dhL.stride() if dhL is not None else (0, 0, 0, 0)),
        HAS_DHL=dhL is not None, BLOCK=blk,
    )

    dx = torch.empty(Bsz, L, H, P, device=dev, dtype=x.dtype)
    dB = torch.empty(Bsz, L, G, N, device=dev, dtype=B.dtype)
    dC = torch.empty(Bsz, L, G, N, device=dev, dtype=C.dtype)
    xddx = torch.empty(Bsz, H, nc, Q, **f32)
    dlam_s = torch.empty(Bsz, H, nc, Q, **f32)
    dlam_l = torch.empty(Bsz, H, nc, Q, **f32)
    rowpart = torch.empty(Bsz, H, nc, n_tb, Q, **f32)
    wsum = torch.empty(Bsz, H, nc, n_tb, **f32)
    dD_part = torch.empty(Bsz, nc, H, n_tb, **f32) if D is not None else dh0
    ssd_bwd.bwd_dx_db_kernel[(n_tb, Bsz * nc * G)](
        x, B, C, D if D is not None else A, dy, lam, delta, dS,
        dx, dB, xddx, dlam_s, rowpart, wsum, dD_part,
        L, H, G, P, N, Q, nc, *x.stride(), *B.stride(), *C.stride(), *dy.stride(),
        HAS_D=D is not None, BLOCK_S=BT, BLOCK_L=BT, BLOCK_P=BP, BLOCK_N=BN,
        num_warps=warps_bwd, num_stages=CONFIG["stages"],
    )
    ssd_bwd.bwd_dc_kernel[(n_tb, Bsz * nc * G)](
        x, B, C, dy, lam, delta, E, dC, dlam_l,
        L, H, G, P, N, Q, nc, *x.stride(), *B.stride(), *C.stride(), *dy.stride(),
        BLOCK_L=BT, BLOCK_S=BT, BLOCK_P=BP, BLOCK_N=BN,
        num_warps=warps_bwd, num_stages=CONFIG["stages"],
    )
    ddt = torch.empty(Bsz, L, H, device=dev, dtype=dt.dtype)
    dA_part = torch.empty(Bsz, nc, H, **f32)
    dbias_part = torch.empty(Bsz, nc, H, **f32)
    ssd_bwd.dt_bwd_kernel[(Bsz * nc, triton.cdiv(H, BH))](
        dt, A, dt_bias if dt_bias is not None else A, delta, xddx, dlam_s, dlam_l, rowpart, wsum, glast.sum(-1),
        ddt, dA_part, dbias_part,
        L, H, Q, nc, n_tb, *dt.stride(),
        HAS_BIAS=dt_bias is not None, BLOCK_Q=BQ, BLOCK_H=BH, BLOCK_T=BT,
    )
    dD = dD_part.sum((0, 1, 3)) if D is not None else None
    dbias = dbias_part.sum((0, 1)) if dt_bias is not None else None
    return dx, ddt, dA_part.sum((0, 1)), dB, dC, dD, dbias, dh0


class SSDScanFn(torch.autograd.Function):
    """Autograd wrapper: saves x, dt, A, B, C, D, dt_bias and the fp32 δ, Λ and chunk states E."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, h0, chunk_size):
        L = x.shape[1]
        Q = min(chunk_size, L)
        y, hL32, delta, lam, E = _forward(x, dt, A, B, C, D, dt_bias, h0, Q)
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, delta, lam, E)
        ctx.Q = Q
        ctx.h0_dtype = h0.dtype
        h_L = hL32.to(h0.dtype) if h0.dtype != torch.float32 else hL32.clone()
        return y, h_L

    @staticmethod
    def backward(ctx, dy, dhL):
        x, dt, A, B, C, D, dt_bias, delta, lam, E = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(x)
        dy = dy.to(x.dtype)
        dx, ddt, dA, dB, dC, dD, dbias, dh0 = _backward(dy, dhL, x, dt, A, B, C, D, dt_bias, delta, lam, E, ctx.Q)
        return (dx, ddt, dA.to(A.dtype), dB, dC, None if dD is None else dD.to(D.dtype),
                None if dbias is None else dbias.to(dt_bias.dtype), dh0.to(ctx.h0_dtype), None)


def ssd_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h0: Tensor, chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD (Mamba-2) on the GPU; see the module docstring for shapes and precision.

    x: (B, L, H, P); dt: (B, L, H), pre-softplus Δ; A, D, dt_bias: (H,); B, C: (B, L, G, N) (C_t, B_t);
    h0: (B, H, P, N) initial state. Returns y (B, L, H, P) in x's dtype and h_L (B, H, P, N) in h0's.
    ``chunk_size`` Q is clamped to L; results do not depend on it beyond rounding.
    """
    _check(x, dt, A, B, C, D, dt_bias, h0, chunk_size)
    if any(t is not None and t.dtype == torch.float64 for t in (x, dt, A, h0)):
        return _ssd_scan_torch(x, dt, A, B, C, D, dt_bias, h0, chunk_size)
    if x.shape[1] == 0:
        raise ValueError("ssd_scan: the sequence is empty (L = 0)")
    # one dtype for the tensor-core operands; B and C usually come from the same projection as x
    B = B.to(x.dtype)
    C = C.to(x.dtype)
    # the innermost dim must be unit-stride for coalesced loads; the layer's split views already are
    x, B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (x, B, C))
    return SSDScanFn.apply(x, dt, A, B, C, D, dt_bias, h0, chunk_size)
