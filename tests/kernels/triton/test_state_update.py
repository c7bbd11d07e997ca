"""Batched in-place step updates on a state pool, and the pure step ops, against the reference.

Tolerances: float32 arithmetic against float64, 1e-5 (one step: no accumulation).
"""

from __future__ import annotations

import pytest
import torch

from ssm_signal import kernels
from ssm_signal.kernels import reference
from ssm_signal.kernels.triton import state_update as su
from tests.helpers import fold_steps, random_state, rel_err, state_rel_err


def selective_inputs(Bsz, Din, N, device, dtype=torch.float32):
    return dict(
        x=torch.randn(Bsz, Din, device=device).to(dtype), dt=(torch.randn(Bsz, Din, device=device) - 1).to(dtype),
        A=-torch.empty(Din, N, device=device).uniform_(0.5, 8.0),
        B=torch.randn(Bsz, N, device=device).to(dtype), C=torch.randn(Bsz, N, device=device).to(dtype),
        D=torch.randn(Din, device=device), z=torch.randn(Bsz, Din, device=device).to(dtype),
        dt_bias=torch.randn(Din, device=device) * 0.5,
    )


def ssd_inputs(Bsz, H, P, G, N, device, dtype=torch.float32):
    return dict(
        x=torch.randn(Bsz, H, P, device=device).to(dtype), dt=(torch.randn(Bsz, H, device=device) - 1).to(dtype),
        A=-torch.empty(H, device=device).uniform_(1.0, 16.0),
        B=torch.randn(Bsz, G, N, device=device).to(dtype), C=torch.randn(Bsz, G, N, device=device).to(dtype),
        D=torch.randn(H, device=device), dt_bias=torch.randn(H, device=device) * 0.5,
    )


def f64(d: dict) -> dict:
    return {k: (None if v is None else v.double()) for k, v in d.items()}


def pick_slots(S, Bsz, device):
    return torch.randperm(S, device=device)[:Bsz]


# ---------------------------------------------------------------------------------------
# tiny shapes: interpreter (CI) or GPU
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("optional", [True, False], ids=["D_z_bias", "bare"])
def test_selective_update_touches_only_its_slots(optional, triton_device, seed):
    S, Bsz, Din, N = 9, 4, 6, 5
    pool = torch.randn(S, Din, N, device=triton_device)
    before = pool.clone()
    slots = pick_slots(S, Bsz, triton_device)
    inp = selective_inputs(Bsz, Din, N, triton_device)
    if not optional:
        inp.update(D=None, z=None, dt_bias=None)
    y = su.selective_state_update(pool, slots, **inp)
    y_r, h_r = reference.selective_step(**f64(inp), h=before[slots].double())
    assert rel_err(y, y_r) <= 1e-5 and rel_err(pool[slots], h_r) <= 1e-5
    others = torch.ones(S, dtype=torch.bool, device=triton_device)
    others[slots] = False
    assert torch.equal(pool[others], before[others])  # bit for bit untouched


def test_ssd_update_touches_only_its_slots(triton_device, seed):
    S, Bsz, H, P, G, N = 7, 3, 4, 3, 2, 5
    pool = torch.randn(S, H, P, N, device=triton_device)
    before = pool.clone()
    slots = pick_slots(S, Bsz, triton_device).int()  # int32 slots work too
    inp = ssd_inputs(Bsz, H, P, G, N, triton_device)
    y = su.ssd_state_update(pool, slots, **inp)
    y_r, h_r = reference.ssd_step(**f64(inp), h=before[slots.long()].double())
    assert rel_err(y, y_r) <= 1e-5 and rel_err(pool[slots.long()], h_r) <= 1e-5
    others = torch.ones(S, dtype=torch.bool, device=triton_device)
    others[slots.long()] = False
    assert torch.equal(pool[others], before[others])


def test_pure_steps_return_a_new_state_and_match_reference(triton_device, seed):
    inp = selective_inputs(3, 5, 4, triton_device)
    h = torch.randn(3, 5, 4, device=triton_device)
    h_before = h.clone()
    y, h_new = su.selective_step(**inp, h=h)
    y_r, h_r = reference.selective_step(**f64(inp), h=h.double())
    assert torch.equal(h, h_before) and h_new.data_ptr() != h.data_ptr()
    assert rel_err(y, y_r) <= 1e-5 and rel_err(h_new, h_r) <= 1e-5

    inp = ssd_inputs(2, 4, 3, 1, 6, triton_device)
    inp["D"] = None
    h = torch.randn(2, 4, 3, 6, device=triton_device)
    h_before = h.clone()
    y, h_new = su.ssd_step(**inp, h=h)
    y_r, h_r = reference.ssd_step(**f64(inp), h=h.double())
    assert torch.equal(h, h_before)
    assert rel_err(y, y_r) <= 1e-5 and rel_err(h_new, h_r) <= 1e-5


def test_pure_steps_compile_as_opaque_ops(triton_device, seed):
    """Under torch.compile the pure steps are the ops ssm_signal::ssd_step / selective_step (one
    graph, no re-generated kernels) and give the eager results."""
    torch._dynamo.reset()
    sel = selective_inputs(3, 6, 5, triton_device)
    h1 = torch.randn(3, 6, 5, device=triton_device)
    ssd = ssd_inputs(3, 4, 8, 2, 5, triton_device)
    h2 = torch.randn(3, 4, 8, 5, device=triton_device)
    for fn, inp, h, op in ((su.selective_step, sel, h1, "ssm_signal.selective_step"),
                           (su.ssd_step, ssd, h2, "ssm_signal.ssd_step")):
        graphs = []

        def record(gm, example_inputs, graphs=graphs):
            graphs.append(gm.code)
            return gm.forward

        torch.compile(lambda inp, h, fn=fn: fn(**inp, h=h), fullgraph=True, backend=record)(inp, h)
        assert len(graphs) == 1 and op in graphs[0]
        compiled = torch.compile(lambda inp, h, fn=fn: fn(**inp, h=h), fullgraph=True)  # Inductor
        (y_c, h_c), (y_e, h_e) = compiled(inp, h), fn(**inp, h=h)
        assert torch.allclose(y_c, y_e, atol=1e-6) and torch.allclose(h_c, h_e, atol=1e-6)


def test_bad_slots_and_shapes_raise_value_error(triton_device):
    pool = torch.zeros(4, 3, 2, device=triton_device)
    inp = selective_inputs(2, 3, 2, triton_device)
    with pytest.raises(ValueError, match=r"slots must lie in \[0, 4\)"):
        su.selective_state_update(pool, torch.tensor([0, 4], device=triton_device), **inp)
    with pytest.raises(ValueError, match="distinct"):
        su.selective_state_update(pool, torch.tensor([1, 1], device=triton_device), **inp)
    with pytest.raises(ValueError, match="int32 or int64"):
        su.selective_state_update(pool, torch.tensor([0.0, 1.0], device=triton_device), **inp)
    with pytest.raises(ValueError, match=r"slots must have shape \(2,\)"):
        su.selective_state_update(pool, torch.tensor([0, 1, 2], device=triton_device), **inp)
    with pytest.raises(ValueError, match="the state must be"):
        su.selective_state_update(torch.zeros(4, 3, 5, device=triton_device), torch.tensor([0, 1]), **inp)
    with pytest.raises(ValueError, match="contiguous"):
        su.selective_state_update(torch.zeros(3, 2, 4, device=triton_device).transpose(1, 2).transpose(0, 1),
                                  torch.tensor([0, 1], device=triton_device), **inp)
    with pytest.raises(ValueError, match="multiple of the number of groups"):
        su.ssd_step(**ssd_inputs(1, 3, 2, 2, 4, triton_device), h=torch.zeros(1, 3, 2, 4, device=triton_device))
    assert torch.count_nonzero(pool) == 0  # nothing was written by a rejected call


# ---------------------------------------------------------------------------------------
# full size on the GPU
# ---------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_ssd_update_131072_streams_in_one_call(cuda_device, seed):
    """More streams than a grid axis other than 0 can hold (65,535): the serving shape."""
    S, H, P, G, N = 131072, 4, 32, 1, 64
    pool = torch.randn(S, H, P, N, device=cuda_device)
    before = pool.clone()
    slots = torch.randperm(S, device=cuda_device)[: S - 7]  # all but seven streams tick
    inp = ssd_inputs(slots.numel(), H, P, G, N, cuda_device)
    y = su.ssd_state_update(pool, slots, **inp)
    torch.cuda.synchronize()
    y_r, h_r = reference.ssd_step(**inp, h=before[slots])  # float32 reference, batched
    assert rel_err(y, y_r) <= 1e-5 and rel_err(pool[slots], h_r) <= 1e-5
    others = torch.ones(S, dtype=torch.bool, device=cuda_device)
    others[slots] = False
    assert torch.equal(pool[others], before[others])


@pytest.mark.gpu
def test_gpu_selective_update_100k_streams_and_bf16(cuda_device, seed):
    S, Din, N = 100_003, 64, 16
    pool = torch.randn(S, Din, N, device=cuda_device)
    before = pool.clone()
    slots = torch.randperm(S, device=cuda_device)
    inp = selective_inputs(S, Din, N, cuda_device)
    y = su.selective_state_update(pool, slots, **inp)
    y_r, h_r = reference.selective_step(**inp, h=before[slots])
    assert rel_err(y, y_r) <= 1e-5 and rel_err(pool[slots], h_r) <= 1e-5
    # bf16 activations, float32 state
    inp = selective_inputs(1000, Din, N, cuda_device, dtype=torch.bfloat16)
    h = torch.randn(1000, Din, N, device=cuda_device)
    y, h_new = su.selective_step(**inp, h=h)
    y_r, h_r = reference.selective_step(**f64(inp), h=h.double())
    assert y.dtype == torch.bfloat16 and h_new.dtype == torch.float32
    assert rel_err(y, y_r) <= 1e-2 and rel_err(h_new, h_r) <= 1e-5


@pytest.mark.gpu
def test_gpu_works_inside_a_cuda_graph(cuda_device, seed):
    """The serving loop captures the step: no host synchronisation inside the op."""
    S, H, P, G, N = 64, 4, 32, 1, 64
    pool = torch.randn(S, H, P, N, device=cuda_device)
    slots = torch.arange(0, S, 2, device=cuda_device)
    inp = ssd_inputs(slots.numel(), H, P, G, N, cuda_device)
    su.ssd_state_update(pool.clone(), slots, **inp)  # compile outside the capture
    expect_pool = pool.clone()
    y_expect = su.ssd_state_update(expect_pool, slots, **inp)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = su.ssd_state_update(pool, slots, **inp)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(y, y_expect) and torch.equal(pool, expect_pool)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_gpu_layer_steps_through_the_triton_backend(name, cuda_device, seed):
    from ssm_signal.layers import Mamba, Mamba2

    m = (Mamba(32, d_state=16) if name == "mamba" else Mamba2(64, d_state=64, headdim=32)).to(cuda_device)
    op = "selective_step" if name == "mamba" else "ssd_step"
    assert kernels.resolve(op, torch.device(cuda_device)).name == "triton"
    x = torch.randn(3, 12, m.d_model, device=cuda_device)
    s0 = random_state(m, 3)
    s0 = type(s0).from_state_dict({k: v.to(cuda_device) for k, v in s0.state_dict().items()})
    with kernels.use("reference"):
        y_r, s_r = fold_steps(m, x, s0)
    with kernels.use("triton"):
        y, s = fold_steps(m, x, s0)
    assert rel_err(y, y_r) <= 1e-5 and state_rel_err(s, s_r) <= 1e-5
