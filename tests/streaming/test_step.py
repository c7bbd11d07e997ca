"""frame_step (the latency path) against its reference twin, the model's checked forward."""

from __future__ import annotations

import pytest
import torch

from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from ssm_signal.streaming.step import frame_step, masked, pool_step
from tests.helpers import rel_err, state_rel_err
from tests.streaming.conftest import kws_model


def sensor(head: str) -> SignalModel:
    cfg = ModelConfig(FrontendConfig(kind="sensor", channels=3, sample_rate=50, decimate=4),
                      BackboneConfig(d_model=8, layers=["mamba", "attention"],
                                     mixer_kwargs={"attention": {"n_heads": 2, "window": 4}}),
                      HeadConfig(head, num_classes=3 if head == "classify" else 0))
    m = SignalModel(cfg).eval()
    with torch.no_grad():
        m.frontend.mean.normal_()
        m.frontend.std.uniform_(0.5, 2)
    return m


@pytest.mark.parametrize("make", [lambda: kws_model(("mamba2", "s4d", "attention")), lambda: sensor("anomaly"),
                                  lambda: sensor("forecast"), lambda: sensor("classify")])
@torch.inference_mode()
def test_frame_step_equals_forward(make, seed):
    m = make()
    hop, C = m.samples_per_frame, m.d_model
    x = 0.3 * torch.randn(3, hop * 12, C)
    _, s_ref = m(x[:, :hop * 4])  # a non-zero state at frame phase 0
    s = s_ref
    y_ref, s_ref = m(x[:, hop * 4:], s_ref)
    ys = []
    for f in range(4, 12):
        y, s = frame_step(m, x[:, f * hop:(f + 1) * hop], s)
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
    y_all, s_all = frame_step(m, x[:, 320:], s0)
    assert torch.equal(y, y_all)
    for a, b, c in zip(s.tensors(), s_all.tensors(), s0.tensors(), strict=True):
        assert torch.equal(a[active], b[active]) and torch.equal(a[~active], c[~active])
    assert masked(torch.ones(4, dtype=torch.bool), s_all, s0).signature() == s0.signature()


def test_aot_compile_crash_in_child_is_an_error(tmp_path, monkeypatch):
    """A child process that dies (as aoti_load_package was seen to segfault on one install) becomes a
    RuntimeError here, which the engine turns into its torch.compile fallback; this process lives on."""
    import sys

    from ssm_signal.streaming import step as step_mod

    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))
    monkeypatch.setenv("SSM_SIGNAL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match=r"failed in a child process \(exit -11\)"):
        step_mod.AOTStep(kws_model())
