"""Training negatives for a keyword set: running speech, near-miss words and music.

A spotter trained on isolated keywords, a few other isolated words and noise has never heard speech that
holds no keyword, nor music: streamed over real speech it fires on whatever sounds closest (issue 16:
61 false accepts per hour on real speech, 92 on real music). This module gives the training split that
material, written into the keyword set's Speech Commands layout::

    <root>/_unknown_/<speaker>_nohash_s<k>.wav      a 1 s window of the speaker reading a sentence
    <root>/_unknown_/<speaker>_nohash_n<k>.wav      the speaker saying a near-miss word ("lift" for "left")
    <root>/_background_noise_/music_synth_<k>.wav   synthesised music: mixed under clips at the noise SNRs,
                                                    and cropped into the ``_silence_`` class

:class:`~ssm_signal.data.speech_commands.SpeechCommands` reads ``_unknown_/`` as the ``_unknown_`` class.
Only *training* speakers get sentences and near-misses: the validation and test splits stay isolated
words, so clip accuracy on them keeps its meaning across recipes.

Held-out material stays held out:

- Sentences come from texts the negative corpus (:mod:`ssm_signal.data.negatives`, what false accepts
  per hour are measured on) never reads: fortune-mod's files outside its
  :data:`~ssm_signal.data.negatives.TEXT_SOURCES` and the licence texts every Debian system ships
  (:data:`TRAINING_TEXTS`); a sentence that also stands in the corpus' pool is dropped. The same
  keyword rule applies (:func:`~ssm_signal.data.negatives.holds_keyword`): no keyword, homophone or
  inflected keyword form, so no ``_unknown_`` window holds a keyword.
- Music is the corpus' fully synthesised style only (no recorded sample that the corpus' music uses),
  from a seed stream of its own. Its generated-music false accepts therefore measure a model trained with
  music against unseen pieces of a style it has heard; real recorded music stays the held-out measure.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ssm_signal.data.skips import DataError

# ssm_signal.data.negatives is imported where used: it imports the keyword set, which imports this module.

UNKNOWN_DIR = "_unknown_"
MUSIC_PREFIX = "music_synth_"

#: fortune-mod files outside the negative corpus' TEXT_SOURCES (Latin "translate-me" left out), and the
#: licence texts of Debian's base-files (/usr/share/common-licenses).
TRAINING_TEXTS = (
    *(f"/usr/share/games/fortunes/{n}" for n in (
        "debian", "disclaimer", "knghtbrd", "linux", "linuxcookie", "paradoxum", "perl", "pratchett", "tao",
        "zippy")),
    *(f"/usr/share/common-licenses/{n}" for n in (
        "Apache-2.0", "Artistic", "BSD", "GPL-2", "GPL-3", "LGPL-2.1", "LGPL-3", "MPL-2.0")),
)  # fmt: skip

#: Words that sound close to a keyword but are not it (no homophone: "know" IS "no" to the ear, see
#: negatives.HOMOPHONES): a different vowel, a changed or added consonant, a rhyme.
NEAR_MISSES = {
    "yes": ("yet", "yell", "guess", "less", "yeah", "chess"),
    "no": ("nose", "snow", "note", "now", "new", "slow"),
    "up": ("cup", "pup", "app", "hop", "sup", "us"),
    "down": ("town", "gown", "brown", "crown", "dawn", "dome"),
    "left": ("lift", "loft", "theft", "laughed", "deft", "let"),
    "right": ("light", "ripe", "rhyme", "fight", "white", "ride"),
    "on": ("an", "in", "own", "awe", "john", "odd"),
    "off": ("of", "cough", "if", "oft", "golf", "ox"),
    "stop": ("shop", "step", "stock", "top", "spot", "stomp"),
    "go": ("dough", "grow", "goat", "gone", "show", "toe"),
    "zero": ("hero", "zebra", "sierra", "arrow", "pharaoh", "serum"),
    "one": ("run", "fun", "gun", "wand", "when", "worn"),
    "two": ("tooth", "tube", "do", "shoe", "true", "tune"),
    "three": ("free", "through", "thee", "sea", "breathe", "thread"),
    "four": ("floor", "door", "core", "fork", "far", "fur"),
    "five": ("fine", "hive", "dive", "file", "fife", "life"),
    "six": ("fix", "mix", "sit", "kicks", "sick", "sticks"),
    "seven": ("heaven", "several", "eleven", "sever", "level", "kevin"),
    "eight": ("ache", "late", "gate", "weight", "hate", "aim"),
    "nine": ("line", "mine", "night", "dine", "wine", "nice"),
}


@dataclasses.dataclass(frozen=True)
class TrainingNegatives:
    """How much of each negative a keyword set's training split gets.

    sentences_per_speaker: sentences each training speaker reads; each gives ``crops_per_sentence``
        1 s windows (at random positions that hold speech).
    near_misses_per_speaker: near-miss words each training speaker says (drawn from :data:`NEAR_MISSES`
        of the set's keywords).
    music_seconds: synthesised music written into the background-noise folder.
    """

    sentences_per_speaker: int = 0
    crops_per_sentence: int = 2
    near_misses_per_speaker: int = 0
    music_seconds: float = 0.0

    def __post_init__(self):
        for name in ("sentences_per_speaker", "crops_per_sentence", "near_misses_per_speaker"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.crops_per_sentence < 1:
            raise ValueError(f"crops_per_sentence must be >= 1, got {self.crops_per_sentence}")
        if self.music_seconds < 0:
            raise ValueError(f"music_seconds must be >= 0, got {self.music_seconds}")

    @property
    def any(self) -> bool:
        return bool(self.sentences_per_speaker or self.near_misses_per_speaker or self.music_seconds)


def training_sentences() -> list[str]:
    """The sentence pool of training negatives: :data:`TRAINING_TEXTS` less anything in the corpus' pool
    (quotes recur across fortune files). Sorted, so a seed picks the same sentences everywhere."""
    from ssm_signal.data.negatives import load_sentences

    held_out = set(load_sentences())
    pool = [s for s in load_sentences(TRAINING_TEXTS) if s not in held_out]
    if not pool:
        raise DataError(f"no training sentence left in {TRAINING_TEXTS}")
    return pool


def near_misses(words: tuple[str, ...]) -> tuple[str, ...]:
    """The near-miss words of the keywords that have some, minus any keyword itself (sorted)."""
    out = {m for w in words for m in NEAR_MISSES.get(w, ())}
    return tuple(sorted(out - set(words)))


def speech_windows(speech: torch.Tensor, n: int, count: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """``count`` windows of ``n`` samples from ``speech`` (L,), each starting at a random position whose
    window holds speech (its centre half is not silent); a shorter ``speech`` is returned once, as is.

    The windows are the ``voice`` that :func:`ssm_signal.data.keywords.render_clip` levels and mixes."""
    if speech.shape[0] <= n:
        return [speech]
    level = speech.abs().max()
    out = []
    for _ in range(50 * count):
        start = int(rng.integers(0, speech.shape[0] - n + 1))
        win = speech[start:start + n]
        if win[n // 4: 3 * n // 4].abs().max() > 0.1 * level:
            out.append(win)
            if len(out) == count:
                break
    return out


def write_music(folder, seconds: float, seed: int, sample_rate: int) -> list:
    """``seconds`` of synthesised music into ``folder`` as files of at most a minute. Returns the paths."""
    from ssm_signal.data import negatives
    from ssm_signal.data.audio_io import write_audio

    paths = []
    left, k = float(seconds), 0
    while left > 0.5:
        n = int(min(left, 60.0) * sample_rate)
        rng = np.random.default_rng([seed, 0x3051C, k])
        wave = negatives.synth_music(n, sample_rate, rng)
        peak = float(np.abs(wave).max())
        wave = wave * (10 ** (rng.uniform(-12, -3) / 20) / max(peak, 1e-9))
        paths.append(write_audio(folder / f"{MUSIC_PREFIX}{k:02d}.wav", wave, sample_rate))
        left -= n / sample_rate
        k += 1
    return paths
