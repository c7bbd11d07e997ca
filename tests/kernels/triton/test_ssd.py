"""The Triton SSD scan (Mamba-2) and its gated RMSNorm against the float64 references.

Unmarked tests use tiny shapes and run on CPU under ``TRITON_INTERPRET=1`` (``make test-interpret``,
CI) or on a GPU; ``gpu``-marked tests use full-size shapes on the device. Without either, the
module is skipped with the reason recorded (the interpreter run is what covers it on CPU).

Tolerances (rel_err = max |a - b| / max |b| against float64): the interpreter computes in exact
fp32, so 1e-4. On the GPU the fp32 products run in tf32 (10-bit mantissa, as mamba_ssm's kernels),
so 1e-2 on outputs and gradients (measured on an H100: y <= 2.2e-3, gradients <= 3.6e-3, as close as
mamba_ssm's kernels); bf16 inputs: 3e-2 on y and h_L (measured <= 4.5e-3), 5e-2 on gradients (measured
<= 1.8e-2, dA) with bf16 operands and fp32 accumulation. Figures: benchmarks/notes/triton_ssd.md.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

from ssm_signal.kernels import reference, ssd_torch
from tests.helpers import rel_err

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
if not (INTERPRET or torch.cuda.is_available()):
    pytest.skip("Triton kernels need a CUDA GPU, or TRITON_INTERPRET=1 on CPU (make test-interpret)",
                allow_module_level=True)
pytest.importorskip("triton")

from ssm_signal.kernels.triton.ssd import CONFIG, ssd_scan  # noqa: E402
from ssm_signal.kernels.triton.ssd_norm import gated_rms_norm  # noqa: E402

DEV = "cpu" if INTERPRET else "cuda"
TOL32 = 1e-4 if INTERPRET else 1e-2
NAMES = ("x", "dt", "A", "B", "C", "D", "dt_bias", "h0")


def make_args(Bsz, L, H, P, G, N, dtype=torch.float32, device=DEV, with_D=True, with_bias=True):
    """Fresh random SSD inputs in the layer's ranges: A < 0, dt around softplus^-1 of 0.01..1."""
    x = torch.randn(Bsz, L, H, P, device=device).to(dtype)
    dt = (torch.randn(Bsz, L, H, device=device) - 1.0).to(dtype)
    A = -torch.empty(H, device=device).uniform_(1.0, 16.0)
    B = torch.randn(Bsz, L, G, N, device=device).to(dtype)
    C = torch.randn(Bsz, L, G, N, device=device).to(dtype)
    D = torch.randn(H, device=device) if with_D else None
    bias = torch.randn(H, device=device) * 0.5 if with_bias else None
    h0 = torch.randn(Bsz, H, P, N, device=device)
    return [x, dt, A, B, C, D, bias, h0]


def run_with_grads(fn, args, wy, wh, chunk_size):
    """y, h_L and the gradients of sum(y wy) + sum(h_L wh) w.r.t. every tensor argument."""
    leaves = [None if a is None else a.detach().clone().requires_grad_() for a in args]
    y, h = fn(*leaves, chunk_size=chunk_size)
    loss = (y.double() * wy).sum() + (h.double() * wh).sum()
    present = [a for a in leaves if a is not None]
    grads = iter(torch.autograd.grad(loss, present))
    return y, h, [None if a is None else next(grads) for a in leaves]


def compare(args, chunk_size, ref_fn, tol_y, tol_g):
    """Kernel vs ``ref_fn`` on float64 copies of the same inputs; asserts outputs and all gradients."""
    ref_args = [None if a is None else a.double() for a in args]
    wy = torch.randn(*args[0].shape, dtype=torch.float64, device=args[0].device)
    wh = torch.randn(*args[7].shape, dtype=torch.float64, device=args[0].device)
    y, h, g = run_with_grads(ssd_scan, args, wy, wh, chunk_size)
    y_r, h_r, g_r = run_with_grads(ref_fn, ref_args, wy, wh, chunk_size)
    assert y.dtype == args[0].dtype and h.dtype == args[7].dtype
    errs = {"y": rel_err(y, y_r), "h_L": rel_err(h, h_r)}
    errs.update({n: rel_err(a, b) for n, a, b in zip(NAMES, g, g_r, strict=True) if a is not None})
    print({k: f"{v:.1e}" for k, v in errs.items()})
    assert errs["y"] <= tol_y and errs["h_L"] <= tol_y, errs
    assert all(v <= tol_g for k, v in errs.items() if k not in ("y", "h_L")), errs
    for n, a in zip(NAMES, g, strict=True):
        if a is not None:
            assert torch.isfinite(a).all(), n


# ---------------------------------------------------------------------------------------------
# tiny shapes: interpreter (CI) or GPU
# ---------------------------------------------------------------------------------------------
CASES = {
    "L=1": dict(Bsz=2, L=1, Q=16, G=1),
    "shorter_than_chunk": dict(Bsz=2, L=5, Q=16, G=2),
    # 2 chunks of 40 (the second with 5 steps) tiled by 16: 3 tiles, the last one partial
    "not_a_multiple_groups_several_tiles": dict(Bsz=1, L=45, Q=40, G=2, block_t=16),
    "no_D_no_bias_exact_multiple": dict(Bsz=1, L=16, Q=8, G=1, with_D=False, with_bias=False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_outputs_state_and_gradients(case, monkeypatch, seed):
    c = dict(CASES[case])
    Bsz, L, Q, G = c.pop("Bsz"), c.pop("L"), c.pop("Q"), c.pop("G")
    if "block_t" in c:
        monkeypatch.setitem(CONFIG, "block_t", c.pop("block_t"))
    args = make_args(Bsz, L, 4, 3, G, 5, **c)
    compare(args, Q, reference.ssd_scan, TOL32, TOL32)


def test_chunks_with_carried_state_equal_whole(seed):
    args = make_args(1, 29, 2, 4, 1, 3)
    y, h = ssd_scan(*args, chunk_size=8)
    ys, state, t = [], args[7], 0
    for n in (7, 1, 16, 5):  # pieces shorter, equal and longer than the chunk
        piece = [a[:, t:t + n] for a in args[:2]] + [args[2]] + [a[:, t:t + n] for a in args[3:5]] + args[5:7]
        y_p, state = ssd_scan(*piece, state, chunk_size=8)
        ys.append(y_p)
        t += n
    assert rel_err(torch.cat(ys, 1), y) <= TOL32 and rel_err(state, h) <= TOL32


def test_inputs_are_not_written_and_views_are_read_in_place(seed):
    # the layer passes strided views of one projection: x, B, C are slices of xBC
    Bsz, L, H, P, G, N = 1, 20, 2, 4, 1, 3
    xBC = torch.randn(Bsz, L, H * P + 2 * G * N, device=DEV)
    x = xBC[..., :H * P].reshape(Bsz, L, H, P)
    B = xBC[..., H * P:H * P + G * N].reshape(Bsz, L, G, N)
    C = xBC[..., H * P + G * N:].reshape(Bsz, L, G, N)
    _, dt, A, _, _, D, bias, h0 = make_args(Bsz, L, H, P, G, N)
    before = [t.clone() for t in (xBC, dt, h0)]
    y, h = ssd_scan(x, dt, A, B, C, D, bias, h0, chunk_size=8)
    for t, t0 in zip((xBC, dt, h0), before, strict=True):
        assert torch.equal(t, t0)
    y_r, h_r = reference.ssd_scan(*(t.double() for t in (x, dt, A, B, C, D, bias, h0)))
    assert rel_err(y, y_r) <= TOL32 and rel_err(h, h_r) <= TOL32


def test_bad_input_raises_value_error():
    args = make_args(1, 4, 2, 2, 1, 3)
    with pytest.raises(ValueError, match="h0 must be"):
        ssd_scan(*args[:7], torch.zeros(1, 2, 2, 4, device=DEV))
    with pytest.raises(ValueError, match="not a multiple of ngroups"):
        ssd_scan(args[0].repeat(1, 1, 2, 1)[:, :, :3], args[1][:, :, :1].repeat(1, 1, 3), args[2][:1].repeat(3),
                 args[3].repeat(1, 1, 2, 1), args[4].repeat(1, 1, 2, 1), None, None,
                 torch.zeros(1, 3, 2, 3, device=DEV))
    with pytest.raises(ValueError, match="chunk_size"):
        ssd_scan(*args, chunk_size=0)
    with pytest.raises(ValueError, match="dt must be"):
        ssd_scan(args[0], args[1][:, :3], *args[2:])


def test_float64_is_exact_through_the_torch_form(seed):
    args = [None if a is None else a.double() for a in make_args(1, 9, 2, 3, 1, 4)]
    y, h = ssd_scan(*args, chunk_size=4)
    y_r, h_r = ssd_torch.ssd_scan(*args, chunk_size=4)
    assert torch.equal(y, y_r) and torch.equal(h, h_r)


@pytest.mark.parametrize("group_size", [8, 6])
def test_gated_rms_norm_matches_module(group_size, seed):
    from ssm_signal.layers.norm import RMSNormGated

    D = 12 if group_size == 6 else 16
    norm = RMSNormGated(D, group_size=group_size).double()
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    z = torch.randn(2, 9, D, dtype=torch.float64)
    w = torch.randn(2, 9, D, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, z)]
    ref = norm(*leaves)
    g_ref = torch.autograd.grad((ref * w).sum(), [*leaves, norm.weight])
    xf, zf, wf = (t.detach().float().to(DEV).requires_grad_() for t in (x, z, norm.weight))
    out = gated_rms_norm(xf, zf, wf, 1e-5, group_size)
    g = torch.autograd.grad((out.double() * w.to(DEV)).sum(), (xf, zf, wf))
    assert rel_err(out, ref) <= TOL32
    for a, b in zip(g, g_ref, strict=True):
        assert rel_err(a, b) <= TOL32


def _mamba2_with_triton_ssd(monkeypatch):
    """Route the Mamba2 layer's ``ssd_scan`` to this kernel for the test (registration is done elsewhere)."""
    from ssm_signal.layers import mamba2 as mamba2_module

    original = mamba2_module.get_op
    monkeypatch.setattr(mamba2_module, "get_op",
                        lambda op, device: ssd_scan if op == "ssd_scan" else original(op, device))


def test_mamba2_layer_forward_backward_with_triton_ssd(monkeypatch, seed):
    from ssm_signal import kernels
    from ssm_signal.layers import Mamba2

    m = Mamba2(16, d_state=8, headdim=8, ngroups=2, chunk_size=8).to(DEV)
    u = torch.randn(2, 11, 16, device=DEV)
    s0 = m.init_state(2, device=DEV)
    s0 = type(s0)(conv=torch.randn_like(s0.conv), ssm=torch.randn_like(s0.ssm))
    with kernels.use("torch"):
        y_r, s_r = m(u, s0)
        g_r = torch.autograd.grad(y_r.square().sum() + s_r.ssm.sum(), list(m.parameters()))
    _mamba2_with_triton_ssd(monkeypatch)
    with kernels.use("torch"):  # every other op stays on the torch backend
        y, s = m(u, s0)
        g = torch.autograd.grad(y.square().sum() + s.ssm.sum(), list(m.parameters()))
    assert rel_err(y, y_r) <= TOL32 and rel_err(s.ssm, s_r.ssm) <= TOL32
    for (name, _), a, b in zip(m.named_parameters(), g, g_r, strict=True):
        assert rel_err(a, b) <= TOL32, name


# ---------------------------------------------------------------------------------------------
# full size on the GPU (pytest -m gpu on the device)
# ---------------------------------------------------------------------------------------------
gpu = pytest.mark.skipif(not torch.cuda.is_available() or INTERPRET, reason="needs a CUDA GPU without the interpreter")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("L,G", [(1000, 1), (4133, 2), (256, 1), (77, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_full_size_against_float64(L, G, dtype, seed):
    args = make_args(2, L, 8, 64, G, 64, dtype=dtype, device="cuda")
    tol_y, tol_g = (1e-2, 1e-2) if dtype == torch.float32 else (3e-2, 5e-2)
    compare(args, 256, ssd_torch.ssd_scan, tol_y, tol_g)


@pytest.mark.gpu
@gpu
def test_gpu_chunks_with_carried_state_equal_whole(seed):
    args = make_args(2, 3000, 8, 64, 1, 64, device="cuda")
    y, h = ssd_scan(*args)
    sizes, t, ys, state = [1, 255, 1000, 1, 743, 1000], 0, [], args[7]
    random.Random(seed).shuffle(sizes)
    for n in sizes:
        piece = [a[:, t:t + n] for a in args[:2]] + [args[2]] + [a[:, t:t + n] for a in args[3:5]] + args[5:7]
        y_p, state = ssd_scan(*piece, state)
        ys.append(y_p)
        t += n
    assert rel_err(torch.cat(ys, 1), y) <= 1e-2 and rel_err(state, h) <= 1e-2


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_mamba2_layer_matches_torch_backend(dtype, monkeypatch, seed):
    from ssm_signal import kernels
    from ssm_signal.layers import Mamba2

    m = Mamba2(256, d_state=64, headdim=64, chunk_size=256).cuda().to(dtype)
    u = torch.randn(4, 1500, 256, device="cuda", dtype=dtype)
    with kernels.use("torch"):
        y_r, s_r = m(u)
        g_r = torch.autograd.grad(y_r.float().square().sum(), list(m.parameters()))
    _mamba2_with_triton_ssd(monkeypatch)
    with kernels.use("torch"):
        y, s = m(u)
        g = torch.autograd.grad(y.float().square().sum(), list(m.parameters()))
    tol = 1e-2 if dtype == torch.float32 else 5e-2
    assert rel_err(y, y_r) <= tol and rel_err(s.ssm, s_r.ssm) <= tol
    for (name, _), a, b in zip(m.named_parameters(), g, g_r, strict=True):
        assert rel_err(a, b) <= tol, name


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_gated_rms_norm(dtype, seed):
    from ssm_signal.layers.norm import RMSNormGated

    norm = RMSNormGated(1024, group_size=512).cuda().double()
    with torch.no_grad():
        norm.weight.normal_()
    x, z = (torch.randn(8, 1000, 1024, device="cuda", dtype=dtype) for _ in range(2))
    w = torch.randn(8, 1000, 1024, device="cuda", dtype=torch.float64)
    leaves = [t.double().requires_grad_() for t in (x, z)]
    out_r = norm(*leaves)
    g_r = torch.autograd.grad((out_r * w).sum(), [*leaves, norm.weight])
    weight = norm.weight.detach().float().requires_grad_()
    xs, zs = (t.clone().requires_grad_() for t in (x, z))
    out = gated_rms_norm(xs, zs, weight, 1e-5, 512)
    g = torch.autograd.grad((out.double() * w).sum(), (xs, zs, weight))
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert out.dtype == dtype and rel_err(out, out_r) <= tol
    for a, b in zip(g, g_r, strict=True):
        assert rel_err(a, b) <= max(tol, 1e-4)
