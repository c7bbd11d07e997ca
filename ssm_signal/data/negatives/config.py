"""What a negative corpus holds: :class:`NegativeCorpusConfig`, and the espeak-ng voice variants it may use."""

from __future__ import annotations

import dataclasses

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data.keywords import VARIANTS, KeywordSetConfig, split_of
from ssm_signal.data.speech_commands import SAMPLE_RATE


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

    speech_hours: float = bounded(3.0, ge=0)
    music_minutes: float = bounded(30.0, ge=0)
    noise_minutes: float = bounded(20.0, ge=0)
    speech_sources: int = bounded(12, ge=1)
    flite_sources: int = 4
    music_sources: int = bounded(8, ge=1)
    noise_sources: int = bounded(8, ge=1)
    speakers_per_source: int = bounded(3, ge=1)
    sentences_per_file: tuple[int, int] = bounded((2, 5), ge=1)
    pause_s: tuple[float, float] = bounded((0.25, 1.1), ge=0)
    edge_s: tuple[float, float] = bounded((0.15, 0.7), ge=0)
    rate_wpm: tuple[float, float] = bounded((130.0, 205.0), gt=0)
    pitch: tuple[float, float] = bounded((20.0, 80.0), ge=0, le=99)
    flite_stretch: tuple[float, float] = bounded((0.85, 1.2), gt=0)
    speech_peak_dbfs: tuple[float, float] = bounded((-24.0, -4.0), le=0)
    speech_noise_fraction: float = bounded(0.3, ge=0, le=1)
    speech_snr_db: tuple[float, float] = bounded((20.0, 40.0))
    music_peak_dbfs: tuple[float, float] = bounded((-20.0, -3.0), le=0)
    noise_peak_dbfs: tuple[float, float] = bounded((-30.0, -6.0), le=0)
    music_file_s: float = bounded(45.0, gt=0)
    noise_file_s: float = bounded(30.0, gt=0)
    speech_part_s: float = bounded(150.0, gt=0)
    validation_percent: float = KeywordSetConfig.validation_percent
    testing_percent: float = KeywordSetConfig.testing_percent
    min_words: int = bounded(4, ge=1)
    max_words: int = 28
    sample_rate: int = bounded(SAMPLE_RATE, ge=8000)

    def __post_init__(self):
        check_bounds(self)
        if not 0 <= self.flite_sources <= self.speech_sources:
            raise ValueError(f"flite_sources must be in [0, speech_sources={self.speech_sources}]")
        if not self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if not held_out_variants(self):
            raise ValueError("validation_percent/testing_percent hold out no espeak-ng voice variant")


def held_out_variants(cfg: NegativeCorpusConfig | None = None) -> tuple[str, ...]:
    """The espeak-ng voice variants that the keyword set keeps out of training (validation + testing)."""
    cfg = cfg or NegativeCorpusConfig()
    return tuple(v for v in VARIANTS if split_of(v, cfg.validation_percent, cfg.testing_percent) != "training")

