"""The state contract, for every layer type, Block and Backbone, on every CPU backend:
whole sequence == random chunks == step loop (outputs and final state), backends agree
with the float64 reference, gradients agree, batching, reset, causality, bad input."""

from __future__ import annotations

import random

import pytest
import torch

from ssm_signal import kernels
from ssm_signal.layers import S4D, Backbone, Block, CausalConv1d, LocalAttention, Mamba, Mamba2
from tests.helpers import (
    assert_states_equal_int,
    fold_chunks,
    fold_steps,
    random_splits,
    random_state,
    rel_err,
    state_rel_err,
)

D = 16
CHUNK = 8  # the chunk_size of the tiny Mamba2 below: splits go past it

FACTORIES = {
    "conv": lambda: CausalConv1d(D, kernel_size=4),
    "mamba": lambda: Mamba(D, d_state=4),
    "mamba2": lambda: Mamba2(D, d_state=8, headdim=8, ngroups=2, chunk_size=CHUNK),
    "s4d": lambda: S4D(D, d_state=8),
    "s4d_inv": lambda: S4D(D, d_state=8, init="inv"),
    "attention": lambda: LocalAttention(D, n_heads=2, window=6),
    "block_mlp": lambda: Block(D, "mamba", mlp_ratio=2.0, d_state=4),
    "backbone": lambda: Backbone(
        D, ["mamba", "mamba2", "attention", "s4d"],
        mixer_kwargs={"mamba": {"d_state": 4}, "mamba2": {"d_state": 8, "headdim": 8, "chunk_size": CHUNK},
                      "attention": {"window": 5}, "s4d": {"d_state": 8}},
        mlp_ratio=1.0,
    ),
}
LAYERS = sorted(FACTORIES)
BACKENDS = kernels.available("cpu")
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def make(name: str, dtype: torch.dtype):
    return FACTORIES[name]().to(dtype)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_reference_float64(name, backend, seed):
    m = make(name, torch.float64)
    x = torch.randn(2, 29, D, dtype=torch.float64)
    s0 = random_state(m, 2, torch.float64)
    with kernels.use("reference"):
        y_ref, s_ref = m(x, s0)
    with kernels.use(backend):
        y, s = m(x, s0)
    assert rel_err(y, y_ref) <= 1e-10
    assert state_rel_err(s, s_ref) <= 1e-10
    assert_states_equal_int(s, s_ref)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunks_and_steps_equal_whole(name, backend, dtype, seed):
    m = make(name, dtype)
    L = 27
    x = torch.randn(3, L, D, dtype=dtype)
    s0 = random_state(m, 3, dtype)
    sizes = random_splits(L, CHUNK, random.Random(seed))
    with kernels.use(backend):
        y, s = m(x, s0)
        y_c, s_c = fold_chunks(m, x, s0, sizes)
        y_s, s_s = fold_steps(m, x, s0)
    tol = TOL[dtype]
    assert rel_err(y_c, y) <= tol, f"chunks {sizes}"
    assert state_rel_err(s_c, s) <= tol, f"chunks {sizes}"
    assert rel_err(y_s, y) <= tol
    assert state_rel_err(s_s, s) <= tol
    assert_states_equal_int(s_c, s)
    assert_states_equal_int(s_s, s)


@pytest.mark.parametrize("name", LAYERS)
def test_float32_torch_close_to_float64_reference(name, seed):
    m64 = make(name, torch.float64)
    m32 = make(name, torch.float32)
    m32.load_state_dict(m64.state_dict())
    x = torch.randn(2, 29, D, dtype=torch.float64)
    with kernels.use("reference"):
        y_ref, s_ref = m64(x, m64.init_state(2, dtype=torch.float64))
    with kernels.use("torch"):
        y, s = m32(x.float())
    assert rel_err(y, y_ref) <= 1e-5
    assert state_rel_err(s, s_ref) <= 1e-5


@pytest.mark.parametrize("name", LAYERS)
def test_gradients_torch_match_reference(name, seed):
    m = make(name, torch.float32)
    x = torch.randn(2, 21, D, requires_grad=True)
    s0 = random_state(m, 2)
    float_keys = [k for k, t in s0.state_dict().items() if t.is_floating_point()]
    w = torch.randn(2, 21, D)  # one random weighting of the outputs, shared by both backends
    grads = {}
    for backend in ("reference", "torch"):
        m.zero_grad()
        x.grad = None
        d = {k: (t.clone().requires_grad_(True) if k in float_keys else t) for k, t in s0.state_dict().items()}
        with kernels.use(backend):
            y, s = m(x, type(s0).from_state_dict(d))
        loss = (y * w).sum() + sum(t.sum() for t in s.tensors() if t.is_floating_point())
        loss.backward()
        g = {"x": x.grad.clone()}
        g.update({f"p.{n}": p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
        g.update({f"s.{k}": d[k].grad.clone() for k in float_keys if d[k].grad is not None})
        grads[backend] = g
    g_ref, g_torch = grads["reference"], grads["torch"]
    assert g_ref.keys() == g_torch.keys()
    assert any(k.startswith("s.") for k in g_ref)  # gradients reach the initial state
    for k in g_ref:
        assert rel_err(g_torch[k], g_ref[k]) <= 1e-4, k


@pytest.mark.parametrize("name", LAYERS)
def test_batched_equals_per_stream(name, seed):
    m = make(name, torch.float64)
    x = torch.randn(3, 17, D, dtype=torch.float64)
    s0 = random_state(m, 3, torch.float64)
    y, s = m(x, s0)
    for b in range(3):
        y_b, s_b = m(x[b:b + 1], s0.select([b]))
        assert rel_err(y_b, y[b:b + 1]) <= 1e-12
        assert state_rel_err(s_b, s.select([b])) <= 1e-12


@pytest.mark.parametrize("name", LAYERS)
def test_reset_touches_only_masked_streams(name, seed):
    m = make(name, torch.float32)
    s = random_state(m, 4)
    mask = torch.tensor([True, False, True, False])
    r = s.reset(mask)
    for k, t in r.state_dict().items():
        if k.endswith("__len__"):
            continue
        orig = s.state_dict()[k]
        assert torch.all(t[mask] == 0), k
        assert torch.equal(t[~mask], orig[~mask]), k
    # a reset stream behaves exactly like a fresh one
    x = torch.randn(4, 9, D)
    y, _ = m(x, r)
    y0, _ = m(x[:1], m.init_state(1))
    assert rel_err(y[:1], y0) <= 1e-6


@pytest.mark.parametrize("name", LAYERS)
def test_causal(name, seed):
    m = make(name, torch.float64)
    x = torch.randn(2, 25, D, dtype=torch.float64)
    t = 11
    x2 = x.clone()
    x2[:, t:] = torch.randn_like(x2[:, t:])
    y, _ = m(x)
    y2, _ = m(x2)
    # FFT convolution and chunked SSD mix all positions' rounding: equal to float64 precision
    assert rel_err(y2[:, :t], y[:, :t]) <= 1e-12
    assert not torch.allclose(y[:, t:], y2[:, t:])


@pytest.mark.parametrize("name", LAYERS)
def test_state_contract_operations(name, seed):
    m = make(name, torch.float64)  # float64 weights: init_state is still float32 by default
    s = m.init_state(2)
    assert all(t.dtype == torch.float32 for t in s.tensors() if t.is_floating_point())
    x = torch.randn(2, 7, D, dtype=torch.float64)
    s_in = random_state(m, 2, torch.float64)
    before = {k: v.clone() for k, v in s_in.state_dict().items()}
    _, s_out = m(x, s_in)
    assert s_out is not s_in
    for k, v in s_in.state_dict().items():  # the argument is never mutated
        assert torch.equal(v, before[k]), k
    # snapshots, select/cat, to/detach
    rebuilt = type(s_out).from_state_dict(s_out.state_dict())
    assert state_rel_err(rebuilt, s_out) == 0.0
    both = type(s_out).cat([s_out.select([1]), s_out.select([0])])
    assert state_rel_err(both.select([0]), s_out.select([1])) == 0.0
    assert both.batch_size == 2
    moved = s_out.to(dtype=torch.float32).detach()
    assert all(t.dtype == torch.float32 for t in moved.tensors() if t.is_floating_point())
    assert all(not t.requires_grad for t in moved.tensors())


@pytest.mark.parametrize("name", LAYERS)
def test_bad_input_raises_clear_errors(name):
    m = make(name, torch.float32)
    ok = torch.randn(2, 5, D)
    cases = {
        "shape": torch.randn(2, 5),
        "width": torch.randn(2, 5, D + 1),
        "floating": torch.ones(2, 5, D, dtype=torch.int64),
        "NaN": torch.full((2, 5, D), float("nan")),
        "Inf": torch.full((2, 5, D), float("inf")),
    }
    for expected, x in cases.items():
        with pytest.raises(ValueError, match=expected):
            m(x)
    with pytest.raises(ValueError, match="shape"):
        m.step(ok)  # a sequence given to step
    with pytest.raises(ValueError, match="batch size|shape"):
        m(ok, m.init_state(3))  # state of another batch size
    other = FACTORIES["mamba2" if name != "mamba2" else "mamba"]()
    with pytest.raises(ValueError, match="expects"):
        m(ok, other.init_state(2))  # state of another layer type


def test_state_from_another_configuration_is_rejected():
    a, b = Mamba(D, d_state=4), Mamba(D, d_state=8)
    with pytest.raises(ValueError, match="another configuration"):
        a(torch.randn(1, 3, D), b.init_state(1))
    bb1 = Backbone(D, ["mamba", "s4d"], mixer_kwargs={"s4d": {"d_state": 8}})
    bb2 = Backbone(D, ["mamba", "mamba"])
    with pytest.raises(ValueError):
        bb1(torch.randn(1, 3, D), bb2.init_state(1))
