"""One recurrence step for many streams at once, in Triton: Mamba-1 (S6) and Mamba-2 (SSD).

The serving path (StreamPool) keeps every live stream's SSM state in one pool tensor and
advances the streams that have a new frame with one kernel launch:

    selective_state_update(h_pool, slots, x, dt, A, B, C, D, z, dt_bias, active=None) -> y   # Mamba-1
    ssd_state_update(h_pool, slots, x, dt, A, B, C, D, dt_bias, active=None) -> y             # Mamba-2

Row i of the inputs belongs to the stream in pool slot ``slots[i]`` (slots None: slot i); its
state is read once and written once, in place (symbols as in :mod:`ssm_signal.kernels.reference`):

    Δ = softplus(dt + dt_bias),  h ← exp(Δ A) h + Δ x B,  y = C · h + D x  (Mamba-1: y *= silu(z))

The grid is one-dimensional (streams x channel blocks on axis 0, which may hold 2^31 - 1
programs), so a call may carry any number of streams; a grid that put the streams on
axis 1 or 2 would stop at 65,535.

An optional ``active`` (B,) bool/uint8 mask selects the rows that advance: a row with
active False neither reads nor writes its state (its state load and store are predicated
off, so an idle stream costs no state traffic); its y is computed from a zero state, finite
and meaningless (the pool ignores it).

``selective_step`` and ``ssd_step`` are the pure ops the layers' ``step`` uses (same
signature and semantics as the reference: the state is returned new, never written in
place); they run the same kernels with a fresh output state. ``selective_step_inplace`` and
``ssd_step_inplace`` are the serving ops the layers' ``step_`` uses (the reference's
in-place twins: the state ``h`` (B, ...) advanced in place where ``active``, y returned);
under ``torch.compile`` all four are opaque custom ops, the in-place ones declared as
mutating ``h`` so that the compiled graph orders the reads and writes of the state around them.

The state may be float32 (the default) or half precision; arithmetic is float32. Float64
calls are served by the reference step functions.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ssm_signal.kernels import reference
from ssm_signal.kernels.triton.elementwise import LOG2E, softplus
from ssm_signal.validation import check_active

_TILE = 2048  # state elements per program: 16 per thread at 4 warps


# ---------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------
@triton.jit
def _selective_step_kernel(
    hin_ptr, hout_ptr, slot_ptr, act_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
    Din, N, n_db, s_hin, s_hout, s_xb, s_dtb, s_zb, s_Bb, s_Cb,
    BD: tl.constexpr, NP: tl.constexpr, HAS_SLOTS: tl.constexpr, HAS_ACTIVE: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // n_db).to(tl.int64)
    pid_d = pid % n_db
    if HAS_SLOTS:
        slot = tl.load(slot_ptr + b).to(tl.int64)
        out = slot
    else:
        slot = b
        out = b
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    md = offs_d < Din
    mn = offs_n < N
    mdn = md[:, None] & mn[None, :]
    if HAS_ACTIVE:  # an idle row: its state is neither loaded nor stored
        mdn = mdn & (tl.load(act_ptr + b) != 0)
    dn = offs_d[:, None] * N + offs_n[None, :]

    h = tl.load(hin_ptr + slot * s_hin + dn, mask=mdn, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + b * s_xb + offs_d, mask=md, other=0.0).to(tl.float32)
    pre = tl.load(dt_ptr + b * s_dtb + offs_d, mask=md, other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre += tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    A2 = tl.load(A_ptr + dn, mask=mdn, other=0.0).to(tl.float32) * LOG2E
    Bv = tl.load(B_ptr + b * s_Bb + offs_n, mask=mn, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * s_Cb + offs_n, mask=mn, other=0.0).to(tl.float32)
    delta = softplus(pre)
    h = tl.exp2(delta[:, None] * A2) * h + (delta * x)[:, None] * Bv[None, :]
    tl.store(hout_ptr + out * s_hout + dn, h.to(hout_ptr.dtype.element_ty), mask=mdn)
    y = tl.sum(h * Cv[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32) * x
    if HAS_Z:
        z = tl.load(z_ptr + b * s_zb + offs_d, mask=md, other=0.0).to(tl.float32)
        y *= z * tl.sigmoid(z)
    tl.store(y_ptr + b * Din + offs_d, y.to(y_ptr.dtype.element_ty), mask=md)


@triton.jit
def _ssd_step_kernel(
    hin_ptr, hout_ptr, slot_ptr, act_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    H, P, N, heads_per_group, n_pb, s_hin, s_hout, s_xb, s_xh, s_dtb, s_Bb, s_Bg, s_Cb, s_Cg,
    BP: tl.constexpr, NP: tl.constexpr, HAS_SLOTS: tl.constexpr, HAS_ACTIVE: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_p = pid % n_pb
    bh = pid // n_pb
    hh = bh % H
    b = (bh // H).to(tl.int64)
    if HAS_SLOTS:
        slot = tl.load(slot_ptr + b).to(tl.int64)
        out = slot
    else:
        slot = b
        out = b
    g = hh // heads_per_group
    offs_p = pid_p * BP + tl.arange(0, BP)
    offs_n = tl.arange(0, NP)
    mp = offs_p < P
    mn = offs_n < N
    mpn = mp[:, None] & mn[None, :]
    if HAS_ACTIVE:  # an idle row: its state is neither loaded nor stored
        mpn = mpn & (tl.load(act_ptr + b) != 0)
    pn = hh * P * N + offs_p[:, None] * N + offs_n[None, :]

    h = tl.load(hin_ptr + slot * s_hin + pn, mask=mpn, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + b * s_xb + hh * s_xh + offs_p, mask=mp, other=0.0).to(tl.float32)
    pre = tl.load(dt_ptr + b * s_dtb + hh).to(tl.float32)
    if HAS_BIAS:
        pre += tl.load(bias_ptr + hh).to(tl.float32)
    delta = softplus(pre)  # one Δ per head
    dA = tl.exp2(delta * tl.load(A_ptr + hh).to(tl.float32) * LOG2E)
    Bv = tl.load(B_ptr + b * s_Bb + g * s_Bg + offs_n, mask=mn, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * s_Cb + g * s_Cg + offs_n, mask=mn, other=0.0).to(tl.float32)
    h = dA * h + (delta * x)[:, None] * Bv[None, :]
    tl.store(hout_ptr + out * s_hout + pn, h.to(hout_ptr.dtype.element_ty), mask=mpn)
    y = tl.sum(h * Cv[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + hh).to(tl.float32) * x
    tl.store(y_ptr + (b * H + hh) * P + offs_p, y.to(y_ptr.dtype.element_ty), mask=mp)


# ---------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------
def _check(name: str, t: Tensor | None, shape: tuple[int, ...], like: Tensor) -> None:
    if t is None:
        return
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device}, the state on {like.device}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {t.dtype}")


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def check_slots(slots: Tensor, n_rows: int, pool_size: int, device: torch.device, check_values: bool) -> None:
    """slots: (B,) integer indices into a pool of ``pool_size`` states, distinct.

    The value checks synchronise with the device; they are skipped while a CUDA graph is
    being captured (validate slots when they are assigned instead) or when
    ``check_values`` is False.
    """
    if slots.dim() != 1 or slots.shape[0] != n_rows:
        raise ValueError(f"slots must have shape ({n_rows},), got {tuple(slots.shape)}")
    if slots.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"slots must be int32 or int64, got {slots.dtype}")
    if slots.device != device:
        raise ValueError(f"slots are on {slots.device}, the state pool on {device}")
    if not check_values or n_rows == 0 or _capturing(device):
        return
    lo, hi = int(slots.min()), int(slots.max())
    if lo < 0 or hi >= pool_size:
        raise ValueError(f"slots must lie in [0, {pool_size}), got values in [{lo}, {hi}]")
    if torch.unique(slots).numel() != n_rows:
        raise ValueError("slots must be distinct: two rows updating one state in place would race")


def _contiguous(t: Tensor | None) -> Tensor | None:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _check_pool(h_pool: Tensor, slots: Tensor | None, active: Tensor | None, n_rows: int, check: bool) -> None:
    """The in-place target: contiguous; rows named by distinct ``slots``, or row i = state i."""
    if not h_pool.is_contiguous():
        raise ValueError("the state must be contiguous (it is updated in place)")
    if slots is None:
        if h_pool.shape[0] != n_rows:
            raise ValueError(f"without slots the state's batch ({h_pool.shape[0]}) must equal x's ({n_rows})")
    else:
        check_slots(slots, n_rows, h_pool.shape[0], h_pool.device, check)
    check_active(active, n_rows, h_pool.device)


def _as_bytes(active: Tensor | None) -> Tensor | None:
    # the kernels read one byte per row; a bool tensor is one byte per element, so this is a view
    return active.view(torch.uint8) if active is not None and active.dtype == torch.bool else active


# ---------------------------------------------------------------------------------------
# Mamba-1
# ---------------------------------------------------------------------------------------
def _selective_launch(h_in: Tensor, h_out: Tensor, slots: Tensor | None, x, dt, A, B, C, D, z, dt_bias,
                      active: Tensor | None = None) -> Tensor:
    Bsz, Din = x.shape
    N = A.shape[1]
    x, dt, B, C, z = (_contiguous(t) for t in (x, dt, B, C, z))
    A = A.contiguous()
    y = torch.empty((Bsz, Din), dtype=x.dtype, device=x.device)
    if Bsz == 0:
        return y
    NP = triton.next_power_of_2(N)
    BD = min(triton.next_power_of_2(Din), max(16, _TILE // NP))
    n_db = triton.cdiv(Din, BD)
    _selective_step_kernel[(Bsz * n_db,)](
        h_in, h_out, slots, _as_bytes(active), x, dt, A, B, C, D, z, dt_bias, y,
        Din, N, n_db, h_in.stride(0), h_out.stride(0), x.stride(0), dt.stride(0),
        z.stride(0) if z is not None else 0, B.stride(0), C.stride(0),
        BD=BD, NP=NP, HAS_SLOTS=slots is not None, HAS_ACTIVE=active is not None, HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=dt_bias is not None, num_warps=4,
    )
    return y


def _check_selective(h: Tensor, x, dt, A, B, C, D, z, dt_bias) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must be (B, D_in), got {tuple(x.shape)}")
    Bsz, Din = x.shape
    if A.dim() != 2 or A.shape[0] != Din:
        raise ValueError(f"A must be (D_in={Din}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    if h.dim() != 3 or tuple(h.shape[1:]) != (Din, N):
        raise ValueError(f"the state must be (S, D_in={Din}, N={N}), got {tuple(h.shape)}")
    for name, t, shape in (("x", x, (Bsz, Din)), ("dt", dt, (Bsz, Din)), ("A", A, (Din, N)), ("B", B, (Bsz, N)),
                           ("C", C, (Bsz, N)), ("D", D, (Din,)), ("z", z, (Bsz, Din)), ("dt_bias", dt_bias, (Din,))):
        _check(name, t, shape, h)


def selective_state_update(
    h_pool: Tensor, slots: Tensor | None, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, dt_bias: Tensor | None = None, *,
    active: Tensor | None = None, check: bool = True,
) -> Tensor:
    """Advance the Mamba-1 states ``h_pool[slots]`` by one step, in place; return y.

    h_pool: (S, D_in, N), contiguous; slots: (B,) distinct ints in [0, S), or None for
    slot i = row i (then S = B); x, dt, z: (B, D_in); A: (D_in, N); B, C: (B, N);
    D, dt_bias: (D_in,); active: (B,) bool/uint8 or None (every row). Returns y (B, D_in) in
    x's dtype. Slots not listed, and the slots of rows with active False, are not touched
    (not even read; such a row's y is finite and meaningless). ``check=False`` skips the slot
    value checks (a device synchronisation); they are skipped anyway inside CUDA-graph capture.
    """
    _check_selective(h_pool, x, dt, A, B, C, D, z, dt_bias)
    _check_pool(h_pool, slots, active, x.shape[0], check)
    return _selective_launch(h_pool, h_pool, slots, x, dt, A, B, C, D, z, dt_bias, active)


def selective_step(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h: Tensor,
) -> tuple[Tensor, Tensor]:
    """Pure Mamba-1 step, as :func:`ssm_signal.kernels.reference.selective_step`: (y, h_new).

    Under ``torch.compile`` this is the opaque op ``ssm_signal::selective_step`` (see
    :func:`ssd_step`)."""
    if torch.compiler.is_compiling():
        return torch.ops.ssm_signal.selective_step(x, dt, A, B, C, D, z, dt_bias, h)
    return _selective_step(x, dt, A, B, C, D, z, dt_bias, h)


def selective_step_inplace(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h: Tensor, active: Tensor | None = None,
) -> Tensor:
    """Serving Mamba-1 step, as :func:`ssm_signal.kernels.reference.selective_step_inplace`: h (B, D_in, N)
    advanced in place where ``active`` (B,) (None: every row); returns y (B, D_in).

    Under ``torch.compile`` this is the op ``ssm_signal::selective_step_inplace``, which mutates h."""
    if torch.compiler.is_compiling():
        return torch.ops.ssm_signal.selective_step_inplace(x, dt, A, B, C, D, z, dt_bias, h, active)
    return _selective_step_inplace(x, dt, A, B, C, D, z, dt_bias, h, active)


def _selective_step_inplace(x, dt, A, B, C, D, z, dt_bias, h, active):
    if any(t is not None and t.dtype == torch.float64 for t in (x, dt, A, h)):
        return reference.selective_step_inplace(x, dt, A, B, C, D, z, dt_bias, h, active)
    return selective_state_update(h, None, x, dt, A, B, C, D, z, dt_bias, active=active)


def _selective_step(x, dt, A, B, C, D, z, dt_bias, h):
    if any(t is not None and t.dtype == torch.float64 for t in (x, dt, A, h)):
        return reference.selective_step(x, dt, A, B, C, D, z, dt_bias, h)
    _check_selective(h, x, dt, A, B, C, D, z, dt_bias)
    if h.shape[0] != x.shape[0]:
        raise ValueError(f"the state has batch {h.shape[0]}, x has {x.shape[0]}")
    h = h.contiguous()
    h_new = torch.empty_like(h)
    y = _selective_launch(h, h_new, None, x, dt, A, B, C, D, z, dt_bias)
    return y, h_new


# ---------------------------------------------------------------------------------------
# Mamba-2
# ---------------------------------------------------------------------------------------
def _ssd_launch(h_in: Tensor, h_out: Tensor, slots: Tensor | None, x, dt, A, B, C, D, dt_bias,
                active: Tensor | None = None) -> Tensor:
    Bsz, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    x, dt, B, C = (_contiguous(t) for t in (x, dt, B, C))
    y = torch.empty((Bsz, H, P), dtype=x.dtype, device=x.device)
    if Bsz == 0:
        return y
    NP = triton.next_power_of_2(N)
    BP = min(triton.next_power_of_2(P), max(8, _TILE // NP))
    n_pb = triton.cdiv(P, BP)
    _ssd_step_kernel[(Bsz * H * n_pb,)](
        h_in, h_out, slots, _as_bytes(active), x, dt, A, B, C, D, dt_bias, y,
        H, P, N, H // G, n_pb, h_in.stride(0), h_out.stride(0), x.stride(0), x.stride(1), dt.stride(0),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        BP=BP, NP=NP, HAS_SLOTS=slots is not None, HAS_ACTIVE=active is not None, HAS_D=D is not None,
        HAS_BIAS=dt_bias is not None, num_warps=4,
    )
    return y


def _check_ssd(h: Tensor, x, dt, A, B, C, D, dt_bias) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (B, H, P), got {tuple(x.shape)}")
    Bsz, H, P = x.shape
    if B.dim() != 3:
        raise ValueError(f"B must be (B, G, N), got {tuple(B.shape)}")
    G, N = B.shape[1], B.shape[2]
    if G < 1 or H % G:
        raise ValueError(f"the number of heads ({H}) must be a multiple of the number of groups ({G})")
    if h.dim() != 4 or tuple(h.shape[1:]) != (H, P, N):
        raise ValueError(f"the state must be (S, H={H}, P={P}, N={N}), got {tuple(h.shape)}")
    for name, t, shape in (("x", x, (Bsz, H, P)), ("dt", dt, (Bsz, H)), ("A", A, (H,)), ("B", B, (Bsz, G, N)),
                           ("C", C, (Bsz, G, N)), ("D", D, (H,)), ("dt_bias", dt_bias, (H,))):
        _check(name, t, shape, h)


def ssd_state_update(
    h_pool: Tensor, slots: Tensor | None, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, dt_bias: Tensor | None = None, *, active: Tensor | None = None, check: bool = True,
) -> Tensor:
    """Advance the Mamba-2 states ``h_pool[slots]`` by one step, in place; return y.

    h_pool: (S, H, P, N), contiguous; slots: (B,) distinct ints in [0, S), or None for slot
    i = row i (then S = B); x: (B, H, P); dt: (B, H); A, D, dt_bias: (H,); B, C: (B, G, N) with
    H a multiple of G; active: (B,) bool/uint8 or None (every row). Returns y (B, H, P) in x's
    dtype. Slots not listed, and those of rows with active False, are not touched (nor read;
    such a row's y is finite and meaningless).
    """
    _check_ssd(h_pool, x, dt, A, B, C, D, dt_bias)
    _check_pool(h_pool, slots, active, x.shape[0], check)
    return _ssd_launch(h_pool, h_pool, slots, x, dt, A, B, C, D, dt_bias, active)


def ssd_step(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h: Tensor,
) -> tuple[Tensor, Tensor]:
    """Pure SSD step, as :func:`ssm_signal.kernels.reference.ssd_step`: (y, h_new).

    Under ``torch.compile`` (the CUDA-graph StreamPool compiles its tick) this is the opaque op
    ``ssm_signal::ssd_step``: Inductor fuses the work around it and calls it as it is, instead of
    re-generating this module's kernels (which it cannot: it does not carry their @triton.jit
    helpers)."""
    if torch.compiler.is_compiling():
        return torch.ops.ssm_signal.ssd_step(x, dt, A, B, C, D, dt_bias, h)
    return _ssd_step(x, dt, A, B, C, D, dt_bias, h)


def ssd_step_inplace(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h: Tensor, active: Tensor | None = None,
) -> Tensor:
    """Serving SSD step, as :func:`ssm_signal.kernels.reference.ssd_step_inplace`: h (B, H, P, N)
    advanced in place where ``active`` (B,) (None: every row), one read and one write of the
    state; returns y (B, H, P).

    Under ``torch.compile`` this is the op ``ssm_signal::ssd_step_inplace``, declared as mutating h:
    the compiled pool tick hands it the static state itself, so no new state is materialised and
    copied back (that copy was about a third of the tick's memory traffic)."""
    if torch.compiler.is_compiling():
        return torch.ops.ssm_signal.ssd_step_inplace(x, dt, A, B, C, D, dt_bias, h, active)
    return _ssd_step_inplace(x, dt, A, B, C, D, dt_bias, h, active)


def _ssd_step_inplace(x, dt, A, B, C, D, dt_bias, h, active):
    if any(t is not None and t.dtype == torch.float64 for t in (x, dt, A, h)):
        return reference.ssd_step_inplace(x, dt, A, B, C, D, dt_bias, h, active)
    return ssd_state_update(h, None, x, dt, A, B, C, D, dt_bias, active=active)


def _ssd_step(x, dt, A, B, C, D, dt_bias, h):
    if any(t is not None and t.dtype == torch.float64 for t in (x, dt, A, h)):
        return reference.ssd_step(x, dt, A, B, C, D, dt_bias, h)
    _check_ssd(h, x, dt, A, B, C, D, dt_bias)
    if h.shape[0] != x.shape[0]:
        raise ValueError(f"the state has batch {h.shape[0]}, x has {x.shape[0]}")
    h = h.contiguous()
    h_new = torch.empty_like(h)
    y = _ssd_launch(h, h_new, None, x, dt, A, B, C, D, dt_bias)
    return y, h_new


# ---------------------------------------------------------------------------------------
# the steps as opaque ops for torch.compile (eager calls never go through them)
# ---------------------------------------------------------------------------------------
def _new_like(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    return x.new_empty(x.shape), h.new_empty(h.shape)


_ssd_op = torch.library.custom_op(
    "ssm_signal::ssd_step", _ssd_step, mutates_args=(),
    schema="(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? dt_bias, Tensor h) -> (Tensor, Tensor)")
_ssd_op.register_fake(lambda x, dt, A, B, C, D, dt_bias, h: _new_like(x, h))
_selective_op = torch.library.custom_op(
    "ssm_signal::selective_step", _selective_step, mutates_args=(),
    schema="(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, Tensor h)"
           " -> (Tensor, Tensor)")
_selective_op.register_fake(lambda x, dt, A, B, C, D, z, dt_bias, h: _new_like(x, h))

# the in-place serving steps: h is declared mutated (Tensor(a!)), y is fresh
_ssd_inplace_op = torch.library.custom_op(
    "ssm_signal::ssd_step_inplace", _ssd_step_inplace, mutates_args=("h",),
    schema="(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? dt_bias, Tensor(a!) h,"
           " Tensor? active) -> Tensor")
_ssd_inplace_op.register_fake(lambda x, dt, A, B, C, D, dt_bias, h, active: x.new_empty(x.shape))
_selective_inplace_op = torch.library.custom_op(
    "ssm_signal::selective_step_inplace", _selective_step_inplace, mutates_args=("h",),
    schema="(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias,"
           " Tensor(a!) h, Tensor? active) -> Tensor")
_selective_inplace_op.register_fake(lambda x, dt, A, B, C, D, z, dt_bias, h, active: x.new_empty(x.shape))
