"""The demo's models, spoken-keyword WAVs and sensor tables for the app tests, and the browser driver.

The keyword model is the trained bundle in tests/fixtures/kws_default: what `make train` wrote from a fresh
clone with the espeak-ng recipe that was the default until 2026-12-05 (configs/kws_espeak.yaml, 98.1% on the
held-out voices; docs/results.md), so the tests assert the spoken keyword itself. The sensor model is tests/fixtures/sensor_anomaly: what `make train
CONFIG=configs/sensor_anomaly.yaml` wrote (docs/results.md), replayed on series of the generated table.
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
SENSOR_FIXTURE = ROOT / "tests" / "fixtures" / "sensor_anomaly"


def fixture_bundle(path: Path, source: str) -> Path:
    if not ((path / "config.json").is_file() and (path / "model.safetensors").is_file()):
        pytest.fail(f"the trained bundle is missing from {path} (copy {source} there)")
    return path


@pytest.fixture(scope="session")
def demo_bundle() -> Path:
    return fixture_bundle(FIXTURE, "artifacts/kws_default")


@pytest.fixture(scope="session")
def sensor_demo_bundle() -> Path:
    return fixture_bundle(SENSOR_FIXTURE, "artifacts/sensor_anomaly")


@pytest.fixture(scope="session")
def playwright_api():
    from tests.app.browser import CHROMIUM

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (make system-deps installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


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
