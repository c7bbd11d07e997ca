"""The ``mamba_ssm`` backend: route ops to the kernels of the mamba-ssm package when it imports.

mamba-ssm is an optional extra, never required, and the backend is opt-in: ``auto`` does not pick it.
Every op it offers is also in the ``triton`` backend, which is registered wherever this one can be
(mamba-ssm needs Triton and CUDA too) and ranks above it, because this project's kernels take an
initial state everywhere and measured as fast or faster (the Mamba2 layer forward+backward at 0.35-1.00x
of mamba-ssm's time, docs/performance.md). Select it to compare against the upstream kernels:

    with kernels.use("mamba_ssm"):
        y, h = layer(x)

What it offers, and how each op maps:

    ssd_scan        -> mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined
                       (Triton; initial_states / return_final_states, dt_bias, dt_softplus,
                       D; z=None, since our Mamba2 layer applies the gated norm itself)
    ssd_step        -> mamba_ssm.ops.triton.selective_state_update.selective_state_update
    selective_step  -> the same kernel in its Mamba-1 form
    selective_scan  -> mamba_ssm.ops.selective_scan_interface.selective_scan_fn, only when its
                       CUDA extension ``selective_scan_cuda`` really exists, and per call only
                       when h0 is zero and needs no gradient: that kernel has no initial state.
                       Otherwise the call goes to this project's Triton scan.

Facts that shape it: mamba-ssm's PyPI source package compiles CUDA for nine architectures
unless MAMBA_SKIP_CUDA_BUILD=TRUE, and its package ``__init__`` imports the Mamba-1 CUDA
extension, so a Python-only install does not import at all (the Triton paths above would
run, but cannot be reached without importing the package). When it does not import, the
reason is recorded once (``kernels.unavailable()``).

Its step kernel puts the batch on grid axis 1, which stops at 65,535 rows: calls are cut
into slices below that. It crashes without D and dt_bias: zeros are passed for absent ones.
Float64 calls go to the torch/reference ops (its kernels are float32/half).
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from ssm_signal.kernels import reference
from ssm_signal.kernels.registry import Backend, mark_unavailable, register

NAME = "mamba_ssm"
PRIORITY = 15  # below triton (20), which has every op listed here: auto never takes these (opt-in)
_MAX_ROWS = 32768  # rows per selective_state_update launch (its grid axis 1 holds 65,535)

_ops: dict = {}  # the imported mamba_ssm functions, filled by load()


def load() -> str | None:
    """Import mamba_ssm's kernels; returns None on success, else the reason it cannot be used."""
    if _ops:
        return None
    try:
        import mamba_ssm  # noqa: F401  (its __init__ is where the CUDA extension import fails)
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as e:  # ImportError, or anything its import-time code raises
        hint = ""
        if "selective_scan_cuda" in str(e):
            hint = (" (its package __init__ imports the Mamba-1 CUDA extension selective_scan_cuda, "
                    "which a MAMBA_SKIP_CUDA_BUILD=TRUE install does not build)")
        return f"mamba_ssm is installed but does not import: {type(e).__name__}: {e}{hint}"
    _ops.update(chunk_scan=mamba_chunk_scan_combined, state_update=selective_state_update,
                scan_fn=selective_scan_fn)
    return None


def has_cuda_scan() -> bool:
    """Whether mamba_ssm's Mamba-1 CUDA scan is really there (not a placeholder module)."""
    ext = sys.modules.get("selective_scan_cuda")
    return ext is not None and callable(getattr(ext, "fwd", None)) and callable(getattr(ext, "bwd", None))


def _any_float64(*tensors: Tensor | None) -> bool:
    return any(t is not None and t.dtype == torch.float64 for t in tensors)


# ---------------------------------------------------------------------------------------
# ops
# ---------------------------------------------------------------------------------------
def ssd_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h0: Tensor, chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """As :func:`ssm_signal.kernels.reference.ssd_scan`, through mamba_chunk_scan_combined."""
    if _any_float64(x, dt, A, B, C, D, dt_bias, h0):
        from ssm_signal.kernels.ssd_torch import ssd_scan as torch_ssd

        return torch_ssd(x, dt, A, B, C, D, dt_bias, h0, chunk_size)
    # its kernels tile a chunk with tl.dot: a power of two, at least 16; the result does not
    # depend on the chunking
    cs = min(256, max(16, 1 << (max(1, int(chunk_size)) - 1).bit_length()))
    y, h_L = _ops["chunk_scan"](
        x, dt, A, B, C, cs, D=D, z=None, dt_bias=dt_bias, initial_states=h0,
        dt_softplus=True, return_final_states=True,
    )
    return y, h_L.to(h0.dtype)


def _state_update(state, x, dt, A, B, C, D, z, dt_bias) -> Tensor:
    """Its in-place update, in slices of at most _MAX_ROWS rows."""
    fn = _ops["state_update"]
    ys = []
    for i in range(0, x.shape[0], _MAX_ROWS):
        s = slice(i, i + _MAX_ROWS)
        ys.append(fn(state[s], x[s], dt[s], A, B[s], C[s], D=D, z=None if z is None else z[s],
                     dt_bias=dt_bias, dt_softplus=True))
    return ys[0] if len(ys) == 1 else torch.cat(ys)


def selective_step(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h: Tensor,
) -> tuple[Tensor, Tensor]:
    """As :func:`ssm_signal.kernels.reference.selective_step`, through its selective_state_update."""
    if _any_float64(x, dt, A, B, C, D, z, dt_bias, h):
        return reference.selective_step(x, dt, A, B, C, D, z, dt_bias, h)
    Din = x.shape[1]
    zeros = torch.zeros(Din, device=x.device, dtype=torch.float32)
    h_new = h.clone()  # the kernel writes in place; the contract returns a new state
    y = _state_update(h_new, x, dt, A, B, C, zeros if D is None else D, z, zeros if dt_bias is None else dt_bias)
    return y, h_new


def ssd_step(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h: Tensor,
) -> tuple[Tensor, Tensor]:
    """As :func:`ssm_signal.kernels.reference.ssd_step`: x (B, H, P), dt (B, H), A, D, dt_bias (H,)."""
    if _any_float64(x, dt, A, B, C, D, dt_bias, h):
        return reference.ssd_step(x, dt, A, B, C, D, dt_bias, h)
    Bsz, H, P = x.shape
    N = B.shape[-1]
    zeros = torch.zeros(H, device=x.device, dtype=torch.float32)
    D_, bias = zeros if D is None else D, zeros if dt_bias is None else dt_bias
    # its multi-head form: per-(head, channel) parameters, broadcast with stride 0 (its
    # kernel detects the stride-0 "tied" layout and reads one Δ and one A per head)
    h_new = h.clone()
    y = _state_update(
        h_new, x, dt[:, :, None].expand(Bsz, H, P), A[:, None, None].expand(H, P, N), B, C,
        D_[:, None].expand(H, P), None, bias[:, None].expand(H, P),
    )
    return y, h_new


def selective_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h0: Tensor,
) -> tuple[Tensor, Tensor]:
    """As :func:`ssm_signal.kernels.reference.selective_scan`; mamba_ssm's CUDA scan when h0 is
    zero and needs no gradient (it has no initial state), else this project's Triton scan.

    The zero test reads h0 on the device (one synchronisation per call).
    """
    from ssm_signal.kernels.triton.selective_scan import selective_scan as triton_scan

    if (_any_float64(x, dt, A, B, C, D, z, dt_bias, h0) or not has_cuda_scan() or h0.requires_grad
            or bool(h0.any())):
        return triton_scan(x, dt, A, B, C, D, z, dt_bias, h0)
    y, h_L = _ops["scan_fn"](
        x.transpose(1, 2), dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
        None if z is None else z.transpose(1, 2), dt_bias, delta_softplus=True, return_last_state=True,
    )
    return y.transpose(1, 2), h_L.to(h0.dtype)


# ---------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------
def register_backend() -> Backend | None:
    """Register the backend if mamba_ssm imports and CUDA is present; else record why."""
    if not torch.cuda.is_available():
        mark_unavailable(NAME, "no CUDA device (mamba_ssm's kernels run on the GPU)")
        return None
    reason = load()
    if reason is not None:
        mark_unavailable(NAME, reason)
        return None
    ops = {"ssd_scan": ssd_scan, "ssd_step": ssd_step, "selective_step": selective_step}
    if has_cuda_scan():
        ops["selective_scan"] = selective_scan
    backend = Backend(name=NAME, ops=ops, devices=("cuda",), priority=PRIORITY, fallback="torch")
    register(backend)
    return backend
