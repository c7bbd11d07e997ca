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


def random_mask(Bsz, device, gen_seed=0):
    """A mask with both values present (row 0 on, row 1 off)."""
    g = torch.Generator().manual_seed(gen_seed)
    m = torch.rand(Bsz, generator=g) < 0.5
    m[0], m[1] = True, False
    return m.to(device)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8])
@pytest.mark.parametrize("kind", ["ssd", "selective"])
def test_masked_inplace_step_equals_reference(kind, mask_dtype, triton_device, seed):
    """Active rows advance as the float64 reference step; inactive rows' state is untouched bit for
    bit; every y is finite (the inactive ones are meaningless)."""
    Bsz = 7
    if kind == "ssd":
        inp, h = ssd_inputs(Bsz, 4, 3, 2, 5, triton_device), torch.randn(Bsz, 4, 3, 5, device=triton_device)
        fast, ref = su.ssd_step_inplace, reference.ssd_step
    else:
        inp, h = selective_inputs(Bsz, 6, 5, triton_device), torch.randn(Bsz, 6, 5, device=triton_device)
        fast, ref = su.selective_step_inplace, reference.selective_step
    active = random_mask(Bsz, triton_device, seed).to(mask_dtype)
    on = active.bool()
    before = h.clone()
    y = fast(**inp, h=h, active=active)
    y_r, h_r = ref(**f64(inp), h=before.double())
    assert rel_err(y[on], y_r[on]) <= 1e-5 and rel_err(h[on], h_r[on]) <= 1e-5
    assert torch.equal(h[~on], before[~on])
    assert torch.isfinite(y).all()
    # no mask: every row advances, as the pure step does
    h2 = before.clone()
    y2 = fast(**inp, h=h2)
    assert rel_err(y2, y_r) <= 1e-5 and rel_err(h2, h_r) <= 1e-5


def test_slot_path_with_a_mask(triton_device, seed):
    """Slot indices and the active mask together: row i updates slot slots[i] only where active[i]."""
    S, Bsz, H, P, G, N = 9, 5, 2, 4, 1, 3
    pool = torch.randn(S, H, P, N, device=triton_device)
    before = pool.clone()
    slots = pick_slots(S, Bsz, triton_device)
    active = random_mask(Bsz, triton_device, seed)
    inp = ssd_inputs(Bsz, H, P, G, N, triton_device)
    y = su.ssd_state_update(pool, slots, **inp, active=active)
    y_r, h_r = reference.ssd_step(**f64(inp), h=before[slots].double())
    moved = slots[active]
    assert rel_err(y[active], y_r[active]) <= 1e-5 and rel_err(pool[moved], h_r[active]) <= 1e-5
    still = torch.ones(S, dtype=torch.bool, device=triton_device)
    still[moved] = False
    assert torch.equal(pool[still], before[still])

    pool = torch.randn(S, 4, 3, device=triton_device)
    before = pool.clone()
    inp = selective_inputs(Bsz, 4, 3, triton_device)
    su.selective_state_update(pool, slots, **inp, active=active)
    _, h_r = reference.selective_step(**f64(inp), h=before[slots].double())
    assert rel_err(pool[moved], h_r[active]) <= 1e-5 and torch.equal(pool[still], before[still])


def test_inplace_float64_runs_the_reference_twin(triton_device, seed):
    inp = f64(ssd_inputs(4, 2, 3, 1, 4, triton_device))
    h = torch.randn(4, 2, 3, 4, device=triton_device, dtype=torch.float64)
    h_ref = h.clone()
    active = random_mask(4, triton_device, seed)
    y = su.ssd_step_inplace(**inp, h=h, active=active)
    y_r = reference.ssd_step_inplace(**inp, h=h_ref, active=active)
    assert torch.equal(y, y_r) and torch.equal(h, h_ref)


def test_bad_active_masks_raise_value_error(triton_device):
    inp = ssd_inputs(3, 2, 2, 1, 4, triton_device)
    h = torch.zeros(3, 2, 2, 4, device=triton_device)
    for active, match in ((torch.ones(4, dtype=torch.bool), r"active must have shape \(3,\)"),
                          (torch.ones(3), "bool or uint8"),
                          (torch.ones(3, 1, dtype=torch.bool), r"active must have shape")):
        for fn in (su.ssd_step_inplace, reference.ssd_step_inplace):
            with pytest.raises(ValueError, match=match):
                fn(**inp, h=h, active=active.to(triton_device))
    with pytest.raises(ValueError, match="batch"):
        su.ssd_step_inplace(**inp, h=torch.zeros(4, 2, 2, 4, device=triton_device))
    with pytest.raises(ValueError, match="contiguous"):
        su.ssd_step_inplace(**inp, h=torch.zeros(3, 2, 4, 2, device=triton_device).transpose(2, 3))
    assert torch.count_nonzero(h) == 0


def test_inplace_steps_compile_as_mutating_ops_without_a_copy(triton_device, seed):
    """Under torch.compile the in-place steps are opaque ops that mutate h: Inductor hands them the
    caller's tensor itself (no clone, no copy back: the point of the in-place tick), and the results
    equal the eager call's."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    Bsz = 5
    cases = (
        (su.ssd_step_inplace, ssd_inputs(Bsz, 4, 8, 2, 5, triton_device),
         torch.randn(Bsz, 4, 8, 5, device=triton_device), "ssm_signal.ssd_step_inplace"),
        (su.selective_step_inplace, selective_inputs(Bsz, 6, 5, triton_device),
         torch.randn(Bsz, 6, 5, device=triton_device), "ssm_signal.selective_step_inplace"),
    )
    active = random_mask(Bsz, triton_device, seed)
    for fn, inp, h, op in cases:
        def body(inp, h, active, fn=fn):
            return fn(**inp, h=h, active=active) * 2.0

        graphs = []

        def record(gm, example_inputs, graphs=graphs):
            graphs.append(gm.code)
            return gm.forward

        torch.compile(body, fullgraph=True, backend=record)(inp, h.clone(), active)
        assert len(graphs) == 1 and op in graphs[0]
        h_e, h_c = h.clone(), h.clone()
        y_e = body(inp, h_e, active)
        y_c, codes = run_and_get_code(torch.compile(body, fullgraph=True), inp, h_c, active)
        assert torch.allclose(y_c, y_e, atol=1e-6) and torch.equal(h_c, h_e)
        assert torch.equal(h_c[~active], h[~active])
        code = "\n".join(codes)
        assert f"torch.ops.{op}.default(" in code
        assert "clone" not in code and "copy_" not in code, code


@pytest.fixture
def triton_steps(triton_device):
    """The Triton step ops as a backend on the interpreter's device (the real backend registers for
    CUDA only); the rest of the model falls back to torch."""
    from ssm_signal.kernels import triton as tk

    names = ("selective_step", "ssd_step", "selective_step_inplace", "ssd_step_inplace")
    ops = tk.build_ops()
    kernels.register(kernels.Backend("triton_steps", {k: ops[k] for k in names}, devices=(triton_device,),
                                     priority=-1, fallback="torch"))
    yield "triton_steps"
    kernels.registry._BACKENDS.pop("triton_steps")


@torch.inference_mode()
def test_compiled_in_place_tick_through_the_triton_ops(triton_steps, triton_device, monkeypatch, seed):
    """The CUDA-graph runner's tick body (tick_in_place), compiled by Inductor, with the Triton
    steps: equals the functional pool_step on the reference ops over ticks with random masks (and one
    all-active tick: the unmasked body), and the in-place ops are handed the static SSM states
    themselves (no clone)."""
    from ssm_signal.streaming.runners import _TICKS
    from ssm_signal.streaming.step import pool_step
    from tests.streaming.conftest import kws_model

    torch._dynamo.reset()
    m = kws_model(("mamba2", "mamba")).to(triton_device)
    S = 4
    state = m.init_state(S, device=triton_device)
    ssm_ptrs = {state.backbone.layers[i].ssm.data_ptr() for i in range(2)}
    seen = []
    real = {"ssd": su.ssd_state_update, "sel": su.selective_state_update}

    def spy(kind):
        def call(h, *args, **kwargs):
            seen.append(h.data_ptr())
            return real[kind](h, *args, **kwargs)
        return call

    monkeypatch.setattr(su, "ssd_state_update", spy("ssd"))
    monkeypatch.setattr(su, "selective_state_update", spy("sel"))
    frames = torch.zeros(S, 160, 1, device=triton_device)
    active = torch.zeros(S, dtype=torch.bool, device=triton_device)
    ref = m.init_state(S, device=triton_device)
    gen = torch.Generator().manual_seed(seed)
    with kernels.use(triton_steps):
        bodies = {k: torch.compile(f, dynamic=False) for k, f in _TICKS.items()}
        for t in range(4):
            f = (0.1 * torch.randn(S, 160, 1, generator=gen)).to(triton_device)
            a = (torch.rand(S, generator=gen) < 0.6).to(triton_device)
            a[0], a[1] = True, t == 2
            if t == 2:
                a[:] = True
            frames.copy_(f)
            active.copy_(a)
            before = state.clone()
            y = bodies[not bool(a.all())](m, frames, active, state)
            with kernels.use("reference"):
                y_r, ref = pool_step(m, f, a, ref)
            # a whole model's tick (frontend, projections, both mixers) compiled by Inductor against eager
            # reference ops: Inductor fuses and reorders the float32 arithmetic, and after a tick or two states
            # differed by 1.3-1.4e-5 of their largest value (SSM_SIGNAL_SEED=1168348404, 12345); a wrong update
            # or a masked row written would differ by its whole size, and inactive rows are compared exactly
            assert rel_err(y[a], y_r[a]) <= 1e-4, t
            for new, old, r in zip(state.tensors(), before.tensors(), ref.tensors(), strict=True):
                assert torch.equal(new[~a], old[~a]), t
                if new.is_floating_point():
                    assert rel_err(new, r) <= 1e-4, t
    assert seen and set(seen) == ssm_ptrs  # every call wrote the static state itself


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
def test_gpu_masked_inplace_ssd_step_131072_streams(cuda_device, seed):
    """The serving tick's op at full size: rows with active False keep their state bit for bit."""
    S, H, P, G, N = 131072, 4, 32, 1, 16
    h = torch.randn(S, H, P, N, device=cuda_device)
    before = h.clone()
    active = torch.rand(S, device=cuda_device) < 0.7
    inp = ssd_inputs(S, H, P, G, N, cuda_device)
    y = su.ssd_step_inplace(**inp, h=h, active=active)
    torch.cuda.synchronize()
    y_r, h_r = reference.ssd_step(**inp, h=before)  # float32 reference, batched
    assert rel_err(y[active], y_r[active]) <= 1e-5 and rel_err(h[active], h_r[active]) <= 1e-5
    assert torch.equal(h[~active], before[~active]) and torch.isfinite(y).all()


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


def _gpu_layer(name: str, op: str, device):
    """A Mamba or Mamba2 layer on the GPU whose ``op`` resolves to the Triton backend."""
    from ssm_signal.layers import Mamba, Mamba2

    m = (Mamba(32, d_state=16) if name == "mamba" else Mamba2(64, d_state=64, headdim=32)).to(device)
    assert kernels.resolve(op, torch.device(device)).name == "triton"
    return m


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_gpu_layer_steps_through_the_triton_backend(name, cuda_device, seed):
    m = _gpu_layer(name, "selective_step" if name == "mamba" else "ssd_step", cuda_device)
    x = torch.randn(3, 12, m.d_model, device=cuda_device)
    s0 = random_state(m, 3)
    s0 = type(s0).from_state_dict({k: v.to(cuda_device) for k, v in s0.state_dict().items()})
    with kernels.use("reference"):
        y_r, s_r = fold_steps(m, x, s0)
    with kernels.use("triton"):
        y, s = fold_steps(m, x, s0)
    assert rel_err(y, y_r) <= 1e-5 and state_rel_err(s, s_r) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_gpu_layer_step_inplace_through_the_triton_backend(name, cuda_device, seed):
    """Layer.step_ with a mask on the Triton in-place op against step + masked write on the reference."""
    m = _gpu_layer(name, "selective_step_inplace" if name == "mamba" else "ssd_step_inplace", cuda_device)
    s0 = random_state(m, 6)
    s = type(s0).from_state_dict({k: v.to(cuda_device) for k, v in s0.state_dict().items()})
    s_ref = s.clone()
    for t in range(5):
        x = torch.randn(6, m.d_model, device=cuda_device)
        active = torch.rand(6, device=cuda_device) < 0.5
        before = s.clone()
        with kernels.use("reference"), torch.no_grad():
            y_r, new = m.step(x, s_ref)
        s_ref = type(new).from_state_dict({
            k: torch.where(active.reshape((-1,) + (1,) * (v.dim() - 1)), v, s_ref.state_dict()[k])
            for k, v in new.state_dict().items()})
        with kernels.use("triton"):
            y = m.step_(x, s, active)
        assert rel_err(y[active], y_r[active]) <= 1e-5 and state_rel_err(s, s_ref) <= 1e-5, t
        for a, b in zip(s.tensors(), before.tensors(), strict=True):
            assert torch.equal(a[~active], b[~active]), t
