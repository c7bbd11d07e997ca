"""Scan kernels behind one dispatch point (see :mod:`ssm_signal.kernels.registry`).

Backends: ``reference`` (sequential spec), ``torch`` (chunked parallel algorithms in
plain PyTorch), and the optional GPU backends registered when they import.
"""

from ssm_signal.kernels import export_ops as _export_ops
from ssm_signal.kernels import reference
from ssm_signal.kernels.attention_torch import local_attention as _local_attention_torch
from ssm_signal.kernels.lti_torch import lti_scan as _lti_scan_torch
from ssm_signal.kernels.registry import (
    OPS,
    Backend,
    active,
    available,
    get_op,
    mark_unavailable,
    register,
    resolve,
    unavailable,
    use,
)
from ssm_signal.kernels.selective_torch import selective_scan as _selective_scan_torch
from ssm_signal.kernels.ssd_torch import ssd_scan as _ssd_scan_torch

register(Backend(
    name="reference",
    ops={op: getattr(reference, op) for op in OPS},
    devices=("cpu", "cuda"),
    priority=0,
    fallback=None,
))

# One step of a recurrence is already a handful of vectorised ops: the torch backend
# shares the reference step functions (the in-place serving steps included: step + masked
# write) and replaces only the sequence-level ops.
register(Backend(
    name="torch",
    ops={
        "selective_scan": _selective_scan_torch,
        "selective_step": reference.selective_step,
        "ssd_scan": _ssd_scan_torch,
        "ssd_step": reference.ssd_step,
        "selective_step_inplace": reference.selective_step_inplace,
        "ssd_step_inplace": reference.ssd_step_inplace,
        "lti_scan": _lti_scan_torch,
        "local_attention": _local_attention_torch,
        "gated_rms_norm": reference.gated_rms_norm,
        "mel_energy": reference.mel_energy,
        "conv_step": reference.conv_step,
    },
    devices=("cpu", "cuda"),
    priority=10,
))

# Formulations that graph exporters lower to small graphs (ONNX has no complex type, its DFT is slow
# and less accurate than a matmul for the log-mel's 400 points, rms_norm is one node, a conv step is
# one product and sum over its window, an einsum runs as a generic loop): never chosen by ``auto``, forced
# with ``use("export")`` around an export (pipelines.export); the rest falls back to ``torch``.
register(Backend(
    name="export",
    ops={"mel_energy": _export_ops.mel_energy, "gated_rms_norm": _export_ops.gated_rms_norm,
         "conv_step": _export_ops.conv_step, "ssd_step": _export_ops.ssd_step,
         "ssd_scan": _export_ops.ssd_scan},
    devices=("cpu", "cuda"),
    priority=-1,
    fallback="torch",
    accepts=lambda op, device: False,
))

from ssm_signal.kernels import optional as _optional  # noqa: E402  (registers GPU backends)

_optional.register_optional_backends()

__all__ = [
    "OPS", "Backend", "active", "available", "get_op", "mark_unavailable", "register",
    "resolve", "unavailable", "use",
]
