"""Exported models for the tests of the ONNX export, the runtime, the demo and the scorer: tiny models of
each layer kind and frontend, and the real default keyword bundle, each exported once per test session
(an export takes seconds). The ``exported`` fixture is registered in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssm_signal import load_bundle, save_bundle
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from tests.streaming.conftest import kws_model

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "kws_default"
KINDS = ("mamba", "mamba2", "s4d", "attention")


def tiny_sensor_model() -> SignalModel:
    """Two sensor channels at 100 Hz, blocks of 2, a Mamba-2 and an attention layer, the anomaly head with a memory
    of 6 normal states."""
    cfg = ModelConfig(FrontendConfig(kind="sensor", in_channels=2, sample_rate=100, decimate=2),
                      BackboneConfig(d_model=8, layers=["mamba2", "attention"],
                                     mixer_kwargs={"mamba2": {"headdim": 4, "d_state": 4},
                                                   "attention": {"n_heads": 2, "window": 6}}),
                      HeadConfig("anomaly", threshold=1.5, memory=6))
    m = SignalModel(cfg).eval()
    with torch.no_grad():
        m.head.err_var.uniform_(0.5, 2.0)
        m.head.set_memory(torch.randn(20, 8))
    return m


def tiny_speech_embedding_model() -> SignalModel:
    """The speech-embedding frontend (random encoder weights of the trained network's scale, statistics fitted on
    speech-like sound) before one tiny Mamba-2 layer."""
    from tests.streaming.conftest import KWS_LABELS, speechlike

    cfg = ModelConfig(FrontendConfig(kind="speech_embedding"),
                      BackboneConfig(d_model=8, layers=["mamba2"], mixer_kwargs={"mamba2": {"headdim": 4, "d_state": 4}}),
                      HeadConfig("classify", num_classes=len(KWS_LABELS)), labels=KWS_LABELS)
    from tests.helpers import lively_encoder_

    m = SignalModel(cfg).eval()
    lively_encoder_(m.frontend.encoder)
    with torch.no_grad():
        m.frontend.fit_normalization(torch.from_numpy(speechlike(20.0, 16000, 0))[None])
    return m


INT8 = ("kws_default", "speech_embedding")  # the log-mel and the speech-encoder keyword models


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)`` -> (bundle, export directory), name one of KINDS, "pcen" (a Mamba-2 layer behind the
    PCEN frontend), "speech_embedding", "sensor" or "kws_default";
    each built and exported once per session, with int8 graphs for those in INT8 only."""
    from pipelines.export import export_onnx

    root = tmp_path_factory.mktemp("exports")
    done: dict[str, tuple] = {}

    def get(name: str):
        if name not in done:
            torch.manual_seed(1000 + len(name))
            if name == "kws_default":
                bundle = load_bundle(FIXTURE)
            else:
                # the default keyword frontend, one tiny layer of the kind and a gated MLP
                model = tiny_sensor_model() if name == "sensor" else tiny_speech_embedding_model() if \
                    name == "speech_embedding" else \
                    kws_model(("mamba2",), mlp_ratio=1.0, pcen=True) if name == "pcen" else kws_model((name,), mlp_ratio=1.0)
                bundle = load_bundle(save_bundle(model, root / f"{name}_bundle", name=f"tiny_{name}", version="1"))
            out = root / name
            export_onnx(bundle, out, int8=name in INT8)
            done[name] = (bundle, out)
        return done[name]

    return get
