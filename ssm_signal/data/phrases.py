"""Custom keywords as text: which phrases are accepted, their labels and folders, and the other words.

A custom keyword is a phrase of one to :data:`MAX_WORDS` English words, typed by the user
(``"hey nova"``, ``"lights on"``). Each phrase has two names:

    label    "hey nova"    the phrase, normalised (lower case, single spaces): what the bundle's labels,
                           the demo, the scores and the evaluation report show
    folder   "hey_nova"    :func:`folder_of`: its word folder in the Speech Commands layout (letters and
                           underscores: safe on every file system, in split lists and in shell commands)

Accepted: ASCII letters, spaces, and apostrophes inside a word ("what's up"); at most
:data:`MAX_WORDS` words and :data:`MAX_CHARS` characters. Numbers must be written as words (a synthesiser
reads "7" in its own way, and the label should say what was said). Phrases are compared after
normalisation, so "Hey Nova" and "hey  nova" are duplicates. Whether a phrase is short enough for the
1 s clip is checked by synthesising it (:mod:`ssm_signal.data.custom_keywords`).

Other words (the ``_unknown_`` class): :func:`other_words` gives every word of :data:`COMMON_WORDS` (the 35
Speech Commands words and a hundred more everyday English words of one to three syllables) that is not a
keyword and not a word of a keyword phrase, nor that word with or without a plural "s": a model for
"lights on" must learn to ignore "left" and "night", but is not taught that "lights" alone is not part of
its keyword.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from ssm_signal.data.speech_commands import ALL_WORDS

MAX_WORDS = 4
MAX_CHARS = 30
#: folder-name length above which :func:`set_name` shortens the joined folder names (a hash keeps it unique).
MAX_NAME_CHARS = 48

_WORD = r"[a-z]+(?:'[a-z]+)*"
_PHRASE = re.compile(rf"{_WORD}(?: {_WORD})*")

#: everyday English words beyond Speech Commands', varied in sound (for the ``_unknown_`` class).
EVERYDAY_WORDS = (
    "about", "after", "again", "always", "animal", "answer", "apple", "baby", "back", "ball", "because", "before",
    "better", "black", "blue", "book", "bottle", "bring", "brother", "button", "call", "camera", "car", "chair",
    "change", "city", "close", "coffee", "color", "come", "country", "dinner", "doctor", "door", "early", "evening",
    "every", "family", "father", "find", "finger", "flower", "friend", "garden", "give", "good", "great", "green",
    "hand", "hello", "help", "here", "holiday", "hundred", "island", "just", "kitchen", "know", "later", "letter",
    "light", "little", "lunch", "machine", "maybe", "minute", "money", "morning", "mother", "music", "name",
    "never", "night", "nothing", "number", "open", "orange", "other", "paper", "people", "pencil", "phone",
    "picture", "place", "play", "please", "purple", "question", "quiet", "ready", "river", "room", "school",
    "sister", "small", "something", "sorry", "start", "story", "summer", "table", "thank", "thing", "think",
    "today", "together", "tomorrow", "turn", "under", "very", "wait", "walk", "want", "watch", "water", "weather",
    "where", "white", "window", "winter", "with", "wonderful", "word", "work", "world", "yellow", "yesterday",
)  # fmt: skip
COMMON_WORDS = tuple(sorted(set(ALL_WORDS) | set(EVERYDAY_WORDS)))


class PhraseError(ValueError):
    """A keyword phrase that cannot be used: which one, and why (one line)."""


def normalize(text: str) -> str:
    """A phrase as its label: lower case, words separated by single spaces. Raises PhraseError if it is not
    a usable phrase (see the module docstring)."""
    phrase = " ".join(str(text).lower().split())
    if not phrase:
        raise PhraseError("empty keyword: give each keyword as a word or phrase, e.g. \"hey nova\"")
    if not _PHRASE.fullmatch(phrase):
        bad = sorted({c for c in phrase if not (c.isascii() and c.isalpha()) and c not in " '"})
        what = f"characters {''.join(bad)!r}" if bad else "an apostrophe outside a word"
        raise PhraseError(f"keyword {str(text).strip()!r} has {what}: use English letters, spaces and apostrophes only "
                          "(write numbers as words)")
    if len(phrase.split()) > MAX_WORDS or len(phrase) > MAX_CHARS:
        raise PhraseError(f"keyword {str(text).strip()!r} is too long: at most {MAX_WORDS} words and {MAX_CHARS} characters")
    return phrase


def parse_phrases(texts: str | Sequence[str]) -> tuple[str, ...]:
    """The keyword labels of ``texts`` (a sequence of phrases, or one string of comma-separated phrases), in
    the order given. Raises PhraseError for none, a bad phrase, or two phrases that are one keyword."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    if not items or (isinstance(texts, str) and not texts.strip()):
        raise PhraseError("no keywords given: name at least one word or phrase")
    phrases = tuple(normalize(t) for t in items)
    seen: dict[str, str] = {}
    for p in phrases:
        if folder_of(p) in seen:
            raise PhraseError(f"keywords {seen[folder_of(p)]!r} and {p!r} are the same keyword (duplicate)")
        seen[folder_of(p)] = p
    return phrases


def folder_of(phrase: str) -> str:
    """The word folder of a (normalised) phrase: apostrophes dropped, spaces as underscores. A single plain
    word is its own folder, so the Speech Commands words keep their folders."""
    return phrase.replace("'", "").replace(" ", "_")


def label_of_folder(folder: str, labels: Sequence[str]) -> str | None:
    """The label among ``labels`` whose folder is ``folder`` (a label is its own folder when it has no space
    or apostrophe), or None."""
    return next((lab for lab in labels if lab == folder or folder_of(lab) == folder), None)


def other_words(phrases: Sequence[str], pool: Sequence[str] = COMMON_WORDS) -> tuple[str, ...]:
    """The words of ``pool`` to speak as ``_unknown_`` for keywords ``phrases``: none is a keyword, a word of a
    keyword phrase, or such a word with or without a plural "s" (see the module docstring)."""
    taken = {w for p in phrases for w in p.split()}
    taken |= {w + "s" for w in taken} | {w[:-1] for w in taken if w.endswith("s")}
    return tuple(w for w in pool if w not in taken and w not in phrases)


def set_name(phrases: Sequence[str]) -> str:
    """A name for a custom keyword set made of its folders (``hey_nova-lights_on``): for its data folder and
    bundle. A long list is shortened and given a hash of the whole, so distinct lists keep distinct names."""
    name = "-".join(folder_of(p) for p in phrases)
    if len(name) <= MAX_NAME_CHARS:
        return name
    digest = hashlib.sha1("\n".join(phrases).encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME_CHARS - 9].rstrip('-_')}-{digest}"
