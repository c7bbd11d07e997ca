"""A keyword set generated from text alone: any words or short phrases, in the default set's recipe.

    generate_custom_set(["hey nova", "lights on"], "data/my_words")

writes the Speech Commands layout of :mod:`ssm_signal.data.keywords` with the phrases as keywords
(folders ``hey_nova``, ``lights_on``: :func:`ssm_signal.data.phrases.folder_of`) and the everyday words of
:func:`ssm_signal.data.phrases.other_words` as ``_unknown_``. Everything else is the default set's: its
speakers (240 espeak-ng voices: accent, variant, rate, pitch), voice-disjoint splits, noise and levels,
unless ``base`` says otherwise (other engines' pseudo-speakers, say). A multi-word phrase is synthesised
as one utterance, so it is spoken as a phrase, with its own rhythm and coarticulation.

Clip length. A keyword set's clips last 1 s, as Speech Commands' do, and the whole stack reads them so
(training, the evaluation's positives). A phrase must therefore be short enough to fit: said by
espeak-ng's reference voice (``en-us``) at its default rate of 175 words per minute (the middle of the
speakers' 120-220 range), it may last at most :data:`MAX_SPOKEN_S`; a longer one is refused with a
one-line error that gives its duration. Slow speakers of a phrase that fits at that rate are made to say
it faster, to fit the clip (:func:`ssm_signal.data.keywords.render_clip`), never cut.

Each speaker says every keyword once and at least four other words, twice as many as there are keywords
(a model with few keywords needs its negatives most: every false accept lands on one of them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from ssm_signal.data.keywords import KeywordSetConfig, generate_keyword_set, synthesize
from ssm_signal.data.phrases import PhraseError, other_words, parse_phrases, set_name
from ssm_signal.data.speech_commands import SAMPLE_RATE
from ssm_signal.data.training_speech import TrainingSpeech

REFERENCE_VOICE = "en-us"
REFERENCE_RATE_WPM = 175.0  # espeak-ng's default rate
REFERENCE_PITCH = 50.0  # espeak-ng's default pitch
#: longest a keyword may take at the reference rate ("okay computer" 0.88 s fits, "turn the lights on"
#: 1.04 s does not): a speaker at the slowest rate (120 wpm, jittered to 110) takes about 1.6 times as
#: long, 1.45 s, which the clip holds once said 1.5 times faster; a longer phrase would be mostly sped up.
MAX_SPOKEN_S = 0.9
DATA_DIR = "data"
#: What a custom set's training speakers say beyond the words: the recipe of configs/kws_custom.yaml (a test
#: keeps the two equal), so `ssm-signal keywords` writes the set `make train WORDS=...` trains on.
TRAINING_SPEECH = TrainingSpeech(sentences_per_speaker=3, crops_per_sentence=2, music_seconds=300.0)


def default_root(phrases: Sequence[str]) -> str:
    """Where a custom set is generated unless told otherwise: ``data/keywords_<set name>``."""
    return f"{DATA_DIR}/keywords_{set_name(phrases)}"


def keyword_set_config(phrases: Sequence[str], base: KeywordSetConfig | None = None) -> KeywordSetConfig:
    """``base`` (default: the default set's settings) with ``phrases`` as its keywords and the everyday words
    that are no part of them as its other words. ``phrases``: labels from :func:`parse_phrases`."""
    base = base or KeywordSetConfig()
    others = other_words(phrases)
    per_speaker = min(len(others), max(base.other_per_speaker, 2 * len(phrases)))
    return dataclasses.replace(base, words=tuple(phrases), other_words=others, other_per_speaker=per_speaker)


def spoken_seconds(phrase: str) -> float:
    """How long espeak-ng's reference voice takes to say ``phrase`` at its default rate (silence trimmed)."""
    return synthesize(phrase, REFERENCE_VOICE, REFERENCE_RATE_WPM, REFERENCE_PITCH).shape[0] / SAMPLE_RATE


def check_fits_clip(phrases: Sequence[str]) -> None:
    """Raise PhraseError naming the first phrase too long for the 1 s clip (see the module docstring)."""
    for p in phrases:
        seconds = spoken_seconds(p)
        if seconds > MAX_SPOKEN_S:
            raise PhraseError(f"keyword {p!r} takes {seconds:.2f} s at an average speaking rate; a keyword must fit "
                              f"the 1 s clip with room for slow speakers (at most {MAX_SPOKEN_S:.2f} s): "
                              "choose a shorter phrase")


def generate_custom_set(texts: str | Sequence[str], root: str | os.PathLike | None = None, seed: int = 0, *,
                        base: KeywordSetConfig | None = None, workers: int | None = None) -> Path:
    """Generate (or find cached) the keyword set of ``texts`` (phrases, or one comma-separated string) in
    ``root`` (default :func:`default_root`). Returns the root. Raises PhraseError for unusable phrases
    (before anything is written) and DataError as :func:`generate_keyword_set` does."""
    phrases = parse_phrases(texts)
    check_fits_clip(phrases)
    config = keyword_set_config(phrases, base)
    return generate_keyword_set(root or default_root(phrases), seed, config=config, workers=workers)

