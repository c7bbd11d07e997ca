"""Bundles: round trip with identical outputs, clear failures, predict() on real-world input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.bundle import BundleError
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel


def small_model(kind="classify"):
    fc = FrontendConfig(n_mels=8, n_fft=64, hop_length=32, sample_rate=8000, f_max=4000) if kind == "classify" \
        else FrontendConfig(kind="sensor", in_channels=2)
    cfg = ModelConfig(fc, BackboneConfig(d_model=8, layers=["mamba2", "s4d"],
                                         mixer_kwargs={"mamba2": {"headdim": 4, "d_state": 4}, "s4d": {"d_state": 4}}),
                      HeadConfig(kind, num_classes=3 if kind == "classify" else 0),
                      labels=["yes", "no", "up"] if kind == "classify" else [])
    m = SignalModel(cfg).eval()
    with torch.no_grad():
        if kind == "classify":
            m.frontend.mean.normal_()
            m.frontend.std.uniform_(0.5, 2)
    return m


def test_round_trip_identical_outputs(tmp_path, seed):
    m = small_model()
    save_bundle(m, tmp_path / "b", name="kws", version="7", metrics={"test_acc": np.float64(0.5)})
    b = load_bundle(tmp_path / "b")
    assert (b.name, b.version, b.metrics["test_acc"], b.labels, b.sample_rate) == ("kws", "7", 0.5, m.config.labels, 8000)
    x = torch.randn(2, 1000, 1)
    with torch.no_grad():
        assert torch.equal(m(x)[0], b.model(x)[0])
    meta = json.loads((tmp_path / "b" / "config.json").read_text())
    assert meta["format_version"] == 1 and len(meta["normalisation"]["mean"]) == 8


def test_predict_resamples_downmixes_and_windows(tmp_path, seed, monkeypatch):
    b = load_bundle(save_bundle(small_model(), tmp_path / "b"))
    t = np.arange(8000) / 8000  # band-limited, so resampling round trips are near exact
    mono = (0.1 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.sin(2 * np.pi * 1100 * t)).astype(np.float32)
    p = b.predict(mono, 8000)
    assert p.frame_scores.shape == (250, 3) and p.label in b.labels
    assert np.allclose(p.scores.sum(), 1, atol=1e-5)
    # stereo int16 at 16 kHz: downmixed, scaled and resampled to the same signal
    up = torch.from_numpy(mono)[None]
    up = __import__("torchaudio").functional.resample(up, 8000, 16000)[0].numpy()
    pcm = np.clip(up * 32768, -32768, 32767).astype(np.int16)
    p2 = b.predict(np.stack([pcm, pcm], axis=1), 16000)
    assert p2.frame_scores.shape == p.frame_scores.shape
    assert np.abs(p2.frame_scores - p.frame_scores).max() < 0.05
    # windowed processing with carried state equals one pass
    import ssm_signal.bundle as bundle_mod
    monkeypatch.setattr(bundle_mod, "PREDICT_WINDOW_SECONDS", 0.1)
    p3 = b.predict(mono, 8000)
    assert np.abs(p3.frame_scores - p.frame_scores).max() < 1e-5


def test_predict_rejects_bad_signals(tmp_path):
    b = load_bundle(save_bundle(small_model(), tmp_path / "b"))
    with pytest.raises(ValueError, match="too short"):
        b.predict(np.zeros(10, np.float32), 8000)
    with pytest.raises(ValueError, match="NaN"):
        b.predict(np.full(1000, np.nan, np.float32), 8000)
    with pytest.raises(ValueError, match="empty"):
        b.predict(np.zeros(0, np.float32), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        b.predict(np.zeros(1000, np.float32), 0)
    s = load_bundle(save_bundle(small_model("anomaly"), tmp_path / "s"))
    with pytest.raises(ValueError, match="channels"):
        s.predict(np.zeros((100, 3), np.float32), 8000)
    assert s.predict(np.random.randn(100, 2).astype(np.float32), 8000).label in ("anomaly", "normal")


def test_load_fails_clearly(tmp_path):
    with pytest.raises(BundleError, match="make train"):
        load_bundle(tmp_path / "nothing")
    path = save_bundle(small_model(), tmp_path / "b")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99"):
        load_bundle(path)
    cfg["model"]["backbone"]["d_model"] = 16
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="shape"):
        load_bundle(path)
    with pytest.raises(BundleError, match="no resolver"):
        load_bundle("nosuchscheme:/x/1")
    (path / "model.safetensors").write_bytes(b"garbage")
    cfg["model"]["backbone"]["d_model"] = 8
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="unreadable weights"):
        load_bundle(path)


FIXTURE = Path(__file__).parent / "fixtures" / "kws_default"


def test_bundles_saved_with_former_field_names_load_silently(tmp_path, recwarn, caplog):
    """config.json from before the renames (frontend.channels, now in_channels) loads as it is, with no
    warning or log line; a model written now uses the new name; a config giving both names is refused."""
    assert "channels" in json.loads((FIXTURE / "config.json").read_text())["model"]["frontend"]
    with caplog.at_level("DEBUG"):
        b = load_bundle(FIXTURE)
    assert b.in_channels == b.model.in_channels == b.config.frontend.in_channels == 1
    assert not recwarn.list and not caplog.records
    # the fingerprint is the one the bundle had before the rename: its snapshots and scoring outputs stay valid
    assert b.fingerprint == "bc9ca56c08ddd1a5"
    # a sensor bundle written with the former name (its channel count matters): same model, same outputs
    model = small_model("anomaly")
    path = save_bundle(model, tmp_path / "new", name="t", version="1")
    cfg = json.loads((path / "config.json").read_text())
    assert "in_channels" in cfg["model"]["frontend"] and "channels" not in cfg["model"]["frontend"]
    cfg["model"]["frontend"]["channels"] = cfg["model"]["frontend"].pop("in_channels")
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    b_old, b_new = load_bundle(old), load_bundle(path)
    assert b_old.in_channels == b_new.in_channels == model.in_channels == 2
    x = torch.randn(1, 64, 2)
    assert torch.equal(b_old.model(x)[0], b_new.model(x)[0])
    both = dict(cfg["model"], frontend=dict(cfg["model"]["frontend"], in_channels=2))
    with pytest.raises(ValueError, match="former name"):
        ModelConfig.from_dict(both)
