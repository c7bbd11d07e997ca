"""Registration of the optional GPU backends (``triton``, ``mamba_ssm``).

Each is registered only when it can run here; otherwise the reason is recorded once and
``kernels.unavailable()`` reports it, and ``auto`` falls back to ``torch``.
"""

from __future__ import annotations

import importlib.util

import torch

from ssm_signal.kernels.registry import mark_unavailable


def register_optional_backends() -> None:
    if importlib.util.find_spec("triton") is None:
        mark_unavailable("triton", "the triton package is not installed")
    elif not torch.cuda.is_available():
        mark_unavailable("triton", "no CUDA device (Triton kernels run on the GPU; tests use TRITON_INTERPRET=1)")
    else:
        mark_unavailable("triton", "no Triton kernels are registered yet")
    if importlib.util.find_spec("mamba_ssm") is None:
        mark_unavailable("mamba_ssm", "mamba-ssm is not installed (pip install 'ssm-signal[mamba]')")
    else:
        mark_unavailable("mamba_ssm", "the mamba_ssm adapter is not implemented yet")
