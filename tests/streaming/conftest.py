"""Small bundles for the streaming tests: a 16 kHz keyword model and a 2-channel sensor anomaly model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.bundle import Bundle
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel

KWS_LABELS = ["yes", "no", "_silence_", "_unknown_"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def kws_model(layers=("mamba2", "s4d"), mlp_ratio: float = 0.0, pcen: bool = False) -> SignalModel:
    """The default keyword frontend (16 kHz, 10 ms hop, 25 ms window; PCEN in place of the log with
    ``pcen``), a tiny backbone."""
    cfg = ModelConfig(
        FrontendConfig(n_mels=8, n_fft=400, hop_length=160, sample_rate=16000, f_max=7600, pcen=pcen),
        BackboneConfig(d_model=8, layers=list(layers), mlp_ratio=mlp_ratio,
                       mixer_kwargs={"mamba2": {"headdim": 4, "d_state": 4, "chunk_size": 64}, "s4d": {"d_state": 4},
                                     "mamba": {"d_state": 4}, "attention": {"n_heads": 2, "window": 8}}),
        HeadConfig("classify", num_classes=len(KWS_LABELS)), labels=KWS_LABELS)
    m = SignalModel(cfg).eval()
    with torch.no_grad():
        # about what a fit gives: log-mel of speech near -8 (sd 3), PCEN near 1 (sd 1)
        m.frontend.mean.normal_(1, 0.2) if pcen else m.frontend.mean.normal_(-8, 1)
        m.frontend.std.uniform_(0.5, 1.5) if pcen else m.frontend.std.uniform_(2, 4)
    return m


SENSOR_THRESHOLD = 10.0


def sensor_model() -> SignalModel:
    """An untrained 2-channel anomaly model (frames of 2 samples at 100 Hz). Its alarm threshold lies between
    what its random forecasts score on the replay tests' normal noise (sd 0.3: a normalised error of at most
    4.2 over 300 inits) and what their offset of 20 sd scores (22 and more). At a threshold among the normal
    scores, some of the random inits the ``seed`` fixture draws raise a false alarm whose refractory
    second hides the anomaly's own alarm."""
    cfg = ModelConfig(FrontendConfig(kind="sensor", in_channels=2, sample_rate=100, decimate=2),
                      BackboneConfig(d_model=8, layers=["mamba2"], mixer_kwargs={"mamba2": {"headdim": 4, "d_state": 4}}),
                      HeadConfig("anomaly", threshold=SENSOR_THRESHOLD))
    return SignalModel(cfg).eval()


@pytest.fixture
def kws_bundle(tmp_path, seed) -> Bundle:
    return load_bundle(save_bundle(kws_model(), tmp_path / "kws", name="kws_test", version="1"))


@pytest.fixture
def sensor_bundle(tmp_path, seed) -> Bundle:
    return load_bundle(save_bundle(sensor_model(), tmp_path / "sensor", name="sensor_test", version="1"))


def speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A band-limited test signal: a few gliding tones with a syllable-rate envelope, plus noise (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = np.zeros_like(t)
    for _ in range(4):
        f0 = rng.uniform(150, 2500)
        x += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * (f0 * t + 40 * np.sin(2 * np.pi * 0.5 * t)))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x += 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)
