"""The ``triton`` kernel backend: GPU kernels behind the one dispatch point.

Modules (one concept each):
    selective_scan   Mamba-1 scan, forward and backward, with initial and final state (the op;
                     kernels in selective_scan_fwd, selective_scan_bwd; their tile in scan_tile)
    elementwise      softplus and the helpers every kernel shares
    state_update     one step for many streams: in place on a state pool (serving; by slot
                     index or with an active mask), the pure ``selective_step`` / ``ssd_step``
                     ops and their in-place serving twins ``*_step_inplace``
    ssd, ssd_fwd, ssd_bwd   Mamba-2 chunked SSD scan, forward and backward, with initial and final state
    ssd_norm         Mamba-2's gated RMSNorm, fused

:func:`register_backend` registers the backend; :mod:`ssm_signal.kernels.optional` calls
it when Triton imports and a CUDA device is present. Ops this backend lacks fall back to
``torch``. Under ``TRITON_INTERPRET=1`` the kernels also run on the CPU (tests call them
directly; the backend itself is registered for CUDA only).
"""

from __future__ import annotations

from collections.abc import Callable

from ssm_signal.kernels.triton._interpret import interpreting, patch_interpreter_index

if interpreting():
    patch_interpreter_index()

from ssm_signal.kernels.registry import Backend, register  # noqa: E402
from ssm_signal.kernels.triton import selective_scan, ssd, ssd_norm, state_update  # noqa: E402
from ssm_signal.kernels.triton.state_update import selective_state_update, ssd_state_update  # noqa: E402

NAME = "triton"
PRIORITY = 20  # above torch (10): auto prefers these kernels on CUDA


def build_ops() -> dict[str, Callable]:
    """The backend's op table."""
    return {
        "selective_scan": selective_scan.selective_scan,
        "selective_step": state_update.selective_step,
        "ssd_scan": ssd.ssd_scan,
        "ssd_step": state_update.ssd_step,
        "selective_step_inplace": state_update.selective_step_inplace,
        "ssd_step_inplace": state_update.ssd_step_inplace,
        "gated_rms_norm": ssd_norm.gated_rms_norm,
    }


def register_backend() -> Backend:
    backend = Backend(
        name=NAME,
        ops=build_ops(),
        devices=("cuda",),
        priority=PRIORITY,
        fallback="torch",
    )
    register(backend)
    return backend


__all__ = [
    "NAME", "build_ops", "register_backend", "selective_scan", "selective_state_update", "ssd", "ssd_norm",
    "ssd_state_update", "state_update",
]
