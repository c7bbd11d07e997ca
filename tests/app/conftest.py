"""The demo's model and spoken-keyword WAVs for the app tests.

The model is the trained default bundle in tests/fixtures/kws_default: what `make train` wrote from a
fresh clone (configs/kws_default.yaml, 98.1% on the held-out voices; docs/results.md), so the tests
assert the spoken keyword itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssm_signal.frontends.resample import resample

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "kws_default"


@pytest.fixture(scope="session")
def demo_bundle() -> Path:
    if not ((FIXTURE / "config.json").is_file() and (FIXTURE / "model.safetensors").is_file()):
        pytest.fail(f"the trained bundle is missing from {FIXTURE} (copy artifacts/kws_default there)")
    return FIXTURE


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
