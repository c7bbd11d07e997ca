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

So the backward is two sequential kernels: ``bwd_fwd_kernel`` re-runs the recurrence
forwards from h0 and emits dz, dC, dD, α (one float32 (B, L, D_in) tensor) and its half
of dA; ``bwd_rev_kernel`` runs G backwards and emits dx, ddt, dB, ddt_bias, dh0 and the
other half of dA. Time is cut into segments of K steps at whose ends the forward-order
kernel stores h (B, L/K, D_in, N: N/K of one input tensor); the reverse kernel restarts
the telescoped sums from the exact r there, which keeps their rounding error bounded by
K steps rather than L.

Arithmetic is float32 for float32/bf16/fp16 inputs; y is returned in x's dtype, h_L in
h0's; gradients in each input's dtype. Float64 inputs are served by the torch backend
(Triton's float64 is not what a GPU is fast at, and the torch backend keeps float64).

This module holds the op, its launch policy and the autograd Function; the kernels are in
:mod:`.selective_scan_fwd` and :mod:`.selective_scan_bwd`, what one of their programs owns and reads
(its channel tile, parameters, a block of steps) in :mod:`.scan_tile`.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import triton
from torch import Tensor

from ssm_signal.kernels.triton.selective_scan_bwd import bwd_fwd_kernel, bwd_rev_kernel
from ssm_signal.kernels.triton.selective_scan_fwd import fwd_kernel


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
        fwd_kernel[grid](
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
        bwd_fwd_kernel[grid](
            x, dt, A, B, C, D, z, dt_bias, h0, g_y,
            dz, alpha, dC, dA1, dDp, hseg, dseg,
            L, Din, N, K, n_seg, s_part, *strides, **flags, num_warps=cfg.num_warps,
        )
        dx = torch.empty((Bsz, L, Din), dtype=x.dtype, device=dev)
        ddt = torch.empty((Bsz, L, Din), dtype=dt.dtype, device=dev)
        dh0 = torch.empty(h0.shape, **f32)
        bwd_rev_kernel[grid](
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
