"""The training task's feature augmentation: vocal-tract length perturbation (VTLP) and SpecAugment apply
in training only, and VTLP is refused where there are no mel bands to warp."""

from __future__ import annotations

import pytest
import torch

from pipelines.task import SignalTask
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel


def task(vtlp: float, spec_augment=(0, 0, 0), kind: str = "logmel") -> SignalTask:
    front = FrontendConfig(n_mels=16) if kind == "logmel" else FrontendConfig(kind="sensor", in_channels=2)
    head = HeadConfig("classify", num_classes=3) if kind == "logmel" else HeadConfig("forecast")
    cfg = ModelConfig(front, BackboneConfig(d_model=8, layers=["s4d"], mixer_kwargs={"s4d": {"d_state": 4}}), head,
                      labels=["a", "b", "c"] if kind == "logmel" else [])
    t = SignalTask(cfg, vtlp=vtlp, spec_augment=spec_augment)
    t.model = SignalModel(cfg)
    return t


def test_vtlp_warps_each_clip_in_training_only(seed):
    t = task(0.15)
    feats = torch.randn(8, 30, 16).cumsum(-1)  # smooth across bands, as spectra are
    t.train()
    warped = t._augment(feats)
    assert warped.shape == feats.shape
    changed = (warped - feats).abs().amax(dim=(1, 2))
    assert (changed > 1e-3).sum() >= 6  # each clip draws its own factor in [0.85, 1.15]
    # a warp only re-reads bands: every output lies between the band values it interpolates
    assert warped.amin() >= feats.amin() - 1e-5 and warped.amax() <= feats.amax() + 1e-5
    t.eval()
    assert torch.equal(t._augment(feats), feats)
    t.train()
    assert torch.equal(task(0.0)._augment(feats), feats)


def test_vtlp_refuses_bad_values_and_sensor_frontends():
    with pytest.raises(ValueError, match="vtlp must be in"):
        task(1.5)
    with pytest.raises(ValueError, match="needs a logmel frontend"):
        task(0.1, kind="sensor")
