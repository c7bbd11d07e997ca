"""Letters and syllables said alone, in many languages, for the training split's ``_unknown_`` class and the
evaluation's negatives.

A word said on its own is what a keyword spotter listens for, so a short isolated sound of another language
is the hardest negative it meets: a letter's name ("A" is /eɪ/, one consonant short of "eight"), a syllable a
child learns to read ("ba", "no", "се"). Sentences (:mod:`~ssm_signal.data.foreign_speech`) teach running
speech, not this. espeak-ng names a letter given alone in the language it speaks, and reads a syllable as a
word, so every language here comes with its alphabet (:data:`ALPHABETS`); its units are the letters, and for
alphabets with separate vowel letters the consonant-vowel pairs (:func:`units`). Abugidas (Hindi, Malayalam,
Tamil) write a syllable with one letter already.

A unit that sounds like a keyword (Spanish "no", Italian "tu", Czech "ano" is no unit but "no" is) is
dropped by the same folded-IPA comparison as foreign sentences
(:func:`~ssm_signal.data.foreign_speech.keyword_sounds`). The alphabets are small, so units are not split
between training and evaluation; the voices are (each split's own espeak-ng voice variants), and
:data:`~ssm_signal.data.foreign_speech.HELD_OUT_LANGUAGE` is never in a training list.
"""

from __future__ import annotations

import functools

from ssm_signal.data.foreign_speech import HELD_OUT_LANGUAGE, fold, keyword_sounds, transcribe
from ssm_signal.data.skips import DataError

_LATIN = "abcdefghijklmnopqrstuvwxyz"
#: espeak-ng language -> the letters a speaker of it names (lower case). Latin alphabets are the basic 26
#: letters (as the languages' own letter names are taught) plus the language's own letters.
ALPHABETS = {
    **{lang: _LATIN for lang in ("en-us", "en-gb", "af", "id", "ms", "sw", "eu", "it", "pt", "pt-br", "fr-fr",
                                 "nl", "ca", "cy", "sq", "tn", "ga", "lt", "lv", "et", "hr", "sl", "ro", "vi")},
    "da": _LATIN + "æøå", "nb": _LATIN + "æøå", "sv": _LATIN + "åäö", "fi": _LATIN + "åäö", "de": _LATIN + "äöüß",
    "is": _LATIN + "áðéíóúýþæö", "es": _LATIN + "ñ", "cs": _LATIN + "čďěňřšťůž", "sk": _LATIN + "äčďľňôšťž",
    "pl": _LATIN + "ąćęłńóśźż", "hu": _LATIN + "áéíóöőúüű", "tr": _LATIN + "çğıöşü", "eo": _LATIN + "ĉĝĥĵŝŭ",
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя", "uk": "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя",
    "bg": "абвгдежзийклмнопрстуфхцчшщъьюя", "mk": "абвгдѓежзѕијклљмнњопрстќуфхцчџш",
    "sr": "абвгдђежзијклљмнњопрстћуфхцчџш", "el": "αβγδεζηθικλμνξοπρστυφχψω",
    "he": "אבגדהוזחטיכלמנסעפצקרשת", "ar": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "hi": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह",
    "ml": "അആഇഈഉഊഎഏഐഒഓഔകഖഗഘങചഛജഝഞടഠഡഢണതഥദധനപഫബഭമയരലവശഷസഹളഴറ",
    "ta": "அஆஇஈஉஊஎஏஐஒஓகஙசஞடணதநபமயரலவழளறன",
}  # fmt: skip
#: vowel letters of the alphabets with separate vowels: a syllable is a consonant letter and one of these
VOWELS = frozenset("aeiouyáéíóúýäöüåæøőűôůěıâêîûàèìòùœ" "аеёиіїоуыэюяє" "αεηιουω")
#: every language but the held-out one: what a training speaker may say letters in
TRAINING_LANGUAGES = tuple(lang for lang in ALPHABETS if lang != HELD_OUT_LANGUAGE)


def _pool(language: str) -> list[str]:
    """Every letter of ``language`` and, where it writes vowels apart, each consonant with its first six
    vowel letters (sorted)."""
    if language not in ALPHABETS:
        raise DataError(f"no alphabet for language {language!r}; choose from {sorted(ALPHABETS)}")
    letters = ALPHABETS[language]
    vowels = [v for v in letters if v in VOWELS][:6]
    return sorted(set(letters) | {c + v for c in letters if c not in VOWELS for v in vowels})


@functools.lru_cache(maxsize=64)
def units(language: str, keywords: tuple[str, ...]) -> tuple[str, ...]:
    """The letters and syllables of ``language`` (:func:`_pool`) less any that sounds like one of
    ``keywords``. Sorted."""
    pool = _pool(language)
    banned = keyword_sounds(keywords)
    # espeak-ng names a letter given alone; transcribe() reads one word a line, so a letter is named there too
    kept = [u for u, t in zip(pool, transcribe(pool, language), strict=True) if fold(t) not in banned]
    if not kept:
        raise DataError(f"every {language!r} letter and syllable sounds like a keyword")
    return tuple(kept)


def lookalikes(language: str, keywords: tuple[str, ...]) -> list[str]:
    """The units of ``language`` that :func:`units` drops, for inspection."""
    keep = set(units(language, keywords))
    return [u for u in _pool(language) if u not in keep]
