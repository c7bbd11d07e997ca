"""The serving step ``step_`` (state advanced in place, masked per stream) against the functional
``step`` followed by a masked write, for every layer type, Block and Backbone, on every CPU backend."""

from __future__ import annotations

import pytest
import torch

from ssm_signal import kernels
from ssm_signal.layers import Mamba, Mamba2
from ssm_signal.state import State
from tests.helpers import random_state
from tests.layers.test_contract import BACKENDS, FACTORIES, LAYERS, D, make


def masked_write(active: torch.Tensor | None, new: State, old: State) -> State:
    """The functional twin of the in-place write: per row, ``new`` where active, else ``old``."""
    if active is None:
        return new
    return type(old).from_state_dict({
        k: torch.where(active.reshape((-1,) + (1,) * (o.dim() - 1)), new.state_dict()[k], o) if o.dim() else o
        for k, o in old.state_dict().items()})


def assert_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(a, b), float((a - b).abs().max())


def masks(B: int, steps: int, gen: torch.Generator) -> list[torch.Tensor | None]:
    out: list[torch.Tensor | None] = []
    for t in range(steps):
        if t % 4 == 3:
            out.append(None)  # the unmasked form
            continue
        m = torch.rand(B, generator=gen) < 0.5
        m[t % B] = not bool(m[t % B])  # never constant across the run
        out.append(m)
    return out


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_inplace_equals_step_and_masked_write(name, backend, dtype, seed):
    """Several steps with random masks: the in-place state equals the functional fold bit for bit
    (the CPU paths compute the same step), inactive rows never change, active rows' y agree (bit for bit, but for
    the export backend, whose SSD step sums y in another order: to rounding)."""
    m = make(name, dtype)
    B, steps = 4, 7
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, steps, D, dtype=dtype, generator=gen)
    s_ref = random_state(m, B, dtype)
    s = s_ref.clone()
    tensors = list(s.tensors())
    with kernels.use(backend):
        for t, active in enumerate(masks(B, steps, gen)):
            before = s.clone()
            y_ref, new = m.step(x[:, t], s_ref)
            s_ref = masked_write(active, new, s_ref)
            y = m.step_(x[:, t], s, active)
            on = torch.ones(B, dtype=torch.bool) if active is None else active
            # the export backend's SSD step reads y with one MatMul, the in-place op it falls back to (torch's) with
            # a sum: the same y to rounding, and so (through later layers) the same states
            same = torch.testing.assert_close if backend == "export" else assert_equal
            same(y[on], y_ref[on])
            assert torch.isfinite(y).all()
            for a, b, old in zip(s.tensors(), s_ref.tensors(), before.tensors(), strict=True):
                same(a, b)
                assert torch.equal(a[~on], old[~on])
    # the caller's tensors themselves were advanced (no rebinding)
    assert all(a is b for a, b in zip(s.tensors(), tensors, strict=True))


@pytest.mark.parametrize("cls", [Mamba, Mamba2])
def test_ssm_layers_step_inplace_through_their_inplace_op(cls, monkeypatch, seed):
    """Mamba and Mamba2 advance h through the registry's in-place op (no new h is made and copied)."""
    op = "selective_step_inplace" if cls is Mamba else "ssd_step_inplace"
    calls = []
    real = kernels.reference.__dict__[op]

    def spy(*args):
        calls.append(args[-2])  # the state h, as passed
        return real(*args)

    kernels.register(kernels.Backend("spy", {op: spy}, devices=("cpu",), priority=-1))
    try:
        m = cls(D, d_state=4) if cls is Mamba else cls(D, d_state=4, headdim=8)
        s = m.init_state(3)
        with kernels.use("spy"):
            m.step_(torch.randn(3, D), s, torch.tensor([True, False, True]))
        assert len(calls) == 1 and calls[0] is s.ssm
        assert torch.count_nonzero(s.ssm[1]) == 0 and torch.count_nonzero(s.ssm[0]) > 0
    finally:
        kernels.registry._BACKENDS.pop("spy")


def test_step_inplace_bad_input_is_a_clear_error():
    m = FACTORIES["backbone"]()
    s = m.init_state(2)
    x = torch.randn(2, D)
    with pytest.raises(ValueError, match="in place: pass one"):
        m.step_(x, None)
    with pytest.raises(ValueError, match=r"active must have shape \(2,\)"):
        m.step_(x, s, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool or uint8"):
        m.step_(x, s, torch.ones(2))
    with pytest.raises(ValueError, match="x_t must have shape"):
        m.step_(torch.randn(2, D + 1), s)
    with pytest.raises(ValueError, match="state"):
        m.step_(x, m.init_state(3))
    assert all(torch.count_nonzero(t) == 0 for t in s.tensors())  # nothing written by a rejected call
