"""The synthetic speakers of the negative corpus (espeak-ng and flite voices) and one sentence spoken."""

from __future__ import annotations

import dataclasses
import io
import subprocess

import numpy as np
import soundfile as sf
import torch

from ssm_signal.data.audio_io import resample
from ssm_signal.data.keywords import ACCENTS
from ssm_signal.data.negatives.config import NegativeCorpusConfig, held_out_variants
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import SAMPLE_RATE
from ssm_signal.data.voices import tool as _tool

ESPEAK_ENGINE, FLITE_ENGINE = "espeak-ng", "flite"
#: flite's built-in voices with a natural range of mean F0 (Hz) for each (awb_time only tells the time).
FLITE_VOICES = {"kal": (85.0, 140.0), "kal16": (85.0, 140.0), "awb": (90.0, 150.0), "rms": (80.0, 135.0),
                "slt": (150.0, 235.0)}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker of a speech source: engine, voice (espeak-ng ``accent+variant`` or a flite
    voice), base rate (espeak-ng wpm, or flite duration stretch), pitch (espeak-ng 0-99, or flite mean
    F0 in Hz) and peak level (dBFS)."""

    engine: str
    voice: str
    rate: float
    pitch: float
    level_db: float


def plan_speakers(cfg: NegativeCorpusConfig, seed: int) -> list[tuple[str, list[Speaker]]]:
    """Speech sources (name, speakers): the espeak-ng ones first, then flite; deterministic for a seed."""
    rng = np.random.default_rng([seed, 0x5BEEC])
    variants = rng.permutation(held_out_variants(cfg)).tolist()
    flite_voices = rng.permutation(sorted(FLITE_VOICES)).tolist()
    n_espeak = cfg.speech_sources - cfg.flite_sources
    out, vi, fi = [], 0, 0
    for i in range(cfg.speech_sources):
        speakers = []
        for _ in range(cfg.speakers_per_source):
            level = float(rng.uniform(*cfg.speech_peak_dbfs))
            if i < n_espeak:
                accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
                speakers.append(Speaker(ESPEAK_ENGINE, f"{accent}+{variants[vi % len(variants)]}",
                                        float(rng.uniform(*cfg.rate_wpm)), float(rng.uniform(*cfg.pitch)), level))
                vi += 1
            else:
                voice = flite_voices[fi % len(flite_voices)]
                speakers.append(Speaker(FLITE_ENGINE, voice, float(rng.uniform(*cfg.flite_stretch)),
                                        float(rng.uniform(*FLITE_VOICES[voice])), level))
                fi += 1
        name = f"espeak-{i:02d}" if i < n_espeak else f"flite-{i - n_espeak:02d}"
        out.append((name, speakers))
    return out


def _trim(wave: np.ndarray, what: str) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) > 0.02 * (np.abs(wave).max() if wave.size else 0.0))
    if loud.size == 0:
        raise DataError(f"{what} produced silence")
    return wave[loud[0]:loud[-1] + 1]


def synthesize_sentence(text: str, speaker: Speaker, rng: np.random.Generator,
                        sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``speaker`` saying ``text`` with a little per-sentence jitter of rate and pitch: (L,) float32 at
    ``sample_rate``, leading and trailing silence trimmed."""
    if speaker.engine == ESPEAK_ENGINE:
        rate = speaker.rate * rng.uniform(0.94, 1.06)
        pitch = float(np.clip(speaker.pitch + rng.uniform(-5, 5), 0, 99))
        cmd = [_tool("espeak-ng"), "-v", speaker.voice, "-s", str(int(round(rate))), "-p", str(int(round(pitch))),
               "--stdout", "--stdin"]
    elif speaker.engine == FLITE_ENGINE:
        stretch = speaker.rate * rng.uniform(0.96, 1.04)
        f0 = speaker.pitch * rng.uniform(0.95, 1.05)
        cmd = [_tool("flite"), "-voice", speaker.voice, "--setf", f"duration_stretch={stretch:.3f}",
               "--setf", f"int_f0_target_mean={f0:.1f}", "-o", "/dev/stdout", "-t", text]
    else:
        raise ValueError(f"unknown engine {speaker.engine!r}")
    feed = {"input": text.encode()} if speaker.engine == ESPEAK_ENGINE else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run(cmd, capture_output=True, timeout=120, **feed)
    what = f"{speaker.engine} ({speaker.voice}) for {text[:60]!r}"
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        raise DataError(f"{what} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    wave, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    wave = _trim(wave, what)
    return resample(torch.from_numpy(np.ascontiguousarray(wave)), int(sr), sample_rate).numpy()

