"""Registration of the optional GPU backends (triton, mamba_ssm) and the mamba_ssm adapter.

On a machine without CUDA both are absent with a recorded reason. On the GPU, ``triton``
serves the ops it implements and falls back to ``torch`` for the rest. The mamba_ssm
adapter is tested on the GPU with the benchmark-only shim: a placeholder module named
``selective_scan_cuda`` lets a Python-only mamba-ssm install import (its Triton kernels
need no CUDA build); the test skips, with that reason, where mamba-ssm is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch

from ssm_signal import kernels
from ssm_signal.kernels import mamba_ssm_adapter, reference
from tests.helpers import rel_err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only registration")
def test_without_cuda_the_gpu_backends_say_why():
    reasons = kernels.unavailable()
    assert "triton" not in kernels.available() and "mamba_ssm" not in kernels.available()
    assert "CUDA" in reasons["triton"] or "not installed" in reasons["triton"]
    assert "mamba" in reasons["mamba_ssm"]


def test_adapter_records_why_mamba_ssm_does_not_import(monkeypatch):
    # the state of a Python-only install: the package is there, its __init__ fails
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)
    monkeypatch.setattr(mamba_ssm_adapter, "_ops", {})
    reason = mamba_ssm_adapter.load()
    assert reason is not None and "does not import" in reason


def test_adapter_uses_the_cuda_scan_only_when_it_is_real(monkeypatch):
    monkeypatch.delitem(sys.modules, "selective_scan_cuda", raising=False)
    assert not mamba_ssm_adapter.has_cuda_scan()
    placeholder = types.ModuleType("selective_scan_cuda")  # the benchmark shim: no kernels in it
    monkeypatch.setitem(sys.modules, "selective_scan_cuda", placeholder)
    assert not mamba_ssm_adapter.has_cuda_scan()
    placeholder.fwd = placeholder.bwd = lambda *a: None
    assert mamba_ssm_adapter.has_cuda_scan()


def test_triton_op_table_names_known_ops(triton_device):
    from ssm_signal.kernels import triton as tk

    ops = tk.build_ops()
    assert {"selective_scan", "selective_step", "ssd_step"} <= set(ops) <= set(kernels.OPS)


@pytest.mark.gpu
def test_gpu_triton_is_registered_above_torch_with_fallback(cuda_device):
    dev = torch.device(cuda_device)
    assert "triton" in kernels.available(dev) and "triton" not in kernels.unavailable()
    for op in ("selective_scan", "selective_step", "ssd_step"):
        assert kernels.resolve(op, dev).name == "triton", op
    with kernels.use("triton"):  # ops it lacks come from torch
        assert kernels.resolve("lti_scan", dev).name == "torch"
        assert kernels.resolve("local_attention", dev).name == "torch"


@pytest.fixture
def mamba_ssm_backend(cuda_device):
    if importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm is not installed (optional extra)")
    if "selective_scan_cuda" not in sys.modules and importlib.util.find_spec("selective_scan_cuda") is None:
        # test-only shim: a Python-only install lacks the Mamba-1 CUDA extension its __init__ imports
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
    backend = mamba_ssm_adapter.register_backend()
    assert backend is not None, kernels.unavailable().get("mamba_ssm")
    yield backend
    kernels.registry._BACKENDS.pop("mamba_ssm", None)


@pytest.mark.gpu
def test_gpu_mamba_ssm_adapter_ssd_scan(mamba_ssm_backend, seed):
    Bsz, L, H, P, G, N = 2, 300, 4, 32, 1, 64
    d = "cuda"
    args = [torch.randn(Bsz, L, H, P, device=d), torch.randn(Bsz, L, H, device=d) - 1,
            -torch.empty(H, device=d).uniform_(1, 16), torch.randn(Bsz, L, G, N, device=d),
            torch.randn(Bsz, L, G, N, device=d), torch.randn(H, device=d), torch.randn(H, device=d) * 0.5,
            torch.randn(Bsz, H, P, N, device=d)]
    leaves = [a.clone().requires_grad_(True) for a in args]
    with kernels.use("mamba_ssm"):
        y, h = kernels.get_op("ssd_scan", torch.device(d))(*leaves, 64)
    y_r, h_r = reference.ssd_scan(*(a.double() for a in args))
    # its matrix products run in tf32 (10-bit mantissa)
    assert rel_err(y, y_r) <= 2e-2 and rel_err(h, h_r) <= 2e-2
    (y.sum() + h.sum()).backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in leaves)  # h0 gets a gradient too


@pytest.mark.gpu
def test_gpu_mamba_ssm_adapter_steps_past_65536_rows(mamba_ssm_backend, seed):
    d = "cuda"
    Bsz, H, P, G, N = 70_000, 4, 32, 1, 16
    x, dt = torch.randn(Bsz, H, P, device=d), torch.randn(Bsz, H, device=d) - 1
    A, D, bias = -torch.empty(H, device=d).uniform_(1, 16), torch.randn(H, device=d), torch.randn(H, device=d)
    B, C = torch.randn(Bsz, G, N, device=d), torch.randn(Bsz, G, N, device=d)
    h = torch.randn(Bsz, H, P, N, device=d)
    with kernels.use("mamba_ssm"):
        y, h_new = kernels.get_op("ssd_step", torch.device(d))(x, dt, A, B, C, D, bias, h)
    y_r, h_r = reference.ssd_step(x, dt, A, B, C, D, bias, h)
    assert rel_err(y, y_r) <= 1e-4 and rel_err(h_new, h_r) <= 1e-4

    Din = 64
    x, dt, z = (torch.randn(1000, Din, device=d) for _ in range(3))
    A = -torch.empty(Din, N, device=d).uniform_(0.5, 8)
    B, C, h = torch.randn(1000, N, device=d), torch.randn(1000, N, device=d), torch.randn(1000, Din, N, device=d)
    with kernels.use("mamba_ssm"):
        y, h_new = kernels.get_op("selective_step", torch.device(d))(x, dt, A, B, C, None, z, None, h)
    y_r, h_r = reference.selective_step(x, dt, A, B, C, None, z, None, h)
    assert rel_err(y, y_r) <= 1e-4 and rel_err(h_new, h_r) <= 1e-4
