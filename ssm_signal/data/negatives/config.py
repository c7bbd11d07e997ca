"""What a negative corpus holds: :class:`NegativeCorpusConfig`, and the espeak-ng voice variants it may use."""

from __future__ import annotations

import dataclasses

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



def held_out_variants(cfg: NegativeCorpusConfig | None = None) -> tuple[str, ...]:
    """The espeak-ng voice variants that the keyword set keeps out of training (validation + testing)."""
    cfg = cfg or NegativeCorpusConfig()
    return tuple(v for v in VARIANTS if split_of(v, cfg.validation_percent, cfg.testing_percent) != "training")

