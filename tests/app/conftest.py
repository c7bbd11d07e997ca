"""The demo's model and spoken-keyword WAVs for the app tests.

The model is the trained default bundle in tests/fixtures/kws_default when it is there (then the
tests assert the spoken keyword itself); otherwise a randomly initialised bundle of the default
architecture (configs/kws_default.yaml), and the tests check the wiring with whatever label the
model shows.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ssm_signal import save_bundle
from ssm_signal.frontends.resample import resample
from ssm_signal.models import ModelConfig, SignalModel

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "kws_default"
LABELS = ("yes no up down left right on off stop go zero one two three four five six seven eight nine "
          "_silence_ _unknown_").split()


def trained() -> bool:
    return (FIXTURE / "config.json").is_file() and (FIXTURE / "model.safetensors").is_file()


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> Path:
    """The trained fixture if present, else a random bundle of the default architecture."""
    if trained():
        return FIXTURE
    cfg = yaml.safe_load((ROOT / "configs" / "kws_default.yaml").read_text())["model"]["network"]
    cfg["labels"] = LABELS
    torch.manual_seed(0)
    m = SignalModel(ModelConfig.from_dict(cfg)).eval()
    with torch.no_grad():
        m.frontend.mean.fill_(-8.0)
        m.frontend.std.fill_(3.0)
    return save_bundle(m, tmp_path_factory.mktemp("artifacts") / "kws_default", name="kws_default",
                       version="random")


def spoken(word: str, path: Path, rate: int = 48000, before: float = 0.5, after: float = 1.5) -> Path:
    """espeak-ng says ``word`` (22,050 Hz), resampled to ``rate``, padded with silence, 16-bit WAV."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (make system-deps installs it)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), word], check=True, capture_output=True)
    x, sr = sf.read(raw, dtype="float32")
    y = resample(torch.from_numpy(x), int(sr), rate).numpy()
    y = np.concatenate([np.zeros(int(before * rate), np.float32), y, np.zeros(int(after * rate), np.float32)])
    sf.write(path, y, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def keyword_wavs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wavs")
    return {w: spoken(w, d / f"{w}.wav") for w in ("yes", "no")}
