"""Registration of the optional GPU backends (``triton``, ``mamba_ssm``).

Each is registered only when it can run here; otherwise the reason is recorded once and
``kernels.unavailable()`` reports it, and ``auto`` falls back to ``torch``. Nothing here
imports triton or mamba_ssm on a machine without CUDA (tests that run the Triton kernels
on the CPU under ``TRITON_INTERPRET=1`` import :mod:`ssm_signal.kernels.triton` directly).
"""

from __future__ import annotations

import importlib.util

import torch

from ssm_signal.kernels.registry import mark_unavailable


def _register_triton() -> None:
    if importlib.util.find_spec("triton") is None:
        mark_unavailable("triton", "the triton package is not installed")
        return
    if not torch.cuda.is_available():
        mark_unavailable("triton", "no CUDA device (Triton kernels run on the GPU; tests use TRITON_INTERPRET=1)")
        return
    try:
        from ssm_signal.kernels.triton import register_backend
    except Exception as e:  # a broken Triton install must not break the library
        mark_unavailable("triton", f"the Triton kernels do not import: {type(e).__name__}: {e}")
        return
    register_backend()


def _register_mamba_ssm() -> None:
    if importlib.util.find_spec("mamba_ssm") is None:
        mark_unavailable("mamba_ssm", "mamba-ssm is not installed (pip install 'ssm-signal[mamba]')")
        return
    from ssm_signal.kernels.mamba_ssm_adapter import register_backend

    register_backend()  # records the reason itself when it cannot register


def register_optional_backends() -> None:
    _register_triton()
    _register_mamba_ssm()
