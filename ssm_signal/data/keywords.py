"""The embedded default data set: spoken keywords generated on this machine with espeak-ng.

No speech corpus can be downloaded here, so the default job trains on words synthesised by
espeak-ng (formant synthesis, many English accents and voice variants), written in exactly the
Speech Commands v2 layout (see :mod:`ssm_signal.data.speech_commands`), so the same loader serves
this set and a user's real download::

    <root>/<word>/<speaker>_nohash_<n>.wav      16 kHz mono PCM-16, exactly 1 s
    <root>/validation_list.txt, testing_list.txt speaker-disjoint (voice-disjoint, see below)
    <root>/_background_noise_/*.wav             real recorded noise, resampled to 16 kHz
    <root>/GENERATED.json                        what was generated, with which settings

Speakers. espeak-ng's "voice" is an accent (``en-us``, ``en-gb-scotland``, ``en-029`` ...) and a
voice variant (``m3``, ``f2``, ``klatt4``, ``edward`` ...: formant sets, breathiness, base pitch).
A speaker here is one (accent, variant, speaking rate, pitch) draw; every utterance then jitters
rate and pitch a little, lands at a random offset in its 1 s clip at a random level, and gets real
background noise mixed in at a random SNR. Each speaker says all 35 Speech Commands words' core
twenty once and a few of the other fifteen (the ``_unknown_`` class of the 12-class and default
setups).

Splits are decided by the voice variant, hashed like Speech Commands hashes speaker ids: every
speaker built on one variant lands in the same split, so the test set holds voices never heard in
training in any accent, rate or pitch (stricter than disjoint speaker ids alone).

Generation is deterministic for a seed (one random stream per speaker, independent of worker
scheduling), runs in parallel worker processes, is written to a temporary folder and renamed into
place when complete, and is cached: a second call with the same settings returns at once.

More engines (issue 16). ``engine_speakers`` adds pseudo-speakers of flite's and festival's voices
(:mod:`ssm_signal.data.voices`): each is one engine voice moved in F0, tempo and vocal-tract length.
Splits go by *person* (the human a voice was recorded from; an espeak-ng variant is its own person):
flite and festival persons (5 in all) train by default, so the validation and test splits keep their
held-out espeak-ng variants. ``holdout_engine`` makes the validation split one whole engine, never heard
in training (nor any person it voices, through another engine): leave-one-engine-out validation; the
espeak-ng variants that would have been validation voices then join the test split.

Background noise comes from Debian packages installed by ``make system-deps``: ``sonic-pi-samples``
(recorded ambience, CC0) and ``alsa-utils`` (``Noise.wav``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data import foreign_speech, recorded_speech, training_speech, voices
from ssm_signal.data.audio_io import read_audio, write_audio
from ssm_signal.data.generated import holds_generated
from ssm_signal.data.phrases import folder_of
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import (
    AUXILIARY_WORDS,
    BACKGROUND_DIR,
    CORE_WORDS,
    SAMPLE_RATE,
    TESTING_LIST,
    VALIDATION_LIST,
)
from ssm_signal.data.training_speech import TrainingSpeech

log = logging.getLogger("ssm_signal.data")

GENERATOR = "ssm-signal espeak-ng keywords"
GENERATOR_VERSION = 1
MARKER = "GENERATED.json"

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
# Human-sounding voice variants of espeak-ng 1.51 (robotic, whispering and novelty variants left out).
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique",
    "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo",
    "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "norbert", "pablo",
    "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis",
    "victor", "zac", "anika", "grandpa", "grandma",
)  # fmt: skip
NOISE_SOURCES = (
    "/usr/share/sounds/alsa/Noise.wav",
    *(f"/usr/share/sonic-pi/samples/{n}.flac" for n in (
        "ambi_choir", "ambi_dark_woosh", "ambi_drone", "ambi_glass_hum", "ambi_glass_rub", "ambi_haunted_hum",
        "ambi_lunar_land", "ambi_sauna", "ambi_soft_buzz", "ambi_swoosh", "vinyl_hiss")),
)
ESPEAK_RATE = 22050  # espeak-ng's output rate


@dataclasses.dataclass(frozen=True)
class KeywordSetConfig:
    """What to generate.

    n_speakers: speakers (voice variants are cycled, so each variant backs about n / len(VARIANTS)).
    words: words every speaker says once. other_words / other_per_speaker: each speaker also says
        this many words drawn from ``other_words`` (the ``_unknown_`` class of the default setup).
    validation_percent, testing_percent: share of voice variants held out for each split.
    rate_wpm, pitch: ranges of a speaker's speaking rate (words per minute) and pitch (0-99).
    snr_db: range of the signal-to-noise ratio of the mixed-in background noise.
    peak_dbfs: range of the clip's peak level.
    engine_speakers: pseudo-speakers of other engines, e.g. ``{"flite": 60, "festival": 36}`` (voices cycled;
        ``n_speakers`` stays the espeak-ng count).
    semitones, tempo, vtl: ranges of those pseudo-speakers' F0 shift (semitones), tempo factor (> 1 faster)
        and vocal-tract length factor (formant scaling; > 1 a shorter tract), see :func:`voices.perturb`.
    holdout_engine: an engine whose speakers form the whole validation split (leave-one-engine-out).
    training_speech: running speech, near-miss words, keywords in context and music for the training split
        (:class:`~ssm_signal.data.training_speech.TrainingSpeech`; none by default).
    """

    n_speakers: int = bounded(240, ge=0)
    words: tuple[str, ...] = CORE_WORDS
    other_words: tuple[str, ...] = AUXILIARY_WORDS
    other_per_speaker: int = bounded(4, ge=0)
    validation_percent: float = bounded(10.0, ge=0)
    testing_percent: float = bounded(10.0, ge=0)
    rate_wpm: tuple[float, float] = bounded((120.0, 220.0), gt=0)
    pitch: tuple[float, float] = bounded((20.0, 80.0), ge=0, le=99)
    snr_db: tuple[float, float] = bounded((10.0, 40.0))
    peak_dbfs: tuple[float, float] = bounded((-24.0, -2.0), le=0)
    engine_speakers: dict[str, int] = dataclasses.field(default_factory=dict)
    semitones: tuple[float, float] = bounded((-4.0, 4.0))
    tempo: tuple[float, float] = bounded((0.8, 1.25), gt=0)
    vtl: tuple[float, float] = bounded((0.85, 1.15), gt=0)
    holdout_engine: str | None = None
    training_speech: TrainingSpeech = dataclasses.field(default_factory=TrainingSpeech)

    def __post_init__(self):
        object.__setattr__(self, "engine_speakers", dict(self.engine_speakers))
        if isinstance(self.training_speech, dict):  # from a JSON marker or a plain config mapping
            object.__setattr__(self, "training_speech", TrainingSpeech(**self.training_speech))
        check_bounds(self)
        if self.n_speakers + sum(self.engine_speakers.values()) < 1:
            raise ValueError(f"n_speakers must be >= 1 (or 0 with engine_speakers), got {self.n_speakers}")
        bad = set(self.engine_speakers) - set(voices.VOICES)
        if bad or any(n < 0 for n in self.engine_speakers.values()):
            raise ValueError(f"engine_speakers: counts >= 0 for {sorted(voices.VOICES)}, got {self.engine_speakers}")
        if self.holdout_engine is not None and self.holdout_engine not in self.engines:
            raise ValueError(f"holdout_engine {self.holdout_engine!r} is not one of this set's engines {self.engines}")
        if len(self.engines) - (self.holdout_engine is not None) < 1:
            raise ValueError("holding out the only engine leaves nothing to train on")
        if not self.words:
            raise ValueError("words must name at least one word")
        if self.other_per_speaker > len(self.other_words):
            raise ValueError(f"other_per_speaker must be in [0, {len(self.other_words)}]")
        if set(self.words) & set(self.other_words):
            raise ValueError(f"words and other_words overlap: {sorted(set(self.words) & set(self.other_words))}")
        if not self.validation_percent + self.testing_percent < 100:
            raise ValueError(f"validation_percent and testing_percent must sum to < 100, got "
                             f"{self.validation_percent} + {self.testing_percent}")

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines that speak in this set."""
        return ((voices.ESPEAK,) if self.n_speakers else ()) + tuple(e for e, n in self.engine_speakers.items() if n)


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: ``id`` (8 hex digits, as in Speech Commands file names), espeak-ng
    accent and variant (or, for another engine, ``accent`` "" and its voice name as ``variant``), base rate
    (wpm) and pitch (espeak-ng) or tempo factor and semitones (others), its split and its words;
    ``engine`` and, for other engines, the vocal-tract length factor ``vtl``."""

    id: str
    accent: str
    variant: str
    rate: float
    pitch: float
    split: str
    words: tuple[str, ...]
    seed: int
    engine: str = voices.ESPEAK
    vtl: float = 1.0

    @property
    def person(self) -> str:
        """The human behind the voice (:data:`voices.VOICES`); an espeak-ng variant is its own person."""
        return self.variant if self.engine == voices.ESPEAK else voices.VOICES[self.engine][self.variant]


def split_of(variant: str, validation_percent: float, testing_percent: float) -> str:
    """"training", "validation" or "testing", from a stable hash of the voice variant (as Speech
    Commands' ``which_set`` hashes the speaker id): the split never depends on the other speakers."""
    h = int(hashlib.sha1(f"ssm-signal-voice/{variant}".encode()).hexdigest(), 16) % 10_000 / 100.0
    if h < validation_percent:
        return "validation"
    if h < validation_percent + testing_percent:
        return "testing"
    return "training"


def plan_speakers(cfg: KeywordSetConfig, seed: int) -> list[Speaker]:
    """The speakers of a set: deterministic for (cfg, seed). espeak-ng's come first and are the same as in
    a set without other engines; each other engine draws from a random stream of its own."""
    speakers = _plan_espeak(cfg, seed) + [s for e, n in cfg.engine_speakers.items() for s in _plan_engine(cfg, seed, e, n)]
    if cfg.holdout_engine is None:
        return speakers
    held = {s.person for s in speakers if s.engine == cfg.holdout_engine}
    out = []
    for s in speakers:
        if s.engine == cfg.holdout_engine:
            out.append(dataclasses.replace(s, split="validation"))
        elif s.person in held:
            continue  # the same human through another engine: neither trained on nor a clean hold-out
        else:
            out.append(dataclasses.replace(s, split="testing") if s.split == "validation" else s)
    return out


def _plan_engine(cfg: KeywordSetConfig, seed: int, engine: str, n: int) -> list[Speaker]:
    """``n`` pseudo-speakers of ``engine``'s voices (cycled), all in training (see the module docstring)."""
    rng = np.random.default_rng([seed, 0x5EED, voices.ENGINES.index(engine)])
    names = rng.permutation(sorted(voices.VOICES[engine])).tolist()
    speakers = []
    for i in range(n):
        voice = names[i % len(names)]
        tempo, st, vtl = (float(rng.uniform(*r)) for r in (cfg.tempo, cfg.semitones, cfg.vtl))
        others = tuple(rng.choice(cfg.other_words, size=cfg.other_per_speaker, replace=False).tolist())
        sid = hashlib.sha1(f"{seed}/{engine}/{i}/{voice}/{tempo:.3f}/{st:.3f}/{vtl:.3f}".encode()).hexdigest()[:8]
        speakers.append(Speaker(sid, "", voice, tempo, st, "training", tuple(cfg.words) + others,
                                int(rng.integers(2**62)), engine, vtl))
    return speakers


def _plan_espeak(cfg: KeywordSetConfig, seed: int) -> list[Speaker]:
    rng = np.random.default_rng([seed, 0x5EED])
    variants = rng.permutation(VARIANTS).tolist()  # a small set still draws voices from every split
    speakers = []
    for i in range(cfg.n_speakers):
        variant = variants[i % len(variants)]
        accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
        rate, pitch = float(rng.uniform(*cfg.rate_wpm)), float(rng.uniform(*cfg.pitch))
        others = tuple(rng.choice(cfg.other_words, size=cfg.other_per_speaker, replace=False).tolist())
        sid = hashlib.sha1(f"{seed}/{i}/{accent}/{variant}/{rate:.3f}/{pitch:.3f}".encode()).hexdigest()[:8]
        speakers.append(Speaker(sid, accent, variant, rate, pitch,
                                split_of(variant, cfg.validation_percent, cfg.testing_percent),
                                tuple(cfg.words) + others, int(rng.integers(2**62))))
    return speakers


def espeak_path() -> str:
    return voices.tool("espeak-ng")


def synthesize(word: str, voice: str, rate: float, pitch: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """espeak-ng saying ``word``: (L,) float32 at ``sample_rate``, leading/trailing silence trimmed."""
    cmd = [espeak_path(), "-v", voice, "-s", str(int(round(rate))), "-p", str(int(round(pitch))), "--stdout", word]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise DataError(f"espeak-ng failed for {word!r} with voice {voice!r}: {proc.stderr.decode()[-300:]}")
    return voices.decode(proc.stdout, f"espeak-ng {voice!r} for {word!r}", sample_rate)


def render_clip(word: str, speaker: Speaker, rng: np.random.Generator, noises: Sequence[torch.Tensor],
                cfg: KeywordSetConfig, neutral: torch.Tensor | None = None) -> torch.Tensor:
    """One 1 s clip (16000,) of ``speaker`` saying ``word``, placed, levelled and mixed with noise."""
    return place(speak(word, speaker, rng, neutral, fit=True), rng, noises, cfg)


def speak(text: str, speaker: Speaker, rng: np.random.Generator, neutral: torch.Tensor | None = None,
          fit: bool = False, language: str | None = None) -> torch.Tensor:
    """``speaker`` saying ``text``: (L,) at 16 kHz, silence trimmed; with ``fit``, a phrase (a text with a
    space) that would not fit a 1 s clip is said faster instead (a keyword phrase is never cut).

    espeak-ng speakers synthesise at their jittered rate and pitch; another engine's speaker perturbs
    ``neutral`` (the voice's plain rendering of ``text``) by its own F0, tempo and vocal-tract length,
    each jittered a little per utterance. ``language``: an espeak-ng language spoken instead of the
    speaker's English accent, in the speaker's own voice variant (espeak-ng speakers only)."""
    if language is not None and speaker.engine != voices.ESPEAK:
        raise ValueError(f"only espeak-ng speakers speak other languages, not {speaker.engine}")
    if speaker.engine == voices.ESPEAK:
        rate = speaker.rate * rng.uniform(0.92, 1.08)
        pitch = float(np.clip(speaker.pitch + rng.uniform(-6, 6), 0, 99))
        voice = synthesize(text, f"{language or speaker.accent}+{speaker.variant}", rate, pitch)
        if fit and " " in text and voice.shape[0] > SAMPLE_RATE:  # a phrase too slow for the clip: said faster
            voice = synthesize(text, f"{speaker.accent}+{speaker.variant}", rate * _fit(voice), pitch)
    else:
        if neutral is None:
            neutral = voices.synthesize_words(speaker.engine, speaker.variant, [text])[0]
        voice = voices.perturb(neutral, SAMPLE_RATE, semitones=speaker.pitch + rng.uniform(-0.5, 0.5),
                               tempo=speaker.rate * rng.uniform(0.95, 1.05), vtl=speaker.vtl * rng.uniform(0.98, 1.02))
        if fit and " " in text and voice.shape[0] > SAMPLE_RATE:
            voice = voices.sox_pitch_tempo(voice, SAMPLE_RATE, 0.0, _fit(voice))
    return voice


def place(voice: torch.Tensor, rng: np.random.Generator, noises: Sequence[torch.Tensor],
          cfg: KeywordSetConfig) -> torch.Tensor:
    """``voice`` (L,) at a random offset of a 1 s clip (16000,) at a random level, with noise mixed in."""
    n = SAMPLE_RATE
    if voice.shape[0] > n:  # a slow long word: keep its start, as a 1 s recording would
        voice = voice[:n]
    voice = level(voice, rng, cfg)
    clip = torch.zeros(n)
    start = int(rng.integers(0, n - voice.shape[0] + 1))
    clip[start:start + voice.shape[0]] = voice
    if noises:
        noise = noises[int(rng.integers(len(noises)))]
        tiled = noise.repeat(-(-n // noise.shape[0]) + 1)  # short recordings are looped
        off = int(rng.integers(0, tiled.shape[0] - n + 1))
        crop = tiled[off:off + n]
        # the SNR refers to the speech itself, not to the silence around it in the clip
        p_voice, p_noise = voice.square().mean(), crop.square().mean().clamp_min(1e-12)
        clip = clip + crop * torch.sqrt(p_voice / (p_noise * 10 ** (rng.uniform(*cfg.snr_db) / 10)))
    peak = float(clip.abs().max())
    return clip / peak * 0.99 if peak > 0.99 else clip


def level(voice: torch.Tensor, rng: np.random.Generator, cfg: KeywordSetConfig) -> torch.Tensor:
    """``voice`` (L,) scaled to a peak drawn uniformly from ``cfg.peak_dbfs`` (dBFS)."""
    return voice * (10 ** (rng.uniform(*cfg.peak_dbfs) / 20) / voice.abs().max().clamp_min(1e-9))


def _fit(voice: torch.Tensor) -> float:
    """The speed-up that makes ``voice`` (L,) fill 95% of a clip: a custom phrase is said faster rather
    than cut (a single word keeps the rule above: a 1 s recording cuts a slow long word)."""
    return voice.shape[0] / (0.95 * SAMPLE_RATE)


def _load_noises(folder: Path) -> list[torch.Tensor]:
    return [read_audio(f, SAMPLE_RATE) for f in sorted(folder.glob("*.wav"))]


def _speaker_job(args: tuple[Speaker, str, KeywordSetConfig]) -> list[str]:
    """Worker: every clip of one speaker. Returns the written paths relative to the root."""
    speaker, root, cfg = args
    torch.set_num_threads(1)  # one process per core already
    root_p = Path(root)
    noises = _worker_noises(root_p / BACKGROUND_DIR)
    rng = np.random.default_rng(speaker.seed)
    extra = training_speech.plan(cfg.words, speaker.split, speaker.seed, cfg.training_speech,
                                 foreign=speaker.engine == voices.ESPEAK)
    pool = training_speech.plan_pool(cfg.words, speaker.split, speaker.seed, cfg.training_speech,
                                     foreign=speaker.engine == voices.ESPEAK)
    texts = list(dict.fromkeys([*speaker.words,
                                *(t for u in (*extra, *pool) if u.language is None for t in u.texts)]))
    plain = dict(zip(texts, voices.synthesize_words(speaker.engine, speaker.variant, texts)
                     if speaker.engine != voices.ESPEAK else [None] * len(texts), strict=True))
    written = []
    for word in speaker.words:
        rel = f"{folder_of(word)}/{speaker.id}_nohash_0.wav"  # a phrase's folder: hey nova -> hey_nova
        write_audio(root_p / rel, render_clip(word, speaker, rng, noises, cfg, plain[word]), SAMPLE_RATE)
        written.append(rel)
    for k, u in enumerate(extra):
        parts = [speak(t, speaker, rng, plain.get(t), language=u.language) for t in u.texts]
        for j, voice in enumerate(training_speech.windows(u, parts, cfg.training_speech, rng)):
            rel = f"{folder_of(u.label)}/{speaker.id}_nohash_{u.kind}{k:02d}{j}.wav"
            write_audio(root_p / rel, place(voice, rng, noises, cfg), SAMPLE_RATE)
            written.append(rel)
    # last, from a stream of its own: the clips above are the same with or without a pool. Clean voices at a
    # random level: mining cuts windows out of them, and training augments those as it does every clip.
    pool_rng = np.random.default_rng([speaker.seed, 0x9003])
    for k, u in enumerate(pool):
        voice = level(speak(u.texts[0], speaker, pool_rng, plain.get(u.texts[0]), language=u.language), pool_rng, cfg)
        write_audio(root_p / training_speech.POOL_DIR / f"{speaker.id}_nohash_{u.kind}{k:02d}.wav", voice, SAMPLE_RATE)
    return written


_NOISE_CACHE: dict[str, list[torch.Tensor]] = {}


def _worker_noises(folder: Path) -> list[torch.Tensor]:
    key = str(folder)
    if key not in _NOISE_CACHE:
        _NOISE_CACHE[key] = _load_noises(folder)
    return _NOISE_CACHE[key]


def write_background_noise(folder: Path, sources: Sequence[str] = NOISE_SOURCES) -> list[Path]:
    """Copy the real noise recordings that are installed into ``folder`` as 16 kHz mono WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sources:
        p = Path(src)
        if not p.is_file():
            continue
        dst = folder / f"{p.stem.lower()}.wav"
        write_audio(dst, read_audio(p, SAMPLE_RATE), SAMPLE_RATE)
        out.append(dst)
    if not out:
        log.warning("no background noise recordings found (install sonic-pi-samples and alsa-utils: "
                    "`make system-deps`); the set gets no _silence_ source and no mixed-in noise")
    return out


_ENGINE_FIELDS = ("engine_speakers", "semitones", "tempo", "vtl", "holdout_engine")


# training-speech fields added after sets had been cached, with the value those sets were generated with
_LATER_SPEECH_FIELDS = {"in_context_words_after": 2, "real_music": 0, "near_misses_in_context_per_speaker": 0,
                        "real_speech": 0}


def _settings(cfg: KeywordSetConfig, seed: int) -> dict:
    """The generation settings as the marker file stores them (JSON types: tuples become lists).

    An espeak-ng-only set leaves the engine fields out, so sets generated before there were other engines
    (the same clips) stay valid caches; likewise a set without training speech leaves that out, and a
    training-speech field added later (:data:`_LATER_SPEECH_FIELDS`) is left out at the value earlier sets
    were generated with."""
    config = dataclasses.asdict(cfg)
    if not cfg.engine_speakers and cfg.holdout_engine is None:
        config = {k: v for k, v in config.items() if k not in _ENGINE_FIELDS}
    if not cfg.training_speech.any:
        del config["training_speech"]
    else:
        for field, before in _LATER_SPEECH_FIELDS.items():
            if config["training_speech"][field] == before:
                del config["training_speech"][field]
    return json.loads(json.dumps({"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed,
                                  "config": config}))


def _write_recorded(tmp: Path, cfg: KeywordSetConfig, seed: int) -> list[Path]:
    """The clips said by people, into the training split (no list names them): recorded words and phrases
    (``real_speech``), each placed, levelled and mixed with the set's noise as a generated word is. Returns
    their paths."""
    speech = cfg.training_speech
    if not speech.real_speech:
        return []
    noises = _load_noises(tmp / BACKGROUND_DIR)

    def placed(voice: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return place(voice, rng, noises, cfg)

    unknown = tmp / training_speech.UNKNOWN_DIR
    return recorded_speech.write_clips(unknown, speech.real_speech, cfg.words, seed, SAMPLE_RATE, placed)


def generate_keyword_set(root: str | os.PathLike, seed: int = 0, *, config: KeywordSetConfig | None = None,
                         workers: int | None = None) -> Path:
    """Generate the keyword set into ``root`` (or return at once if it is already there).

    A folder that holds data without this generator's marker (a real Speech Commands copy, say) is
    never touched: that raises a DataError instead. Returns ``root``.
    """
    cfg = config or KeywordSetConfig()
    root = Path(root)
    settings = _settings(cfg, seed)
    marker = root / MARKER
    if holds_generated(root, MARKER, settings, "keyword set"):
        return root
    for engine in cfg.engines:
        voices.check_engine(engine)

    t0 = time.time()
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # an interrupted earlier run
    tmp.mkdir(parents=True)
    write_background_noise(tmp / BACKGROUND_DIR)
    if cfg.training_speech.music_seconds:
        training_speech.write_music(tmp / BACKGROUND_DIR, cfg.training_speech.music_seconds, seed, SAMPLE_RATE)
    if cfg.training_speech.real_music:
        training_speech.write_real_music(tmp / BACKGROUND_DIR, cfg.training_speech.real_music, SAMPLE_RATE)
    recorded = _write_recorded(tmp, cfg, seed)
    if cfg.training_speech.speech:
        training_speech.training_sentences()  # fail now, not in every worker, if the texts are missing
    if cfg.training_speech.foreign_per_speaker or cfg.training_speech.pool_foreign_per_speaker:
        foreign_speech.check_texts(cfg.training_speech.languages)
    speakers = plan_speakers(cfg, seed)
    log.info("generating the keyword set: %d speakers (%s), %d words each, into %s", len(speakers),
             ", ".join(f"{e} {sum(s.engine == e for s in speakers)}" for e in cfg.engines), len(speakers[0].words), root)
    workers = workers or max(1, min(len(speakers), os.cpu_count() or 1))
    jobs = [(s, str(tmp), cfg) for s in speakers]
    if workers == 1:
        results = [_speaker_job(j) for j in jobs]
    else:
        # spawn, not fork: the parent has torch's thread pools running
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_speaker_job, jobs, chunksize=4))

    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for speaker, rels in zip(speakers, results, strict=True):
        if speaker.split in lists:
            lists[speaker.split] += rels
    for name, split in ((VALIDATION_LIST, "validation"), (TESTING_LIST, "testing")):
        (tmp / name).write_text("".join(f"{r}\n" for r in sorted(lists[split])))
    counts = {s: sum(1 for sp in speakers if sp.split == s) for s in ("training", "validation", "testing")}
    (tmp / MARKER).write_text(json.dumps({**settings, "speakers": counts,
                                          "clips": sum(len(r) for r in results) + len(recorded)}, indent=2) + "\n")
    if root.exists():
        root.rmdir()  # empty (checked above)
    tmp.rename(root)
    # the marker's extra fields are informative; the cache check compares the settings only
    marker_data = json.loads(marker.read_text())
    marker.write_text(json.dumps(settings, indent=2) + "\n")
    (root / "SUMMARY.json").write_text(json.dumps({k: marker_data[k] for k in ("speakers", "clips")}, indent=2) + "\n")
    log.info("keyword set ready in %.0f s: %d clips, speakers per split %s", time.time() - t0,
             marker_data["clips"], counts)
    return root
