"""The sentences of the negative corpus: texts that ship in Debian, cut into speakable sentences, and the
check that none holds a keyword, a word that sounds like one, or an inflected form of one."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import AUXILIARY_WORDS, CORE_WORDS

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


def text_digest() -> str:
    """SHA-256 over the text sources (the sentence pool follows the installed package version)."""
    h = hashlib.sha256()
    for src in TEXT_SOURCES:
        h.update(Path(src).read_bytes())
    return h.hexdigest()

