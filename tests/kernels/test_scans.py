"""Kernel-level checks of the torch algorithms against the sequential reference, on the
awkward lengths (1, primes, exact multiples, shorter than a chunk) and with gradients."""

from __future__ import annotations

import pytest
import torch

from ssm_signal.kernels import attention_torch, lti_torch, reference, selective_torch, ssd_torch
from ssm_signal.kernels.linear_scan import linear_scan
from tests.helpers import rel_err


def loop_scan(a, b, h0):
    h, out = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("chunk", [None, 2, 4])  # the sequential (CPU) and chunked (GPU) schedules
@pytest.mark.parametrize("L", [1, 2, 7, 16, 17, 101])
@pytest.mark.parametrize("batch", [1, 2])  # batch 1: the time-major copy must not alias the input
def test_linear_scan_forward_and_backward(L, chunk, batch, seed):
    a = torch.rand(batch, L, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(batch, L, 3, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(batch, 3, 4, dtype=torch.float64, requires_grad=True)
    b_before = b.detach().clone()
    h = linear_scan(a, b, h0, chunk)
    assert torch.equal(b.detach(), b_before)  # inputs are never written
    h_ref = loop_scan(a, b, h0)
    assert rel_err(h, h_ref) <= 1e-12
    w = torch.randn_like(h)
    g = torch.autograd.grad((h * w).sum(), (a, b, h0))
    g_ref = torch.autograd.grad((h_ref * w).sum(), (a, b, h0))
    for x, y in zip(g, g_ref, strict=True):
        assert rel_err(x, y) <= 1e-12


def test_linear_scan_gradcheck(seed):
    a = torch.rand(1, 5, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))


def test_linear_scan_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="linear_scan shapes"):
        linear_scan(torch.rand(1, 4, 3), torch.rand(1, 4, 2), torch.rand(1, 3))


@pytest.mark.parametrize("L", [1, 5, 33])
def test_selective_scan_torch_vs_reference(L, seed):
    Bsz, Din, N = 2, 6, 4
    f = dict(dtype=torch.float64)
    args = (torch.randn(Bsz, L, Din, **f), torch.randn(Bsz, L, Din, **f), -torch.rand(Din, N, **f) * 4,
            torch.randn(Bsz, L, N, **f), torch.randn(Bsz, L, N, **f), torch.randn(Din, **f),
            torch.randn(Bsz, L, Din, **f), torch.randn(Din, **f), torch.randn(Bsz, Din, N, **f))
    y_ref, h_ref = reference.selective_scan(*args)
    # default schedule, then small blocks (state carried across blocks) with chunked in-block scans
    for kw in ({}, {"block": 2, "chunk": 0}, {"block": 16, "chunk": 3}):
        y, h = selective_torch.selective_scan(*args, **kw)
        assert rel_err(y, y_ref) <= 1e-12 and rel_err(h, h_ref) <= 1e-12, kw


@pytest.mark.parametrize("block,chunk", [(None, None), (3, 0), (7, 2)])
def test_selective_scan_torch_gradients_every_schedule(block, chunk, seed):
    Bsz, L, Din, N = 2, 11, 5, 3
    f = dict(dtype=torch.float64, requires_grad=True)
    args = [torch.randn(Bsz, L, Din, **f), torch.randn(Bsz, L, Din, **f), (-torch.rand(Din, N) * 4).double(),
            torch.randn(Bsz, L, N, **f), torch.randn(Bsz, L, N, **f), torch.randn(Din, **f),
            torch.randn(Bsz, L, Din, **f), torch.randn(Din, **f), torch.randn(Bsz, Din, N, **f)]
    args[2].requires_grad_(True)
    w = torch.randn(Bsz, L, Din, dtype=torch.float64)
    wh = torch.randn(Bsz, Din, N, dtype=torch.float64)

    def loss(y, h):
        return (y * w).sum() + (h * wh).sum()

    g = torch.autograd.grad(loss(*selective_torch.selective_scan(*args, block=block, chunk=chunk)), args)
    g_ref = torch.autograd.grad(loss(*reference.selective_scan(*args)), args)
    for i, (a, b) in enumerate(zip(g, g_ref, strict=True)):
        assert rel_err(a, b) <= 1e-10, i


@pytest.mark.parametrize("L,chunk", [(1, 4), (3, 4), (8, 4), (13, 4), (13, 64)])
def test_ssd_torch_vs_reference(L, chunk, seed):
    Bsz, H, P, G, N = 2, 4, 3, 2, 5
    f = dict(dtype=torch.float64)
    args = (torch.randn(Bsz, L, H, P, **f), torch.randn(Bsz, L, H, **f), -torch.rand(H, **f) * 8,
            torch.randn(Bsz, L, G, N, **f), torch.randn(Bsz, L, G, N, **f), torch.randn(H, **f),
            torch.randn(H, **f), torch.randn(Bsz, H, P, N, **f))
    y, h = ssd_torch.ssd_scan(*args, chunk_size=chunk)
    y_ref, h_ref = reference.ssd_scan(*args)
    assert rel_err(y, y_ref) <= 1e-12 and rel_err(h, h_ref) <= 1e-12


def test_segsum_is_stable_and_masked():
    x = torch.full((6,), -30.0, dtype=torch.float64)
    s = ssd_torch.segsum(x)
    assert s[5, 0] == -150.0 and s[3, 3] == 0.0 and s[0, 3] == -torch.inf


@pytest.mark.parametrize("L", [1, 9, 64])
def test_lti_fft_vs_recurrence(L, seed):
    H, N2 = 3, 4
    A = torch.complex(-torch.rand(H, N2, dtype=torch.float64), torch.randn(H, N2, dtype=torch.float64))
    dtA = A * 0.1
    B_bar = (torch.exp(dtA) - 1) / A
    C = torch.randn(H, N2, dtype=torch.complex128)
    u = torch.randn(2, L, H, dtype=torch.float64)
    h0 = torch.randn(2, H, N2, dtype=torch.complex128)
    y, h = lti_torch.lti_scan(u, dtA, B_bar, C, h0)
    y_ref, h_ref = reference.lti_scan(u, dtA, B_bar, C, h0)
    assert rel_err(y, y_ref) <= 1e-10 and rel_err(torch.view_as_real(h), torch.view_as_real(h_ref)) <= 1e-10


@pytest.mark.parametrize("L,window", [(1, 2), (7, 3), (20, 6), (5, 9)])
def test_local_attention_torch_vs_reference(L, window, seed):
    Bsz, nh, hd = 3, 2, 4
    f = dict(dtype=torch.float64)
    q, k, v = (torch.randn(Bsz, nh, L, hd, **f) for _ in range(3))
    kc, vc = torch.randn(Bsz, nh, window - 1, hd, **f), torch.randn(Bsz, nh, window - 1, hd, **f)
    t0 = torch.tensor([0, 1, 37])  # streams at different positions, one fresh
    y, kc2, vc2 = attention_torch.local_attention(q, k, v, kc, vc, t0, window)
    y_r, kc_r, vc_r = reference.local_attention(q, k, v, kc, vc, t0, window)
    assert rel_err(y, y_r) <= 1e-12
    assert torch.equal(kc2, kc_r) and torch.equal(vc2, vc_r)
