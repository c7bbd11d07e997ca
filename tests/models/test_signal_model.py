"""Whole models, frontend included, obey the streaming contract."""

from __future__ import annotations

import random

import pytest
import torch

from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from tests.helpers import lively_encoder_, rel_err, state_rel_err

BACKBONE = BackboneConfig(d_model=16, layers=["mamba", "mamba2", "attention", "s4d"],
                          mixer_kwargs={"mamba": {"d_state": 4}, "mamba2": {"d_state": 8, "headdim": 8, "chunk_size": 8},
                                        "attention": {"window": 5}, "s4d": {"d_state": 8}})
CONFIGS = {
    "audio_classify": ModelConfig(FrontendConfig(n_mels=8, n_fft=64, hop_length=32, f_max=4000, sample_rate=8000),
                                  BACKBONE, HeadConfig("classify", num_classes=3), labels=["a", "b", "c"]),
    # PCEN in place of the log: the smoother carries state across chunks and its blocks of 64 frames
    "audio_classify_pcen": ModelConfig(FrontendConfig(n_mels=8, n_fft=64, hop_length=32, f_max=4000, sample_rate=8000,
                                                      pcen=True),
                                       BACKBONE, HeadConfig("classify", num_classes=3), labels=["a", "b", "c"]),
    # the frozen speech encoder (random weights here): one frame per 1280 samples, 75 mel frames of history
    "audio_classify_speech_embedding": ModelConfig(FrontendConfig(kind="speech_embedding"), BACKBONE,
                                                   HeadConfig("classify", num_classes=3), labels=["a", "b", "c"]),
    "sensor_forecast": ModelConfig(FrontendConfig(kind="sensor", in_channels=3), BACKBONE, HeadConfig("forecast")),
    "sensor_anomaly": ModelConfig(FrontendConfig(kind="sensor", in_channels=3, decimate=2), BACKBONE,
                                  HeadConfig("anomaly")),
    # forecasts of the next 5 frames: the score of a frame reads forecasts made up to 5 frames (chunks) before
    "sensor_anomaly_horizon": ModelConfig(FrontendConfig(kind="sensor", in_channels=3, decimate=2), BACKBONE,
                                          HeadConfig("anomaly", horizons=[1, 2, 5], score_window=4)),
    # the score also counts the distance of each hidden state to the nearest of 16 kept ones (stateless per frame)
    "sensor_anomaly_memory": ModelConfig(FrontendConfig(kind="sensor", in_channels=3, decimate=2), BACKBONE,
                                         HeadConfig("anomaly", horizons=[1, 3], memory=16)),
    # frames of block means and the blocks' mean absolute steps (6 features from 3 channels)
    "sensor_anomaly_spread": ModelConfig(FrontendConfig(kind="sensor", in_channels=3, decimate=4, spread=True),
                                         BACKBONE, HeadConfig("anomaly", horizons=[1, 3])),
}


def make(name):
    torch.manual_seed(random.randrange(2**31))
    m = SignalModel(CONFIGS[name])
    if CONFIGS[name].frontend.kind == "speech_embedding":
        lively_encoder_(m.frontend.encoder)  # else every window gives the same features
    if CONFIGS[name].head.memory:
        m.head.set_memory(torch.randn(40, CONFIGS[name].backbone.d_model))
    return m.double().eval()


def signal(name, L):
    C = CONFIGS[name].frontend.in_channels
    return torch.randn(2, L, C, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_chunks_equal_whole(name, seed):
    m = make(name)
    L = {"audio_classify": 700, "audio_classify_pcen": 32 * 150, "audio_classify_speech_embedding": 1280 * 2 + 333
         }.get(name, 60)
    x = signal(name, L)
    s0 = m.init_state(2, dtype=torch.float64)
    y, s = m(x, s0)
    rng = random.Random(seed)
    ys, st, t = [], s0, 0
    while t < L:
        n = rng.choice([1, 2, 7, 37, 64, 160])
        yc, st = m(x[:, t:t + n], st)
        ys.append(yc)
        t += n
    assert rel_err(torch.cat(ys, 1), y) <= 1e-10
    assert state_rel_err(st, s) <= 1e-10


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_frame_steps_equal_offline_on_every_prefix(name, seed):
    """A model streamed frame by frame equals the offline model run on each prefix."""
    m = make(name).float()
    hop = m.samples_per_frame
    n_frames = 12
    x = signal(name, hop * n_frames).float()
    s = m.init_state(2)
    for k in range(n_frames):
        y_t, s = m.step(x[:, k * hop:(k + 1) * hop], s)
        y_prefix, _ = m(x[:, :(k + 1) * hop])
        assert rel_err(y_t, y_prefix[:, -1]) <= 1e-4


def test_chunk_with_no_complete_frame_returns_empty(seed):
    m = make("audio_classify")
    y, s = m(signal("audio_classify", 5))
    assert y.shape == (2, 0, 3)
    y2, _ = m(signal("audio_classify", 40), s)
    assert y2.shape == (2, 1, 3)


def test_clip_logits_read_the_last_valid_frame(seed):
    m = make("audio_classify")
    x = signal("audio_classify", 320)
    lengths = torch.tensor([320, 200])
    out = m.clip_logits(x, lengths)
    y1, _ = m(x[1:, :200])
    assert rel_err(out[1], y1[0, -1]) <= 1e-10


def test_bad_input_and_config():
    m = SignalModel(CONFIGS["audio_classify"])
    with pytest.raises(ValueError, match="width"):
        m(torch.randn(1, 100, 2))
    with pytest.raises(ValueError, match="one frame"):
        m.step(torch.randn(1, 10, 1))
    with pytest.raises(ValueError, match="num_classes"):
        HeadConfig("classify", num_classes=1)
    with pytest.raises(ValueError, match="unknown mixers"):
        BackboneConfig(layers=["lstm"])
    with pytest.raises(ValueError, match="labels"):
        ModelConfig(head=HeadConfig(num_classes=3), labels=["a"])
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"frontend": {}, "bogus": 1})
    cfg = ModelConfig.from_dict(CONFIGS["sensor_anomaly"].to_dict())
    assert cfg == CONFIGS["sensor_anomaly"]
    for bad in ({"kind": "sensor", "spread": True}, {"spread": True}, {"kind": "sensor", "decimate": 4, "spread": 1}):
        with pytest.raises(ValueError, match="spread"):
            FrontendConfig(**bad)
    spread = SignalModel(CONFIGS["sensor_anomaly_spread"])
    assert spread.frontend.d_output == CONFIGS["sensor_anomaly_spread"].frontend.feature_dim == 6
    assert spread.head.err_var.shape == (2 * 6,)
