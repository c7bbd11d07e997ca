"""The held-out negative corpus: hours of audio that hold no keyword, for false accepts per hour.

A keyword spotter is measured the way the field measures it: misses at a false-accept rate per hour
(FA/h) on long streamed audio. This module generates that audio on the machine, from material the
keyword set of :mod:`ssm_signal.data.keywords` never uses in training::

    <root>/speech/<source>/<nnnnn>.wav   16 kHz mono PCM-16; a few sentences by one voice, natural pauses
    <root>/music/<source>/<nnnnn>.wav    arranged music: real recorded loops and hits, and synthesised music
    <root>/noise/<source>/<nnnnn>.wav    coloured noise, hum, recorded machine and electronic sounds
    <root>/SENTENCES.txt                 every sentence spoken, one per line (sorted)
    <root>/MANIFEST.tsv                  every file: seconds, engine and voice, materials, sentences (" | ")
    <root>/GENERATED.json                generator, version, seed and config (the cache marker)
    <root>/SUMMARY.json                  seconds per source and kind, voices, sentence count, materials

Each folder under ``speech/``, ``music/`` and ``noise/`` is one *source*: an evaluator concatenates its
files in sorted order into one stream (:func:`corpus_sources`). No sentence is spoken in two sources,
so sources can be split into calibration and test halves that share no file or sentence.

Speech: espeak-ng with only the voice variants that the keyword set holds out of training (its
validation and testing variants, :func:`~ssm_signal.data.keywords.split_of`), in its eight English
accents, each speaker with its own rate and pitch (jittered per sentence); and Debian's ``flite`` (CMU
Flite: a second engine, diphone and unit-selection voices, not in the default keyword set; note that
``configs/kws_robust.yaml`` does train on flite voices), each speaker with its own duration stretch and
mean F0. A speech source is a channel of a few speakers taking turns, a file
per turn. Sentences come from a text that ships in Debian packages (:data:`TEXT_SOURCES`): the
``fortunes`` and ``fortunes-min`` quotation files of fortune-mod (BSD licence, Debian's copyright file). Every
sentence is checked to hold no keyword (:func:`holds_keyword`: the 35 Speech Commands words, their
homophones and inflected forms, any digit) and no token a synthesiser could read as one (roman numerals, single letters).
A share of the speech files gets real recorded machine noise (a Sonic Pi sample not used in training)
mixed in at a high SNR.

Music and noise use recorded Sonic Pi samples (Debian ``sonic-pi-samples``, CC0) that are not in
:data:`~ssm_signal.data.keywords.NOISE_SOURCES`, and generated sound.

Generation is deterministic for a seed (one random stream per job, a job being one part of one source,
independent of worker scheduling), runs in spawned worker processes, is written to ``<root>.partial``
and renamed into place when complete, and is cached: a second call with the same settings returns at
once, and a folder that holds anything else is never overwritten (:class:`DataError`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fcntl
import functools
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssm_signal.data.audio_io import read_audio, resample, write_audio
from ssm_signal.data.keywords import ACCENTS, NOISE_SOURCES, VARIANTS, KeywordSetConfig, split_of
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import AUXILIARY_WORDS, CORE_WORDS, SAMPLE_RATE
from ssm_signal.data.voices import tool as _tool

log = logging.getLogger("ssm_signal.data")

GENERATOR = "ssm-signal negative corpus"
GENERATOR_VERSION = 2  # 2: inflected keyword forms (KEYWORD_FORMS) rejected too
MARKER = "GENERATED.json"
SUMMARY = "SUMMARY.json"
SENTENCES = "SENTENCES.txt"
MANIFEST = "MANIFEST.tsv"
KINDS = ("speech", "music", "noise")

#: Words that sound like a keyword (to/too/two, for/fore/four, know/no, write/rite/wright/right,
#: won/one, ate/eight, oh/O/owe for "zero" read as a letter, nein/nine).
HOMOPHONES = ("to", "too", "for", "fore", "know", "write", "rite", "wright", "won", "ate", "oh", "o", "owe",
              "nein")  # fmt: skip
#: Inflected forms of the core words that begin with the keyword's sound (plurals, verb forms, ordinals,
#: teens and tens: "ones", "stopped", "going", "fourth", "eighteen", "sixty"): a spotter that fires on
#: them is arguably right, so they are no clean negatives. Other words that merely contain a keyword's
#: sound ("someone", "upon", "office", "bright", "tone") are kept: real speech is full of them.
KEYWORD_FORMS = (
    "yeses", "nos", "noes", "ups", "upped", "upping", "downs", "downed", "downing", "lefts", "rights", "righted",
    "ons", "offs", "stops", "stopped", "stopping", "stopper", "goes", "going", "zeros", "zeroes", "ones", "twos",
    "threes", "fours", "fives", "sixes", "sevens", "eights", "nines", "fourth", "sixth", "seventh", "eighth",
    "ninth", "fourteen", "sixteen", "seventeen", "eighteen", "nineteen", "forty", "fourty", "sixty", "seventy",
    "eighty", "ninety",
)  # fmt: skip
#: Every word no negative sentence may hold: the 35 Speech Commands words, the homophones and the
#: inflected forms above.
KEYWORD_LIKE = tuple(CORE_WORDS) + tuple(AUXILIARY_WORDS) + HOMOPHONES + KEYWORD_FORMS

FORTUNES_DIR = "/usr/share/games/fortunes"
#: Texts the sentences come from: Debian's ``fortunes`` and ``fortunes-min`` (BSD licence), only the files
#: of prose quotations (no code, chat logs, ASCII art, and none of the files on drugs, ethnic groups,
#: politics or the sexes).
TEXT_SOURCES = (
    *(f"{FORTUNES_DIR}/{n}" for n in (
        "art", "computers", "cookie", "definitions", "education", "food", "fortunes", "goedel", "humorists",
        "kids", "law", "literature", "love", "magic", "medicine", "miscellaneous", "news", "people", "pets",
        "platitudes", "riddles", "science", "songs-poems", "sports", "startrek", "wisdom", "work")),
)  # fmt: skip

ESPEAK_ENGINE, FLITE_ENGINE = "espeak-ng", "flite"
#: flite's built-in voices with a natural range of mean F0 (Hz) for each (awb_time only tells the time).
FLITE_VOICES = {"kal": (85.0, 140.0), "kal16": (85.0, 140.0), "awb": (90.0, 150.0), "rms": (80.0, 135.0),
                "slt": (150.0, 235.0)}  # fmt: skip

SONIC_PI_DIR = "/usr/share/sonic-pi/samples"
# Recorded material (Sonic Pi, CC0). None of it is in keywords.NOISE_SOURCES (checked when loaded).
DRUM_LOOPS = ("loop_amen", "loop_amen_full", "loop_breakbeat", "loop_compus", "loop_garzul", "loop_mika",
              "loop_safari", "loop_perc1", "loop_perc2", "loop_mehackit1", "loop_mehackit2", "loop_tabla",
              "loop_weirdo")  # fmt: skip
LAYER_LOOPS = ("loop_drone_g_97", "loop_electric", "loop_industrial", "loop_garzul", "loop_mika")
BASS_C = ("bass_drop_c", "bass_hard_c", "bass_hit_c", "bass_thick_c", "bass_trance_c", "bass_voxy_hit_c",
          "bass_woodsy_c")  # fmt: skip
GUITAR_E = ("guit_em9", "guit_e_fifths", "guit_harmonics", "guit_e_slide", "ambi_piano")
KICKS = ("bd_808", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_pure", "bd_tek", "bd_zome",
         "drum_heavy_kick", "drum_bass_hard", "drum_bass_soft")  # fmt: skip
SNARES = ("sn_dolf", "sn_dub", "sn_generic", "sn_zome", "drum_snare_hard", "drum_snare_soft", "elec_snare",
          "elec_hi_snare", "elec_mid_snare")  # fmt: skip
HATS = ("drum_cymbal_closed", "drum_cymbal_pedal", "drum_cymbal_soft", "elec_cymbal")
CRASHES = ("drum_splash_soft", "drum_splash_hard", "drum_cymbal_open", "drum_cymbal_hard")
TABLA = ("tabla_dhec", "tabla_ghe1", "tabla_ghe4", "tabla_ghe8", "tabla_ke1", "tabla_ke2", "tabla_na", "tabla_na_o",
         "tabla_na_s", "tabla_re", "tabla_tas1", "tabla_te1", "tabla_te2", "tabla_te_m", "tabla_te_ne",
         "tabla_tun1")  # fmt: skip
EVENTS = ("elec_beep", "elec_bell", "elec_blip", "elec_blip2", "elec_blup", "elec_bong", "elec_chime", "elec_ping",
          "elec_plip", "elec_pop", "elec_twang", "elec_twip", "elec_wood", "elec_flip", "glitch_perc1", "glitch_perc2",
          "glitch_perc3", "glitch_perc4", "glitch_perc5", "mehackit_phone1", "mehackit_phone2", "mehackit_phone3",
          "mehackit_phone4", "misc_crow", "misc_cineboom", "perc_bell", "perc_bell2", "perc_door", "perc_impact1",
          "perc_impact2", "perc_snap", "perc_snap2", "perc_swash", "perc_swoosh", "perc_till", "vinyl_backspin",
          "vinyl_rewind", "vinyl_scratch", "drum_roll")  # fmt: skip
MACHINES = ("loop_3d_printer", "loop_industrial")
#: Real recorded background that may be mixed under the speech (a 3D printer at work).
SPEECH_BACKGROUND = ("loop_3d_printer",)

MUSIC_STYLES = ("loops", "band", "guitar", "synth")
NOISE_STYLES = ("coloured", "hum", "events", "machine")


@dataclasses.dataclass(frozen=True)
class NegativeCorpusConfig:
    """What to generate.

    speech_hours: total speech, at least this much (each source's share is filled file by file).
    music_minutes, noise_minutes: total music and noise.
    speech_sources: speech folders (streams); ``flite_sources`` of them use flite, the rest espeak-ng.
    music_sources, noise_sources: music and noise folders; styles :data:`MUSIC_STYLES` and
        :data:`NOISE_STYLES` are cycled over them (the default 8 gives each style two sources, so that
        alternate sources in sorted order, ``band-00``, ``band-01``, ``guitar-00`` ..., split into two
        halves that both hold every style).
    speakers_per_source: voices taking turns in one speech source (a file is one turn).
    sentences_per_file: range of sentences in one speech file.
    pause_s: range of the pause between two sentences; edge_s: range of the silence at either end of a
        speech file (two files in a stream are thus parted by twice that).
    rate_wpm, pitch: espeak-ng speakers' rate (words per minute) and pitch (0-99) ranges.
    flite_stretch: flite speakers' duration stretch range (> 1 is slower); their F0 is drawn from
        :data:`FLITE_VOICES`' range for the voice.
    speech_peak_dbfs: range of a speaker's peak level (each file jitters it by +-3 dB).
    speech_noise_fraction, speech_snr_db: share of speech files with real recorded machine noise under
        them, and its SNR range (0 turns it off).
    music_peak_dbfs, noise_peak_dbfs: peak level ranges of music and noise files.
    music_file_s, noise_file_s: length of a music / noise file (a source's last one may be shorter).
    speech_part_s: speech per worker job (a source is split into parts of about this length).
    validation_percent, testing_percent: the keyword set's split shares; the voice variants they hold
        out are the only espeak-ng variants used (defaults: the keyword set's defaults).
    min_words, max_words: sentence length range in words.
    sample_rate: Hz of every file.
    """

    speech_hours: float = 3.0
    music_minutes: float = 30.0
    noise_minutes: float = 20.0
    speech_sources: int = 12
    flite_sources: int = 4
    music_sources: int = 8
    noise_sources: int = 8
    speakers_per_source: int = 3
    sentences_per_file: tuple[int, int] = (2, 5)
    pause_s: tuple[float, float] = (0.25, 1.1)
    edge_s: tuple[float, float] = (0.15, 0.7)
    rate_wpm: tuple[float, float] = (130.0, 205.0)
    pitch: tuple[float, float] = (20.0, 80.0)
    flite_stretch: tuple[float, float] = (0.85, 1.2)
    speech_peak_dbfs: tuple[float, float] = (-24.0, -4.0)
    speech_noise_fraction: float = 0.3
    speech_snr_db: tuple[float, float] = (20.0, 40.0)
    music_peak_dbfs: tuple[float, float] = (-20.0, -3.0)
    noise_peak_dbfs: tuple[float, float] = (-30.0, -6.0)
    music_file_s: float = 45.0
    noise_file_s: float = 30.0
    speech_part_s: float = 150.0
    validation_percent: float = KeywordSetConfig.validation_percent
    testing_percent: float = KeywordSetConfig.testing_percent
    min_words: int = 4
    max_words: int = 28
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        for name in ("speech_hours", "music_minutes", "noise_minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("speech_sources", "music_sources", "noise_sources", "speakers_per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.flite_sources <= self.speech_sources:
            raise ValueError(f"flite_sources must be in [0, speech_sources={self.speech_sources}]")
        if not 1 <= self.sentences_per_file[0] <= self.sentences_per_file[1]:
            raise ValueError(f"sentences_per_file must be a range of >= 1, got {self.sentences_per_file}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if not 0 <= self.speech_noise_fraction <= 1:
            raise ValueError(f"speech_noise_fraction must be in [0, 1], got {self.speech_noise_fraction}")
        for name in ("music_file_s", "noise_file_s", "speech_part_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000, got {self.sample_rate}")
        if not held_out_variants(self):
            raise ValueError("validation_percent/testing_percent hold out no espeak-ng voice variant")


# --- sentences -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern:
    alts = "|".join(re.escape(w) for w in sorted({w.lower() for w in words}, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alts})(?![A-Za-z0-9])", re.IGNORECASE)


def holds_keyword(sentence: str, words: Iterable[str] = KEYWORD_LIKE) -> bool:
    """Whether ``sentence`` holds any of ``words`` as a whole word (case-insensitive), or any digit.

    Whole word means bounded by anything but a letter or digit: "Stop!", "no-one", "go's" and "O'Hara"
    hold "stop", "no"/"one", "go" and "o"; "stopped", "nobody", "often" and "tone" hold none.
    """
    if re.search(r"\d", sentence):
        return True
    words = tuple(words)
    return bool(words) and _word_pattern(words).search(sentence) is not None


_SENTENCE = re.compile(r"[A-Z][A-Za-z ,;:'\-]*[a-z][.!?]")
_ROMAN_OR_CAPS = re.compile(r"\b[A-Z]{2,}\b")  # acronyms, shouting and roman numerals (II, IV) read oddly


def clean_sentences(text: str, *, min_words: int = 4, max_words: int = 28,
                    words: Iterable[str] = KEYWORD_LIKE) -> list[str]:
    """Speakable sentences of a fortune file (entries parted by ``%`` lines) or of plain prose.

    Attribution lines (``-- Author``) are dropped, quotes removed, dashes turned into commas; a sentence
    is kept only if it is plain words and punctuation (no digits, symbols, acronyms, roman numerals or
    lone letters but "a" and "I"), ``min_words``..``max_words`` long, and holds no keyword
    (:func:`holds_keyword`). Order of appearance, duplicates kept (callers dedupe).
    """
    words = tuple(words)
    out = []
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = [ln for ln in entry.splitlines() if not re.match(r"^\s*(--|CHAPTER\b)", ln)]
        body = " ".join(lines)
        body = body.replace("--", ", ").replace("`", "").replace('"', "")
        body = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", "", body)  # quotes, not apostrophes
        body = re.sub(r"\s+", " ", body).strip()
        for s in re.split(r"(?<=[.!?])\s+", body):
            s = re.sub(r"\s+([,;:.!?])", r"\1", s).strip(" ,;:")
            s = re.sub(r",\s*,", ",", s)
            if not _SENTENCE.fullmatch(s) or _ROMAN_OR_CAPS.search(s):
                continue
            tokens = re.findall(r"[A-Za-z']+", s)
            if not min_words <= len(tokens) <= max_words:
                continue
            if any(len(t) == 1 and t not in ("a", "A", "I") for t in tokens):
                continue
            if holds_keyword(s, words):
                continue
            out.append(s)
    return out


def load_sentences(sources: Sequence[str] = TEXT_SOURCES, *, min_words: int = 4, max_words: int = 28) -> list[str]:
    """Every usable sentence of the text sources, deduplicated and sorted (a stable pool for a seed)."""
    missing = [s for s in sources if not Path(s).is_file()]
    if missing:
        raise DataError(f"text sources missing: {missing[:3]}{' ...' if len(missing) > 3 else ''}; install the "
                        "Debian packages fortunes, fortunes-min and flite (`make system-deps`)")
    pool: set[str] = set()
    for src in sources:
        text = Path(src).read_bytes().decode("utf-8", errors="replace")
        pool.update(clean_sentences(text, min_words=min_words, max_words=max_words))
    if not pool:
        raise DataError(f"no usable sentence in {list(sources)}")
    return sorted(pool)


# --- voices --------------------------------------------------------------------------------------------


def held_out_variants(cfg: NegativeCorpusConfig | None = None) -> tuple[str, ...]:
    """The espeak-ng voice variants that the keyword set keeps out of training (validation + testing)."""
    cfg = cfg or NegativeCorpusConfig()
    return tuple(v for v in VARIANTS if split_of(v, cfg.validation_percent, cfg.testing_percent) != "training")


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


# --- recorded material ---------------------------------------------------------------------------------

_SAMPLES: dict[tuple[str, int], np.ndarray] = {}  # a worker's cache of loaded samples


class _Materials:
    """Loads Sonic Pi samples for one job and records which were used (never a training noise file)."""

    def __init__(self, sample_rate: int):
        self.sr = sample_rate
        self.used: set[str] = set()

    def __call__(self, name: str) -> np.ndarray:
        path = f"{SONIC_PI_DIR}/{name}.flac"
        if path in NOISE_SOURCES:
            raise DataError(f"{path} is a training noise source (keywords.NOISE_SOURCES): never a negative")
        if not Path(path).is_file():
            raise DataError(f"{path} not found: install the Debian package sonic-pi-samples (`make system-deps`)")
        self.used.add(path)
        key = (path, self.sr)
        if key not in _SAMPLES:
            _SAMPLES[key] = read_audio(path, self.sr).numpy()
        return _SAMPLES[key]


def _speed(x: np.ndarray, ratio: float) -> np.ndarray:
    """Play ``x`` ``ratio`` times faster (a sampler's pitch + tempo change), by linear interpolation."""
    if abs(ratio - 1.0) < 1e-6:
        return x
    pos = np.arange(0.0, len(x) - 1, ratio)
    return np.interp(pos, np.arange(len(x)), x).astype(np.float32)


def _semitones(x: np.ndarray, st: float) -> np.ndarray:
    return _speed(x, 2.0 ** (st / 12.0))


def _add(buf: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    if start >= len(buf) or start + len(x) <= 0:
        return
    a, b = max(start, 0), min(start + len(x), len(buf))
    buf[a:b] += gain * x[a - start:b - start]


def _tile(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    reps = -(-(n + offset) // len(x)) + 1
    return np.tile(x, reps)[offset:offset + n]


def _fade(x: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    x = x.copy()
    if n_in > 0:
        n_in = min(n_in, len(x))
        x[:n_in] *= np.linspace(0, 1, n_in, dtype=np.float32)
    if n_out > 0:
        n_out = min(n_out, len(x))
        x[len(x) - n_out:] *= np.linspace(1, 0, n_out, dtype=np.float32)
    return x


def _fftconv(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = 1 << int(math.ceil(math.log2(len(x) + len(h))))
    return np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)[:len(x)].astype(np.float32)


def _reverb(x: np.ndarray, rng: np.random.Generator, sr: int, wet: float, seconds: float) -> np.ndarray:
    n = max(int(sr * seconds), 16)
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at the end
    ir[: int(0.01 * sr)] *= np.linspace(0, 1, int(0.01 * sr))  # pre-delay ramp
    ir = (ir / np.sqrt(np.square(ir).sum())).astype(np.float32)
    return (1 - wet) * x + wet * _fftconv(x, ir)


def _coloured(n: int, alpha: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Noise with a 1/f^alpha power spectrum (0 white, 1 pink, 2 brown, -1 blue), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1] if n > 1 else 1.0
    x = np.fft.irfft(spec * f ** (-alpha / 2.0), n)
    return (x / max(float(np.sqrt(np.mean(np.square(x)))), 1e-12)).astype(np.float32)


def _bandpass(x: np.ndarray, lo: float, hi: float, sr: int) -> np.ndarray:
    n = len(x)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n).astype(np.float32)


def _level(x: np.ndarray, peak_db: float) -> np.ndarray:
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak <= 0:
        return x.astype(np.float32)
    return (x * (10 ** (peak_db / 20) / peak)).astype(np.float32)


# --- synthesised instruments ---------------------------------------------------------------------------


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def _tone(midi: float, dur: float, sr: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One synthesised note: additive harmonics under an envelope. kinds: pad, pluck, bass, square, bell."""
    n = max(int(dur * sr), 1)
    t = np.arange(n) / sr
    f0 = _hz(midi)
    amps = {"pad": lambda k: 1 / k, "pluck": lambda k: 1 / k**1.5, "bass": lambda k: (1.0, 0.35, 0.12)[k - 1] if k <= 3 else 0,
            "square": lambda k: (1 / k) if k % 2 else 0, "bell": lambda k: 0}[kind]  # fmt: skip
    x = np.zeros(n)
    if kind == "bell":
        for ratio, a, d in ((1.0, 1.0, 1.2), (2.76, 0.5, 0.6), (5.4, 0.25, 0.3), (8.9, 0.12, 0.15)):
            if f0 * ratio < sr / 2:
                x += a * np.sin(2 * np.pi * f0 * ratio * t) * np.exp(-t / d)
        return x.astype(np.float32)
    detune = (0.0, 0.004) if kind == "pad" else (0.0,)
    for k in range(1, 17):
        a = amps(k)
        if a == 0 or f0 * k * 1.01 >= sr / 2:
            continue
        for d in detune:
            x += a * np.sin(2 * np.pi * f0 * k * (1 + d) * t + rng.uniform(0, 2 * np.pi))
    if kind == "pad":
        att, rel = min(0.25, dur / 3), min(0.4, dur / 3)
        env = np.minimum(np.minimum(t / att, 1.0), np.minimum((dur - t) / rel, 1.0))
    elif kind == "pluck":
        env = np.minimum(t / 0.005, 1.0) * np.exp(-t / (0.15 + 0.1 * dur))
    else:
        env = np.minimum(t / 0.01, 1.0) * np.exp(-t / max(dur, 0.05)) * np.minimum((dur - t) / 0.02, 1.0)
    return (x * np.clip(env, 0, 1)).astype(np.float32)


def _synth_kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    f = 45 + 110 * np.exp(-t / 0.04)
    return (np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)).astype(np.float32)


def _synth_noise_hit(sr: int, rng: np.random.Generator, dur: float, decay: float, lo: float) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    return _bandpass(rng.standard_normal(len(t)).astype(np.float32) * np.exp(-t / decay), lo, sr / 2, sr)


PROGRESSIONS = (
    ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
    ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),
    ((2, "min"), (7, "maj"), (0, "maj"), (0, "maj")),
    ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
    ((0, "min"), (5, "min"), (7, "min"), (0, "min")),
    ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")),
)
_TRIAD = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_PENTA = {"maj": (0, 2, 4, 7, 9), "min": (0, 3, 5, 7, 10)}


# --- music ---------------------------------------------------------------------------------------------


def _music_loops(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Real recorded drum/percussion loops, a section at a time, at varied tempo, with a layer loop and a
    sampled bass line following a chord progression; sections crossfaded."""
    out = np.zeros(n, np.float32)
    pos, xf = 0, int(0.25 * sr)
    while pos < n:
        sec = int(rng.uniform(6, 16) * sr)
        ratio = float(rng.uniform(0.88, 1.12))
        loop = _speed(mat(DRUM_LOOPS[int(rng.integers(len(DRUM_LOOPS)))]), ratio)
        bar = len(loop) if len(loop) < 3 * sr else len(loop) // 4
        part = _tile(loop, sec + xf) * float(rng.uniform(0.5, 1.0))
        if rng.random() < 0.5:
            layer = _speed(mat(LAYER_LOOPS[int(rng.integers(len(LAYER_LOOPS)))]), ratio)
            part += _tile(layer, sec + xf, int(rng.integers(len(layer)))) * float(rng.uniform(0.15, 0.45))
        if rng.random() < 0.7:
            bass = mat(BASS_C[int(rng.integers(len(BASS_C)))])
            prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
            key = int(rng.integers(-5, 7))
            for j, b in enumerate(range(0, sec, max(bar, sr // 2))):
                st = key + prog[j % 4][0]
                note = _semitones(bass, st - 12 if st > 6 else st)[:bar]
                _add(part, _fade(note, 0, int(0.05 * sr)), b, float(rng.uniform(0.3, 0.6)))
        _add(out, _fade(part, xf if pos else 0, xf), pos)
        pos += sec
    return out


def _drum_kit(rng: np.random.Generator, mat: _Materials) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (mat(KICKS[int(rng.integers(len(KICKS)))]), mat(SNARES[int(rng.integers(len(SNARES)))]),
            mat(HATS[int(rng.integers(len(HATS)))]))


def _music_band(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Songs: synthesised chords, bass and melody over recorded drum hits, in a random key and tempo."""
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        song = int(rng.uniform(20, 60) * sr)
        beat = 60.0 / rng.uniform(78, 140)
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
        key = 48 + int(rng.integers(0, 12))
        kick, snare, hat = _drum_kit(rng, mat)
        crash = mat(CRASHES[int(rng.integers(len(CRASHES)))])
        lead = ("pluck", "square", "bell")[int(rng.integers(3))]
        scale = _PENTA[prog[0][1]]  # the song's mode is its first chord's
        buf = np.zeros(song + 2 * sr, np.float32)
        bar_n = int(4 * beat * sr)
        note = 0
        for b, start in enumerate(range(0, song, bar_n)):
            root, quality = prog[b % 4]
            for m in _TRIAD[quality]:
                _add(buf, _tone(key + 12 + root + m, 4 * beat, sr, "pad", rng), start, 0.08)
            for k in range(4):
                bs = start + int(k * beat * sr)
                if k % 2 == 0:
                    _add(buf, _tone(key - 12 + root, beat * 0.9, sr, "bass", rng), bs, 0.3)
                    _add(buf, kick, bs, 0.7)
                else:
                    _add(buf, snare, bs, 0.45)
                for h in range(2):
                    _add(buf, hat, bs + int(h * beat * sr / 2), float(rng.uniform(0.12, 0.25)))
            if b % 8 == 0:
                _add(buf, crash, start, 0.3)
            for e in range(8):  # eighth-note melody, a random walk on the pentatonic scale
                if rng.random() < 0.3:
                    continue
                note = int(np.clip(note + rng.integers(-2, 3), -3, 8))
                midi = key + 24 + scale[note % 5] + 12 * (note // 5)
                _add(buf, _tone(midi, beat * 0.5, sr, lead, rng), start + int(e * beat * sr / 2), 0.12)
        buf = _reverb(buf, rng, sr, float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.4, 1.2)))
        song_wave = _fade(buf[:song], int(0.5 * sr), int(2 * sr))
        _add(out, song_wave, pos)
        pos += song + int(rng.uniform(0.5, 2.0) * sr)
    return out


def _music_guitar(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Slow pieces of recorded guitar and piano samples pitched along a chord progression, with tabla."""
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        piece = int(rng.uniform(20, 50) * sr)
        beat = 60.0 / rng.uniform(60, 96)
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
        key = int(rng.integers(-4, 5))
        inst = mat(GUITAR_E[int(rng.integers(len(GUITAR_E)))])
        tabla = [mat(t) for t in rng.choice(TABLA, size=4, replace=False)]
        pattern = rng.integers(-1, 4, size=16)
        buf = np.zeros(piece + 2 * sr, np.float32)
        bar_n = int(4 * beat * sr)
        if rng.random() < 0.3:
            _add(buf, _tile(mat("loop_tabla"), piece), 0, 0.25)
        for b, start in enumerate(range(0, piece, bar_n)):
            root = prog[b % 4][0]
            st = key + root - 12 * (key + root > 6)
            _add(buf, _fade(_semitones(inst, st)[: bar_n + sr], 0, int(0.3 * sr)), start, 0.5)
            for s, hit in enumerate(pattern):
                if hit >= 0:
                    _add(buf, tabla[hit], start + int(s * beat * sr / 4), float(rng.uniform(0.15, 0.35)))
        buf = _reverb(buf, rng, sr, float(rng.uniform(0.15, 0.35)), float(rng.uniform(0.6, 1.5)))
        _add(out, _fade(buf[:piece], int(0.3 * sr), int(2 * sr)), pos)
        pos += piece + int(rng.uniform(0.5, 2.0) * sr)
    return out


def _music_synth(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Electronic tracks, all synthesised: kick, noise snares and hats, a bass line, arpeggios and pads."""
    out = np.zeros(n, np.float32)
    pos = 0
    kick = _synth_kick(sr)
    while pos < n:
        track = int(rng.uniform(25, 60) * sr)
        beat = 60.0 / rng.uniform(100, 140)
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
        key = 45 + int(rng.integers(0, 12))
        snare = _synth_noise_hit(sr, rng, 0.25, 0.06, 1500)
        hat = _synth_noise_hit(sr, rng, 0.08, 0.015, 6000)
        arp_kind = ("square", "pluck")[int(rng.integers(2))]
        buf = np.zeros(track + 2 * sr, np.float32)
        bar_n = int(4 * beat * sr)
        for b, start in enumerate(range(0, track, bar_n)):
            root, quality = prog[b % 4]
            chord = [key + 12 + root + m for m in _TRIAD[quality]]
            if b % 2 == 0:
                for m in chord:
                    _add(buf, _tone(m + 12, 8 * beat, sr, "pad", rng), start, 0.05)
            for k in range(4):
                bs = start + int(k * beat * sr)
                _add(buf, kick, bs, 0.8)
                if k % 2:
                    _add(buf, snare, bs, 0.35)
            for s in range(16):
                ss = start + int(s * beat * sr / 4)
                _add(buf, hat, ss, 0.12 if s % 2 else 0.2)
                if s % 2 == 0:
                    _add(buf, _tone(key - 12 + root + (12 if s % 8 == 6 else 0), beat * 0.45, sr, "bass", rng), ss, 0.3)
                _add(buf, _tone(chord[s % 3] + 12 * (1 + (s // 3) % 2), beat * 0.25, sr, arp_kind, rng), ss, 0.06)
        buf = _reverb(buf, rng, sr, float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.3, 0.8)))
        _add(out, _fade(buf[:track], int(0.5 * sr), int(2 * sr)), pos)
        pos += track + int(rng.uniform(0.3, 1.5) * sr)
    return out


def synth_music(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The fully synthesised style alone (no recorded sample): (n,) float32. Training negatives use it
    (:mod:`ssm_signal.data.training_speech`) from seed streams of their own."""
    return _music_synth(n, sr, rng, _Materials(sr))[:n]


# --- noise ---------------------------------------------------------------------------------------------


def _noise_coloured(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Coloured noise (white, pink, brown, blue, band-limited) in segments, slowly swelling and fading."""
    out = np.zeros(n, np.float32)
    pos, xf = 0, int(0.5 * sr)
    while pos < n:
        seg = int(rng.uniform(4, 15) * sr)
        x = _coloured(seg + xf, float(rng.choice([0.0, 1.0, 2.0, -1.0, 1.5])), rng, sr)
        if rng.random() < 0.3:
            lo = float(rng.uniform(50, 1000))
            x = _bandpass(x, lo, float(rng.uniform(lo * 2, sr / 2)), sr)
        t = np.arange(len(x)) / sr
        am = 10 ** (rng.uniform(0, 6) * np.sin(2 * np.pi * rng.uniform(0.03, 0.5) * t + rng.uniform(0, 6.3)) / 20)
        x = x * am.astype(np.float32) * float(10 ** (rng.uniform(-12, 0) / 20))
        _add(out, _fade(x, xf if pos else 0, xf), pos)
        pos += seg
    return out


def _noise_hum(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) with a fan: low-passed noise, blade-rate swirl and tone."""
    t = np.arange(n) / sr
    mains = float(rng.choice([50.0, 60.0]))
    hum = np.zeros(n)
    for k in range(1, 10):
        hum += rng.uniform(0, 1) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3))
    if rng.random() < 0.5:  # a buzzing transformer: a clipped hum
        hum = np.clip(hum * 3, -1, 1)
    blade = float(rng.uniform(20, 120))
    fan = _bandpass(_coloured(n, 1.0, rng, sr), 20, float(rng.uniform(800, 4000)), sr)
    fan *= (1 + 0.3 * np.sin(2 * np.pi * blade * t)).astype(np.float32)
    fan += 0.2 * np.sin(2 * np.pi * blade * float(rng.integers(2, 8)) * t).astype(np.float32)
    hum_gain, fan_gain = 10 ** (rng.uniform(-20, 0, size=2) / 20)
    drift = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.01, 0.1) * t)
    x = (hum_gain * hum / max(np.abs(hum).max(), 1e-9) + fan_gain * fan / max(np.abs(fan).max(), 1e-9)) * drift
    return x.astype(np.float32)


def _noise_events(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Recorded electronic, percussive and household sounds at random times over a faint noise bed."""
    out = _coloured(n, float(rng.uniform(0.5, 2.0)), rng, sr) * float(10 ** (rng.uniform(-45, -30) / 20))
    rate = float(rng.uniform(0.3, 1.5))
    pos = int(rng.exponential(1 / rate) * sr)
    while pos < n:
        x = _semitones(mat(EVENTS[int(rng.integers(len(EVENTS)))]), float(rng.uniform(-4, 4)))
        _add(out, x, pos, float(10 ** (rng.uniform(-20, 0) / 20)))
        pos += int(rng.exponential(1 / rate) * sr) + 1
    return out


def _noise_machine(n: int, sr: int, rng: np.random.Generator, mat: _Materials) -> np.ndarray:
    """Recorded machinery (a 3D printer, an industrial loop) at drifting speeds over a brown-noise rumble."""
    out = _coloured(n, 2.0, rng, sr) * float(10 ** (rng.uniform(-30, -12) / 20))
    pos, xf = 0, int(0.3 * sr)
    while pos < n:
        seg = int(rng.uniform(5, 15) * sr)
        x = _speed(mat(MACHINES[int(rng.integers(len(MACHINES)))]), float(rng.uniform(0.8, 1.2)))
        x = _tile(x, seg + xf, int(rng.integers(len(x)))) * float(10 ** (rng.uniform(-10, 0) / 20))
        _add(out, _fade(x, xf, xf), pos)
        pos += seg
    return out


_MUSIC = {"loops": _music_loops, "band": _music_band, "guitar": _music_guitar, "synth": _music_synth}
_NOISE = {"coloured": _noise_coloured, "hum": _noise_hum, "events": _noise_events, "machine": _noise_machine}


# --- jobs ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Job:
    kind: str  # speech, music, noise
    source: str  # folder name under kind/
    style: str  # music/noise style, or the speech engine
    source_index: int
    part: int
    seconds: float  # audio to write (speech: at least this much, as whole files)
    speakers: tuple[Speaker, ...] = ()
    sentence_offset: int = 0  # speech: the job's own stretch of the shuffled sentence pool
    sentence_count: int = 0


def _job_seed(seed: int, job: _Job) -> list[int]:
    return [seed, KINDS.index(job.kind), job.source_index, job.part]


_POOL: tuple[str, ...] = ()  # the shuffled sentence pool, set once per worker process


def _init_worker(sentences: tuple[str, ...]) -> None:
    global _POOL
    _POOL = sentences
    torch.set_num_threads(1)  # one process per core already


def _run_job(args: tuple[_Job, str, NegativeCorpusConfig, int]) -> list[dict]:
    """Worker: one job's files. Returns one record per written file (path relative to the root)."""
    job, root, cfg, seed = args
    sentences = _POOL
    rng = np.random.default_rng(_job_seed(seed, job))
    sr = cfg.sample_rate
    folder = Path(root) / job.kind / job.source
    records = []
    if job.kind == "speech":
        mat = _Materials(sr)
        done, j, k = 0.0, 0, 0
        turn = int(rng.integers(len(job.speakers)))
        while done < job.seconds:
            if len(job.speakers) > 1:  # the next turn goes to another speaker
                turn = (turn + 1 + int(rng.integers(len(job.speakers) - 1))) % len(job.speakers)
            speaker = job.speakers[turn]
            said, spoken = [], []
            pieces = [np.zeros(int(rng.uniform(*cfg.edge_s) * sr), np.float32)]
            for i in range(int(rng.integers(cfg.sentences_per_file[0], cfg.sentences_per_file[1] + 1))):
                text = sentences[job.sentence_offset + k % job.sentence_count]
                k += 1
                if i:
                    pieces.append(np.zeros(int(rng.uniform(*cfg.pause_s) * sr), np.float32))
                spoken.append(synthesize_sentence(text, speaker, rng, sr))
                pieces.append(spoken[-1])
                said.append(text)
            pieces.append(np.zeros(int(rng.uniform(*cfg.edge_s) * sr), np.float32))
            raw = np.concatenate(pieces)
            gain = 10 ** ((speaker.level_db + float(rng.uniform(-3, 3))) / 20) / max(float(np.abs(raw).max()), 1e-9)
            wave = raw * gain
            materials: list[str] = []
            if rng.random() < cfg.speech_noise_fraction:
                mat.used.clear()
                noise = mat(SPEECH_BACKGROUND[int(rng.integers(len(SPEECH_BACKGROUND)))])
                noise = _tile(noise, len(wave), int(rng.integers(len(noise))))
                # the SNR refers to the speech itself, not to the pauses around it (as in keywords.py)
                p_voice = float(np.mean(np.square(np.concatenate(spoken)))) * gain**2
                p_noise = max(float(np.mean(np.square(noise))), 1e-12)
                wave = wave + noise * math.sqrt(p_voice / (p_noise * 10 ** (rng.uniform(*cfg.speech_snr_db) / 10)))
                materials = sorted(mat.used)
            peak = float(np.abs(wave).max())
            if peak > 0.99:
                wave = wave * (0.99 / peak)
            rel = f"{job.kind}/{job.source}/p{job.part:03d}_{j:04d}.wav"
            write_audio(folder / rel.rsplit("/", 1)[1], wave, sr)
            records.append({"path": rel, "seconds": len(wave) / sr, "engine": speaker.engine, "voice": speaker.voice,
                            "materials": materials, "text": said})
            done += len(wave) / sr
            j += 1
        return records
    mat = _Materials(sr)
    n = max(int(round(job.seconds * sr)), 1)
    make = _MUSIC[job.style] if job.kind == "music" else _NOISE[job.style]
    wave = make(n, sr, rng, mat)[:n]
    levels = cfg.music_peak_dbfs if job.kind == "music" else cfg.noise_peak_dbfs
    wave = _level(_fade(wave, int(0.02 * sr), int(0.02 * sr)), float(rng.uniform(*levels)))
    rel = f"{job.kind}/{job.source}/p{job.part:03d}_0000.wav"
    write_audio(folder / rel.rsplit("/", 1)[1], wave, sr)
    return [{"path": rel, "seconds": n / sr, "engine": "", "voice": "", "materials": sorted(mat.used), "text": []}]


def _plan_jobs(cfg: NegativeCorpusConfig, seed: int, n_sentences: int) -> list[_Job]:
    jobs: list[_Job] = []
    speech_s = cfg.speech_hours * 3600.0
    if speech_s > 0:
        per_source = speech_s / cfg.speech_sources
        parts = max(1, math.ceil(per_source / cfg.speech_part_s))
        for i, (name, speakers) in enumerate(plan_speakers(cfg, seed)):
            for p in range(parts):
                jobs.append(_Job("speech", name, speakers[0].engine, i, p, per_source / parts, tuple(speakers)))
        # each speech job reads its own stretch of the shuffled pool (repeating it only if it runs out, which
        # the default sizes never do): no sentence is spoken in two sources
        if n_sentences < len(jobs):
            raise DataError(f"{n_sentences} sentences cannot give {len(jobs)} speech jobs a sentence each")
        bounds = [q * n_sentences // len(jobs) for q in range(len(jobs) + 1)]
        jobs = [dataclasses.replace(j, sentence_offset=bounds[q], sentence_count=bounds[q + 1] - bounds[q])
                for q, j in enumerate(jobs)]
    for kind, total_s, n_sources, styles, file_s in (
            ("music", cfg.music_minutes * 60.0, cfg.music_sources, MUSIC_STYLES, cfg.music_file_s),
            ("noise", cfg.noise_minutes * 60.0, cfg.noise_sources, NOISE_STYLES, cfg.noise_file_s)):
        if total_s <= 0:
            continue
        per_source = total_s / n_sources
        files = max(1, math.ceil(per_source / file_s - 1e-9))
        for i in range(n_sources):
            style = styles[i % len(styles)]
            name = f"{style}-{i // len(styles):02d}"
            for p in range(files):
                jobs.append(_Job(kind, name, style, i, p, per_source / files))
    return jobs


# --- the corpus ----------------------------------------------------------------------------------------


def _settings(cfg: NegativeCorpusConfig, seed: int) -> dict:
    return json.loads(json.dumps({"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed,
                                  "config": dataclasses.asdict(cfg)}))


def check_tools(cfg: NegativeCorpusConfig | None = None) -> None:
    """Raise a DataError naming what is missing: espeak-ng, flite, Sonic Pi samples, the texts."""
    cfg = cfg or NegativeCorpusConfig()
    if cfg.speech_hours > 0:
        if cfg.flite_sources < cfg.speech_sources:
            _tool("espeak-ng")
        if cfg.flite_sources > 0:
            _tool("flite")
        load_sentences(min_words=cfg.min_words, max_words=cfg.max_words)
    if (cfg.music_minutes > 0 or cfg.noise_minutes > 0 or cfg.speech_noise_fraction > 0) and not Path(
            SONIC_PI_DIR).is_dir():
        raise DataError(f"{SONIC_PI_DIR} not found: install the Debian package sonic-pi-samples (`make system-deps`)")


def generate_negative_corpus(root: str | os.PathLike, seed: int = 0, *, config: NegativeCorpusConfig | None = None,
                             workers: int | None = None) -> Path:
    """Generate the negative corpus into ``root`` (or return at once if it is already there).

    A folder that holds anything without this generator's marker, or a corpus generated with other
    settings, is never touched: that raises a DataError. Processes that ask for the same root at the same
    time take turns (an exclusive lock on ``<root>.lock``): the first generates, the others then find it
    cached. Returns ``root``.
    """
    cfg = config or NegativeCorpusConfig()
    root = Path(root)
    settings = _settings(cfg, seed)
    if _cached(root, settings):
        return root
    check_tools(cfg)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if this process dies
        if _cached(root, settings):  # another process made it while this one waited
            return root
        return _generate(root, cfg, seed, settings, workers)


def _cached(root: Path, settings: dict) -> bool:
    """True if ``root`` holds this corpus; False if it is absent or empty; else a DataError."""
    marker = root / MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == settings:
            return True
        raise DataError(f"{root} holds a negative corpus generated with other settings ({marker}); "
                        "delete the folder or choose another root")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and is not a generated negative corpus (no {MARKER}); not overwriting it")
    return False


def _generate(root: Path, cfg: NegativeCorpusConfig, seed: int, settings: dict, workers: int | None) -> Path:
    t0 = time.time()
    sentences: tuple[str, ...] = ()
    if cfg.speech_hours > 0:
        pool = load_sentences(min_words=cfg.min_words, max_words=cfg.max_words)
        sentences = tuple(np.random.default_rng([seed, 0x7E47]).permutation(pool).tolist())
    jobs = _plan_jobs(cfg, seed, len(sentences))
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # an interrupted earlier run
    tmp.mkdir(parents=True)
    log.info("generating the negative corpus: %.2f h speech, %.0f min music, %.0f min noise, %d jobs, into %s",
             cfg.speech_hours, cfg.music_minutes, cfg.noise_minutes, len(jobs), root)
    # the longest jobs first, so that the last ones to finish are short
    order = sorted(range(len(jobs)), key=lambda q: -jobs[q].seconds * (3 if jobs[q].kind == "speech" else 1))
    args = [(jobs[q], str(tmp), cfg, seed) for q in order]
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    if workers == 1:
        threads = torch.get_num_threads()
        try:
            _init_worker(sentences)
            results_in_order = [_run_job(a) for a in args]
        finally:
            _init_worker(())
            torch.set_num_threads(threads)
    else:
        # spawn, not fork: the parent has torch's thread pools running
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(sentences,)) as pool:
            results_in_order = list(pool.map(_run_job, args))
    results: list[list[dict]] = [[] for _ in jobs]
    for q, res in zip(order, results_in_order, strict=True):
        results[q] = res

    # name each source's files 00000, 00001 ... in (part, file) order
    records: list[dict] = []
    by_source: dict[str, list[dict]] = {}
    for res in results:
        for r in res:
            by_source.setdefault(r["path"].rsplit("/", 1)[0], []).append(r)
    for src in sorted(by_source):
        for n, r in enumerate(sorted(by_source[src], key=lambda r: r["path"])):
            new = f"{src}/{n:05d}.wav"
            (tmp / r["path"]).rename(tmp / new)
            records.append({**r, "path": new})

    summary = _summarise(records, cfg, seed, time.time() - t0)
    (tmp / SENTENCES).write_text("".join(f"{s}\n" for s in summary.pop("_sentences")))
    with open(tmp / MANIFEST, "w") as f:
        f.write("path\tseconds\tengine\tvoice\tmaterials\ttext\n")
        for r in records:
            f.write(f"{r['path']}\t{r['seconds']:.3f}\t{r['engine']}\t{r['voice']}\t{','.join(r['materials'])}\t"
                    f"{' | '.join(r['text'])}\n")
    (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    (tmp / MARKER).write_text(json.dumps(settings, indent=2) + "\n")
    if root.exists():
        root.rmdir()  # empty (checked above)
    tmp.rename(root)
    log.info("negative corpus ready in %.0f s: %.2f h in %d files", time.time() - t0,
             summary["seconds"]["total"] / 3600, summary["files"])
    return root


def _summarise(records: list[dict], cfg: NegativeCorpusConfig, seed: int, elapsed: float) -> dict:
    per_source: dict[str, float] = {}
    per_kind = dict.fromkeys(KINDS, 0.0)
    voices: dict[str, set[str]] = {ESPEAK_ENGINE: set(), FLITE_ENGINE: set()}
    materials: set[str] = set()
    sentences: set[str] = set()
    for r in records:
        src = r["path"].rsplit("/", 1)[0]
        per_source[src] = per_source.get(src, 0.0) + r["seconds"]
        per_kind[src.split("/", 1)[0]] += r["seconds"]
        if r["voice"]:
            voices[r["engine"]].add(r["voice"])
        materials.update(r["materials"])
        sentences.update(r["text"])
    return {
        "seconds": {**{k: round(v, 3) for k, v in per_kind.items()}, "total": round(sum(per_kind.values()), 3)},
        "sources": {k: round(v, 3) for k, v in sorted(per_source.items())},
        "files": len(records),
        "voices": {k: sorted(v) for k, v in voices.items()},
        "espeak_variants": sorted({v.split("+", 1)[1] for v in voices[ESPEAK_ENGINE]}),
        "sentences": len(sentences),
        "materials": sorted(materials),
        "text_sources": list(TEXT_SOURCES) if cfg.speech_hours > 0 else [],
        "text_sha256": _text_digest() if cfg.speech_hours > 0 else "",
        "generation_seconds": round(elapsed, 1),  # the one field that is not deterministic
        "_sentences": sorted(sentences),
    }


def _text_digest() -> str:
    """SHA-256 over the text sources (the sentence pool follows the installed package version)."""
    h = hashlib.sha256()
    for src in TEXT_SOURCES:
        h.update(Path(src).read_bytes())
    return h.hexdigest()


def corpus_sources(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Every source of a generated corpus: ``"speech/espeak-03"`` -> its WAV files in stream order.

    Raises:
        DataError: ``root`` is not a generated negative corpus (no marker, or no source).
    """
    root = Path(root)
    if not (root / MARKER).is_file():
        raise DataError(f"{root} is not a generated negative corpus (no {MARKER}); run generate_negative_corpus")
    out = {}
    for kind in KINDS:
        for folder in sorted(p for p in (root / kind).glob("*") if p.is_dir()):
            files = sorted(folder.glob("*.wav"))
            if files:
                out[f"{kind}/{folder.name}"] = files
    if not out:
        raise DataError(f"{root} holds no source")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ssm_signal.data.negatives ROOT [--seed N] [--workers N] [--speech-hours H] ...``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m ssm_signal.data.negatives", description=__doc__.splitlines()[0])
    p.add_argument("root", help="where to write the corpus (e.g. data/negatives)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    d = NegativeCorpusConfig()
    p.add_argument("--speech-hours", type=float, default=d.speech_hours)
    p.add_argument("--music-minutes", type=float, default=d.music_minutes)
    p.add_argument("--noise-minutes", type=float, default=d.noise_minutes)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = NegativeCorpusConfig(speech_hours=a.speech_hours, music_minutes=a.music_minutes,
                               noise_minutes=a.noise_minutes)
    root = generate_negative_corpus(a.root, a.seed, config=cfg, workers=a.workers)
    print(json.dumps(json.loads((root / SUMMARY).read_text())["seconds"]))


if __name__ == "__main__":
    main()
