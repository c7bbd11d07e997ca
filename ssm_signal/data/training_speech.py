"""What training speakers say beyond isolated words: running speech, near-miss words, keywords next to
other words; and music under it all.

A spotter trained on isolated keywords, a few other isolated words and noise has never heard speech that
holds no keyword, a keyword inside speech, nor music: streamed over real speech it fires on whatever
sounds closest (issue 16: 61 false accepts per hour on real speech, 92 on real music). This module gives
the training split that material, written into the keyword set's Speech Commands layout::

    <root>/_unknown_/<speaker>_nohash_s<k><j>.wav   1 s windows of the speaker reading a sentence
    <root>/_unknown_/<speaker>_nohash_n<k>0.wav     the speaker saying a near-miss word ("lift" for "left")
    <root>/_unknown_/<speaker>_nohash_m<k>0.wav     a near-miss word between other words, cut as a keyword
                                                    in context is ("... cat LIFT tree ...")
    <root>/_unknown_/<speaker>_nohash_f<k><j>.wav   1 s windows of the speaker reading a sentence in another
                                                    language (espeak-ng speakers; :mod:`foreign_speech`)
    <root>/_unknown_/<speaker>_nohash_l<k>0.wav     the speaker saying a letter or syllable of some language
                                                    alone (espeak-ng speakers; :mod:`letters`)
    <root>/_unknown_/recorded<k>_nohash_r0.wav      a person saying a word or short phrase in another language
                                                    (recorded, not generated; :mod:`recorded_speech`)
    <root>/<word>/<speaker>_nohash_c<k>0.wav        the keyword between other words ("... cat LEFT tree ..."),
                                                    cut to 1 s around the whole keyword
    <root>/_background_noise_/music_synth_<k>.wav   synthesised music: mixed under clips at the noise SNRs,
                                                    and cropped into the ``_silence_`` class
    <root>/_background_noise_/music_real_<k>.wav    recorded game music (:data:`TRAINING_MUSIC`), used alike
    <root>/_pool_/<speaker>_nohash_p<k>.wav         a whole sentence the speaker reads (``q``: in another
                                                    language), for hard-negative mining: no class reads it;
                                                    training scores it and keeps the windows the model takes
                                                    most for a keyword (``pipelines/mining.py``)

A keyword in context is spoken word by word and joined with short pauses, so its time span is known
exactly and every window holds all of it: the clip's label is true of its last frames, where the
training loss looks (``frame_loss_frames``). Joined words lack the coarticulation of a phrase spoken in
one breath; what they add is neighbours, and onsets and tails that are not silence.

:class:`~ssm_signal.data.speech_commands.SpeechCommands` reads ``_unknown_/`` as the ``_unknown_`` class.
Only *training* speakers get any of it: the validation and test splits stay isolated
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
  Recorded music (``real_music``) is two game soundtracks from packages that neither real set reads
  (:data:`TRAINING_MUSIC`), so real music in validation and report stays unheard.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data import letters
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import SAMPLE_RATE, UNKNOWN

# ssm_signal.data.negatives is imported where used: it imports the keyword set, which imports this module.

UNKNOWN_DIR = UNKNOWN  # the folder is named after the class it holds (SpeechCommands reads it so)
POOL_DIR = "_pool_"  # a folder that starts with "_" is no class of SpeechCommands
MUSIC_PREFIX = "music_synth_"
REAL_MUSIC_PREFIX = "music_real_"

#: Recorded music for training, from Debian packages that `make system-deps` installs and that neither the real
#: validation set (extremetuxracer-data, lincity-ng-data) nor the report set (asterisk-moh-opsound-wav,
#: singularity-music) reads: X-Moto's soundtrack (xmoto-data, GPL-2+, 7 tracks, 10.0 min) and Frozen-Bubble's
#: (frozen-bubble-data, GPL-2, 3 tracks, 11.7 min).
TRAINING_MUSIC_PACKAGES = ("xmoto-data", "frozen-bubble-data")
TRAINING_MUSIC = (
    *(f"/usr/share/games/xmoto/Textures/Musics/{n}.ogg" for n in (
        "MadeiraStew", "batcave", "foxrun", "legolodio", "menu", "ridealong", "speeditup")),
    *(f"/usr/share/games/frozen-bubble/snd/{n}.ogg" for n in ("frozen-mainzik-1p", "frozen-mainzik-2p", "introzik")),
)  # fmt: skip

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
class TrainingSpeech:
    """How much of each a keyword set's training speakers get.

    sentences_per_speaker: sentences each training speaker reads; each gives ``crops_per_sentence``
        1 s windows (at random positions that hold speech), ``_unknown_``.
    near_misses_per_speaker: near-miss words each training speaker says (drawn from :data:`NEAR_MISSES`
        of the set's keywords), ``_unknown_``.
    in_context_per_speaker: keywords each training speaker says between other words (up to two words
        before and up to ``in_context_words_after`` after, at least one word in all, from the sentences'
        vocabulary), labelled with the keyword.
    in_context_words_after: the most words said after a keyword in context. 0 puts the keyword at the end
        of its phrase and of its clip's speech ("stone nine"), so the clip's last-frame targets follow the
        keyword's end as an isolated word's do; with words after it they fall on the words after.
    near_misses_in_context_per_speaker: near-miss words each training speaker says in context, as keywords in
        context are said (the same number of words before and after), ``_unknown_``: so that being said after
        other words is no cue for a keyword.
    gap_s: range of the pause between two joined words.
    music_seconds: synthesised music written into the background-noise folder.
    real_music: files of recorded music (:data:`TRAINING_MUSIC`, 21.7 minutes joined and cut into this many equal
        parts) written into the background-noise folder. Each background file is drawn equally often, so the count
        sets recorded music's share of the draws (with 5, as many as 5 minutes of synthesised music makes).
    real_speech: training clips of recorded speech, ``_unknown_``: words and short phrases said alone by people
        in 11 languages other than English (:mod:`~ssm_signal.data.recorded_speech`; Tux Paint's stamp
        descriptions), each a different recording.
    foreign_per_speaker: sentences in other languages each espeak-ng training speaker reads in its own voice
        variant (``crops_per_sentence`` windows each, ``_unknown_``), a language drawn from ``languages``
        for each (:mod:`~ssm_signal.data.foreign_speech`). Other engines' voices speak English only.
    languages: espeak-ng languages of those sentences (keys of
        :data:`~ssm_signal.data.foreign_speech.FOREIGN_TEXTS`).
    letters_per_speaker: letters or syllables each espeak-ng training speaker says alone, in its own voice
        variant, a language drawn from ``letter_languages`` for each (:mod:`~ssm_signal.data.letters`),
        ``_unknown_``.
    letter_languages: espeak-ng languages of those (keys of :data:`~ssm_signal.data.letters.ALPHABETS`).
    pool_sentences_per_speaker: sentences each training speaker reads whole into :data:`POOL_DIR`, the pool
        that hard-negative mining scores (none of them is a training clip by itself).
    pool_foreign_per_speaker: likewise, sentences in one of ``languages`` (espeak-ng speakers).
    """

    sentences_per_speaker: int = bounded(0, ge=0)
    crops_per_sentence: int = bounded(2, ge=1)
    near_misses_per_speaker: int = bounded(0, ge=0)
    in_context_per_speaker: int = bounded(0, ge=0)
    in_context_words_after: int = bounded(2, ge=0)
    near_misses_in_context_per_speaker: int = bounded(0, ge=0)
    gap_s: tuple[float, float] = bounded((0.02, 0.25), ge=0)
    music_seconds: float = bounded(0.0, ge=0)
    real_music: int = bounded(0, ge=0)
    real_speech: int = bounded(0, ge=0)
    foreign_per_speaker: int = bounded(0, ge=0)
    languages: tuple[str, ...] = ("de", "es", "it", "ru", "cs", "bg", "eo", "pt-br")
    letters_per_speaker: int = bounded(0, ge=0)
    letter_languages: tuple[str, ...] = letters.TRAINING_LANGUAGES
    pool_sentences_per_speaker: int = bounded(0, ge=0)
    pool_foreign_per_speaker: int = bounded(0, ge=0)

    def __post_init__(self):
        from ssm_signal.data.foreign_speech import FOREIGN_TEXTS

        object.__setattr__(self, "gap_s", tuple(self.gap_s))
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "letter_languages", tuple(self.letter_languages))
        unknown = [x for x in self.languages if x not in FOREIGN_TEXTS]
        if unknown or ((self.foreign_per_speaker or self.pool_foreign_per_speaker) and not self.languages):
            raise ValueError(f"languages must be some of {sorted(FOREIGN_TEXTS)}, got {list(self.languages)}")
        unknown = [x for x in self.letter_languages if x not in letters.ALPHABETS]
        if unknown or (self.letters_per_speaker and not self.letter_languages):
            raise ValueError(f"letter_languages must be some of {sorted(letters.ALPHABETS)}, "
                             f"got {list(self.letter_languages)}")
        check_bounds(self)

    @property
    def any(self) -> bool:
        return bool(self.speech or self.music_seconds or self.real_music or self.real_speech)

    @property
    def speech(self) -> bool:
        return bool(self.sentences_per_speaker or self.near_misses_per_speaker or self.in_context_per_speaker
                    or self.near_misses_in_context_per_speaker or self.foreign_per_speaker
                    or self.letters_per_speaker or self.pool)

    @property
    def pool(self) -> bool:
        return bool(self.pool_sentences_per_speaker or self.pool_foreign_per_speaker)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One thing a training speaker says: ``texts`` spoken one after another (kind "s": a sentence, "n": a
    near-miss word, "c": a keyword in context, ``texts[key]`` the keyword, "m": a near-miss word in context,
    ``texts[key]`` the near miss, "f": a sentence in ``language``,
    "l": a letter or syllable of ``language`` said alone, "p"/"q": a whole sentence, English or in
    ``language``, for the mining pool), written under ``label``."""

    kind: str
    texts: tuple[str, ...]
    label: str
    key: int = 0
    language: str | None = None


@functools.lru_cache(maxsize=4)
def _pools(keywords: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The sentences and their words (each once, sorted) that hold none of ``keywords``' words either (a
    custom keyword such as "lights on" is no Speech Commands word). Once per process and keyword list."""
    from ssm_signal.data.negatives import holds_keyword

    own = tuple(sorted({w for k in keywords for w in k.split()}))
    # festival reads the text inside a Scheme string: no quotes or backslashes
    sentences = [s.replace('"', "").replace("\\", " ") for s in training_sentences() if not holds_keyword(s, own)]
    words = {w.strip(".,;:!?'()-").lower() for s in sentences for w in s.split()}
    return sentences, sorted(w for w in words if len(w) > 1 and w.isalpha())


def plan(words: Sequence[str], split: str, seed: int, cfg: TrainingSpeech, foreign: bool = True) -> list[Utterance]:
    """What one speaker of ``split`` says beyond its words, drawn from a stream of its own (``seed``), so
    the words' clips stay those of a set without it. Nothing outside the training split; sentences in other
    languages only where ``foreign`` (a voice that can speak them), each from a stream of its own too."""
    if split != "training" or not cfg.speech:
        return []
    rng = np.random.default_rng([seed, 0xE6A])
    sentences, vocabulary = _pools(tuple(words))
    out = [Utterance("s", (sentences[i],), UNKNOWN_DIR)
           for i in rng.choice(len(sentences), size=min(cfg.sentences_per_speaker, len(sentences)), replace=False)]
    misses = near_misses(tuple(words))
    if misses:
        out += [Utterance("n", (misses[i],), UNKNOWN_DIR)
                for i in rng.choice(len(misses), size=min(cfg.near_misses_per_speaker, len(misses)), replace=False)]
    out += [_in_context("c", words[int(rng.integers(len(words)))], vocabulary, cfg, rng, label=None)
            for _ in range(cfg.in_context_per_speaker)]
    if foreign:  # each from a stream of its own, so either count leaves the other's draws as they were
        from ssm_signal.data import foreign_speech

        out += _in_languages("f", cfg.foreign_per_speaker, cfg.languages, np.random.default_rng([seed, 0xF0E16]),
                             lambda language: foreign_speech.sentences(language, tuple(words)))
        out += _in_languages("l", cfg.letters_per_speaker, cfg.letter_languages,
                             np.random.default_rng([seed, 0x1E77E5]),
                             lambda language: letters.units(language, tuple(words)))
    if misses and cfg.near_misses_in_context_per_speaker:  # last, from a stream of its own: the draws above stay
        mrng = np.random.default_rng([seed, 0x3155C])
        out += [_in_context("m", misses[int(mrng.integers(len(misses)))], vocabulary, cfg, mrng, label=UNKNOWN_DIR)
                for _ in range(cfg.near_misses_in_context_per_speaker)]
    return out


def _in_context(kind: str, word: str, vocabulary: Sequence[str], cfg: TrainingSpeech, rng: np.random.Generator,
                label: str | None) -> Utterance:
    """``word`` after 0-2 and before 0-``in_context_words_after`` words of ``vocabulary`` (at least one in all),
    labelled ``label`` (None: the word itself)."""
    before, after = int(rng.integers(0, 3)), int(rng.integers(0, cfg.in_context_words_after + 1))
    if before + after == 0:
        before = 1
    pick = [vocabulary[int(i)] for i in rng.integers(len(vocabulary), size=before + after)]
    return Utterance(kind, (*pick[:before], word, *pick[before:]), label or word, before)


def plan_pool(words: Sequence[str], split: str, seed: int, cfg: TrainingSpeech,
              foreign: bool = True) -> list[Utterance]:
    """The whole sentences one speaker of ``split`` reads into the mining pool: training speakers only, each
    from a stream of its own, so that no other draw of :func:`plan` changes with the pool's size. English
    sentences avoid the speaker's own cropped ones (``kind`` "s"); foreign ones only where ``foreign``."""
    if split != "training" or not cfg.pool:
        return []
    sentences, _ = _pools(tuple(words))
    cropped = {t for u in plan(words, split, seed, cfg, foreign=False) if u.kind == "s" for t in u.texts}
    free = [s for s in sentences if s not in cropped]
    rng = np.random.default_rng([seed, 0x9001])
    out = [Utterance("p", (free[i],), POOL_DIR)
           for i in rng.choice(len(free), size=min(cfg.pool_sentences_per_speaker, len(free)), replace=False)]
    if foreign:
        from ssm_signal.data import foreign_speech

        out += [dataclasses.replace(u, kind="q", label=POOL_DIR) for u in _in_languages(
            "f", cfg.pool_foreign_per_speaker, cfg.languages, np.random.default_rng([seed, 0x9002]),
            lambda language: foreign_speech.sentences(language, tuple(words)))]
    return out


def _in_languages(kind: str, n: int, languages: Sequence[str], rng: np.random.Generator,
                  texts_of: Callable[[str], Sequence[str]]) -> list[Utterance]:
    """``n`` utterances of ``kind``, each a text of ``texts_of(language)`` in a language drawn from
    ``languages``, ``_unknown_``."""
    out = []
    for _ in range(n):
        language = languages[int(rng.integers(len(languages)))]
        pool = texts_of(language)
        out.append(Utterance(kind, (pool[int(rng.integers(len(pool)))],), UNKNOWN_DIR, language=language))
    return out


def windows(u: Utterance, parts: Sequence[torch.Tensor], cfg: TrainingSpeech, rng: np.random.Generator,
            n: int = SAMPLE_RATE) -> list[torch.Tensor]:
    """The clips' voices (each at most ``n`` samples) of an utterance whose texts were spoken as ``parts``
    [(L_i,)]: windows of a sentence, the near-miss word, or the context joined around the keyword."""
    if u.kind in ("s", "f"):
        return speech_windows(parts[0], n, cfg.crops_per_sentence, rng)
    if u.kind in ("n", "l"):
        return [parts[0]]
    return [in_context(parts, u.key, n, cfg.gap_s, rng)]


def in_context(parts: Sequence[torch.Tensor], key: int, n: int, gap_s: tuple[float, float],
               rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``parts`` [(L_i,)] joined with pauses uniform in ``gap_s``, cut to at most ``n`` samples around the
    whole of ``parts[key]`` (the keyword alone if it is longer than ``n``) at a random position."""
    pieces, start = [], 0
    for i, p in enumerate(parts):
        if i:
            pieces.append(torch.zeros(int(rng.uniform(*gap_s) * sample_rate)))
        if i == key:
            start = sum(x.shape[0] for x in pieces)
        pieces.append(p)
    joined = torch.cat(pieces)
    a, b = start, start + parts[key].shape[0]
    if b - a >= n or joined.shape[0] <= n:
        return joined[a:b][:n] if b - a >= n else joined
    lo, hi = max(0, b - n), min(a, joined.shape[0] - n)
    s = int(rng.integers(lo, hi + 1))
    return joined[s:s + n]


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


def write_real_music(folder, files: int, sample_rate: int, sources: Sequence[str] = TRAINING_MUSIC) -> list:
    """The recorded ``sources`` joined (in order, at ``sample_rate``, as recorded: no level change) and cut into
    ``files`` equal parts, ``<folder>/music_real_<k>.wav``. Returns the paths.

    Raises:
        DataError: a source is not installed (a set that asked for recorded music never gets less).
    """
    from ssm_signal.data.audio_io import read_audio, write_audio

    missing = [s for s in sources if not Path(s).is_file()]
    if missing:
        raise DataError(f"real_music: {len(missing)} of {len(sources)} recorded tracks are not installed (first: "
                        f"{missing[0]}); install {' and '.join(TRAINING_MUSIC_PACKAGES)} (`make system-deps`)")
    wave = torch.cat([read_audio(s, sample_rate) for s in sources])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_audio(folder / f"{REAL_MUSIC_PREFIX}{k:02d}.wav", part, sample_rate)
            for k, part in enumerate(torch.tensor_split(wave, files))]
