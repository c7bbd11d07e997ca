"""The model's own frame step (``SignalModel._step``, what every runner wraps) against its reference
twin, the model's checked forward; its in-place form ``_step_`` against the masked ``pool_step``."""

from __future__ import annotations

import pytest
import torch

from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from ssm_signal.streaming.step import masked, pool_step
from tests.helpers import rel_err, state_rel_err
from tests.streaming.conftest import kws_model


def sensor(head: str, horizons: tuple[int, ...] = (1,), window: int = 1, memory: int = 0) -> SignalModel:
    cfg = ModelConfig(FrontendConfig(kind="sensor", in_channels=3, sample_rate=50, decimate=4),
                      BackboneConfig(d_model=8, layers=["mamba", "attention"],
                                     mixer_kwargs={"attention": {"n_heads": 2, "window": 4}}),
                      HeadConfig(head, num_classes=3 if head == "classify" else 0, horizons=list(horizons),
                                 score_window=window, memory=memory))
    m = SignalModel(cfg).eval()
    with torch.no_grad():
        m.frontend.mean.normal_()
        m.frontend.std.uniform_(0.5, 2)
    if memory:
        m.head.set_memory(0.3 * torch.randn(3 * memory, 8))
    return m


@pytest.mark.parametrize("make", [lambda: kws_model(("mamba2", "s4d", "attention")), lambda: sensor("anomaly"),
                                  lambda: sensor("anomaly", horizons=(2, 6), window=5),
                                  lambda: sensor("anomaly", horizons=(1, 2), memory=12), lambda: sensor("forecast"),
                                  lambda: sensor("classify")])
@torch.inference_mode()
def test_frame_step_equals_forward(make, seed):
    m = make()
    hop, C = m.samples_per_frame, m.in_channels
    x = 0.3 * torch.randn(3, hop * 12, C)
    _, s_ref = m(x[:, :hop * 4])  # a non-zero state at frame phase 0
    s = s_ref
    y_ref, s_ref = m(x[:, hop * 4:], s_ref)
    ys = []
    for f in range(4, 12):
        y, s = m._step(x[:, f * hop:(f + 1) * hop], s)
        ys.append(y)
    assert rel_err(torch.stack(ys, 1), y_ref) <= 1e-5
    assert state_rel_err(s, s_ref) <= 1e-5


@torch.inference_mode()
def test_pool_step_keeps_inactive_streams(seed):
    m = kws_model()
    x = 0.3 * torch.randn(4, 160 * 3, 1)
    _, s0 = m(x[:, :320])
    active = torch.tensor([True, False, True, False])
    y, s = pool_step(m, x[:, 320:], active, s0)
    y_all, s_all = m._step(x[:, 320:], s0)
    assert torch.equal(y, y_all)
    for a, b, c in zip(s.tensors(), s_all.tensors(), s0.tensors(), strict=True):
        assert torch.equal(a[active], b[active]) and torch.equal(a[~active], c[~active])
    assert masked(torch.ones(4, dtype=torch.bool), s_all, s0).signature() == s0.signature()


def tick_masks(S: int, ticks: int, gen: torch.Generator) -> list[torch.Tensor | None]:
    """Random per-slot masks (both values present), every third tick None (all slots advance)."""
    out: list[torch.Tensor | None] = []
    for t in range(ticks):
        if t % 3 == 2:
            out.append(None)
        else:
            a = torch.rand(S, generator=gen) < 0.6
            a[t % S], a[(t + 1) % S] = True, False
            out.append(a)
    return out


@pytest.mark.parametrize("make", [lambda: kws_model(("mamba2",) * 4), lambda: kws_model(("mamba", "s4d", "attention")),
                                  lambda: sensor("anomaly"), lambda: sensor("anomaly", horizons=(1, 3), window=3)],
                         ids=["kws_default_arch", "kws_hybrid", "sensor_anomaly", "sensor_anomaly_horizon"])
@torch.inference_mode()
def test_step_inplace_equals_pool_step(make, seed):
    """Several ticks with random masks: _step_ writes exactly pool_step's state over the caller's
    tensors (bit for bit on the CPU paths) and gives its y for the active streams; idle streams' state
    never changes."""
    m = make()
    S, hop, C, ticks = 5, m.samples_per_frame, m.in_channels, 7
    gen = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(S, hop * (ticks + 3), C, generator=gen)
    _, s_ref = m(x[:, :hop * 3])  # a non-zero state at frame phase 0, head state included
    s = s_ref.clone()
    tensors = list(s.tensors())
    for t, active in enumerate(tick_masks(S, ticks, gen)):
        frames = x[:, hop * (3 + t):hop * (4 + t)]
        before = s.clone()
        on = torch.ones(S, dtype=torch.bool) if active is None else active
        y_ref, s_ref = pool_step(m, frames, on, s_ref)
        y = m._step_(frames, s, active)
        assert torch.equal(y[on], y_ref[on]), t
        for a, b, old in zip(s.tensors(), s_ref.tensors(), before.tensors(), strict=True):
            assert torch.equal(a, b), t
            assert torch.equal(a[~on], old[~on]), t
    assert all(a is b for a, b in zip(s.tensors(), tensors, strict=True))


def test_aot_compile_crash_in_child_is_an_error(tmp_path, monkeypatch):
    """A child process that dies (as aoti_load_package was seen to segfault on one install) becomes a
    RuntimeError here, which the engine turns into its torch.compile fallback; this process lives on."""
    import sys

    from ssm_signal.streaming import step as step_mod

    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))
    monkeypatch.setenv("SSM_SIGNAL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match=r"failed in a child process \(exit -11\)"):
        step_mod.AOTStep(kws_model())
