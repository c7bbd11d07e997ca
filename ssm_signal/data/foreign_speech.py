"""Sentences in other languages, for the training split's ``_unknown_`` class, and the check that none of
their words sounds like a keyword.

A spotter that has heard only English besides its keywords fires on the short syllables of other languages:
the real speech it is measured on is spoken in many (issue 16). espeak-ng speaks about a hundred languages
with the same voice variants as its English accents, so a training speaker can read foreign text in its own
voice (``<language>+<variant>``). The texts are Debian's fortune translations (one package a language,
BSD-style or public-domain quotations, :data:`FOREIGN_TEXTS`).

A foreign word may *sound* like a keyword: German "nein" is "nine", Spanish "no" and "tu" are "no" and
"two", Esperanto "jes" is "yes", Russian "он" is "on". A window of such speech labelled ``_unknown_`` would
teach the model to miss the keyword. So every word is transcribed by espeak-ng in its language
(``--ipa``), folded to a coarse phoneme string (:func:`fold`: stress, length and the vowel and rhotic
distinctions that listeners across languages confuse dropped) and compared with the keywords' own folded
transcriptions in American and British English; a sentence holding any match is dropped.

Sentences are split between training, validation and testing by a hash of their text
(:func:`split_of_sentence`). :func:`write_streams` writes streams of foreign speech for the evaluation's
negatives: the validation (or test) sentences read by the keyword set's validation (or test) voice variants,
so a calibration on them hears no sentence and no voice of training; and one language that training never
reads (:data:`HELD_OUT_LANGUAGE`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ssm_signal.data import voices
from ssm_signal.data.skips import DataError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: espeak-ng language -> fortune files (UTF-8) of its Debian package: fortunes-de, -es, -it, -ru, -cs, -bg,
#: -eo, -ga and -br (Brazilian Portuguese). Files of ASCII art, code or word lists are left out.
FOREIGN_TEXTS = {
    "de": ("de", ("asciiart", "quiz", "vornamen", "namen", "woerterbuch", "translations")),
    "es": ("es", ()),
    "it": ("it", ("banner",)),
    "ru": ("ru", ()),
    "cs": ("cs", ()),
    "bg": ("bg", ()),
    "eo": ("eo", ()),
    "ga": ("ga", ()),
    "pt-br": ("brasil", ()),
}
PACKAGES = ("fortunes-de", "fortunes-es", "fortunes-it", "fortunes-ru", "fortunes-cs", "fortunes-bg",
            "fortunes-eo", "fortunes-ga", "fortunes-br")  # fmt: skip
VALIDATION_PERCENT = TESTING_PERCENT = 15.0
#: in no default training list (TrainingSpeech.languages): the streams' unseen language
HELD_OUT_LANGUAGE = "ga"
MAX_SENTENCES = 600  # per language and part: plenty for a few sentences per speaker, quick to transcribe

_LETTERS = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def _files(language: str) -> list[Path]:
    folder, skip = FOREIGN_TEXTS[language]
    p = FORTUNES_DIR / folder
    if p.is_file():
        return [p]
    files = sorted(f for f in p.glob("*.u8") if not any(f.name.startswith(s) for s in skip)) if p.is_dir() else []
    if not files:
        raise DataError(f"no fortune texts for {language!r} under {p}; install the Debian packages "
                        f"{' '.join(PACKAGES)} (`make system-deps`)")
    return files


def check_texts(languages: Sequence[str]) -> None:
    """Raise a DataError naming the packages to install if the texts of any of ``languages`` are missing."""
    for language in languages:
        _files(language)


def clean(text: str, min_words: int = 4, max_words: int = 20) -> list[str]:
    """Speakable sentences of a fortune file in any script: entries parted by ``%`` lines, attributions
    (``-- Author``) dropped; a sentence is kept if it holds only letters, spaces and punctuation (no digits,
    symbols or all-capital words) and ``min_words``..``max_words`` words."""
    out = []
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        body = " ".join(ln for ln in entry.splitlines() if not re.match(r"^\s*(--|—)", ln))
        body = re.sub(r"[\"«»„“”`]", "", body)
        body = re.sub(r"\s+", " ", body).strip()
        for s in re.split(r"(?<=[.!?])\s+", body):
            s = s.strip(" ,;:-")
            if not s or re.search(r"[\d@#$%&*_/\\|<>{}\[\]=+~^]", s):
                continue
            words = _LETTERS.findall(s)
            if not min_words <= len(words) <= max_words or any(len(w) > 1 and w.isupper() for w in words):
                continue
            out.append(s)
    return out


def split_of_sentence(sentence: str) -> str:
    """'validation' or 'testing' for :data:`VALIDATION_PERCENT` and :data:`TESTING_PERCENT` of sentences (by a
    hash of the text), else 'training'."""
    h = int(hashlib.sha1(f"ssm-signal-foreign/{sentence}".encode()).hexdigest(), 16) % 10_000 / 100.0
    if h < VALIDATION_PERCENT:
        return "validation"
    return "testing" if h < VALIDATION_PERCENT + TESTING_PERCENT else "training"


def fold(ipa: str) -> str:
    """A coarse phoneme string of espeak-ng's IPA for one word: stress, length, syllable and tie marks
    gone, rhotics one ``r``, each vowel and diphthong reduced to its nearest of a e i o u (``oʊ``, ``əʊ`` ->
    ``o``; ``eɪ`` -> ``e``; ``aɪ`` -> ``ai``), dental fricatives to stops and voicing of s/z dropped."""
    s = re.sub(r"[ˈˌːˑ_\-‿͡.]", "", ipa.strip().lower())
    for a, b in (("oʊ", "o"), ("əʊ", "o"), ("eɪ", "e"), ("iə", "i"), ("ɪə", "i"), ("ɚ", "er"), ("ɝ", "er")):
        s = s.replace(a, b)
    table = str.maketrans({"ɾ": "r", "ɹ": "r", "ʁ": "r", "ʀ": "r", "ɐ": "a", "ɑ": "a", "ʌ": "a", "æ": "a",
                           "ɒ": "o", "ɔ": "o", "ɛ": "e", "ə": "e", "ɜ": "e", "ɪ": "i", "ʏ": "i", "y": "i",
                           "ʊ": "u", "ɵ": "o", "θ": "t", "ð": "d", "z": "s", "ɡ": "g", "ʲ": "", "ʰ": ""})
    return s.translate(table)


def transcribe(words: Sequence[str], language: str) -> list[str]:
    """espeak-ng's IPA of each word in ``language``, one per word. Words go one per line, a batch a call;
    a batch whose output does not split into one token a word is redone word by word."""
    exe = voices.tool("espeak-ng")
    out: list[str] = []

    def run(batch: Sequence[str]) -> list[str]:
        proc = subprocess.run([exe, "-q", "--ipa", "-v", language, "--stdin"], input="\n".join(batch).encode(),
                              capture_output=True, timeout=120)
        if proc.returncode:
            raise DataError(f"espeak-ng --ipa failed for {language!r}: {proc.stderr.decode()[-300:]}")
        return proc.stdout.decode("utf-8", errors="replace").split()

    for i in range(0, len(words), 300):
        batch = list(words[i:i + 300])
        tokens = run(batch)
        if len(tokens) != len(batch):
            tokens = ["".join(run([w])) for w in batch]
        out += tokens
    return out


@functools.lru_cache(maxsize=4)
def keyword_sounds(keywords: tuple[str, ...]) -> frozenset[str]:
    """The folded transcriptions of ``keywords`` (each word of a phrase) in American and British English."""
    words = sorted({w for k in keywords for w in k.split()})
    return frozenset(fold(t) for accent in ("en-us", "en-gb") for t in transcribe(words, accent))


def without_lookalikes(texts: Sequence[str], language: str, keywords: tuple[str, ...]) -> list[str]:
    """The ``texts`` of ``language`` (in order) none of whose words sounds like one of ``keywords``: a word's
    folded espeak-ng IPA in ``language`` is none of :func:`keyword_sounds`."""
    vocabulary = sorted({w.lower() for t in texts for w in _LETTERS.findall(t)})
    sound = dict(zip(vocabulary, (fold(t) for t in transcribe(vocabulary, language)), strict=True))
    banned = keyword_sounds(keywords)
    return [t for t in texts if not any(sound[w.lower()] in banned for w in _LETTERS.findall(t))]


@functools.lru_cache(maxsize=32)
def sentences(language: str, keywords: tuple[str, ...], part: str = "training") -> tuple[str, ...]:
    """Up to :data:`MAX_SENTENCES` sentences of ``language`` in ``part`` ('training', 'validation', 'testing') that
    hold no word sounding like one of ``keywords`` (sorted, deterministic)."""
    if language not in FOREIGN_TEXTS:
        raise DataError(f"no foreign texts for language {language!r}; choose from {sorted(FOREIGN_TEXTS)}")
    pool = sorted({s for f in _files(language) for s in clean(f.read_text("utf-8", errors="replace"))
                   if split_of_sentence(s) == part})
    # an even spread over the sorted pool, so that short files are not crowded out by long ones
    step = max(1, len(pool) // (2 * MAX_SENTENCES))
    pool = pool[::step]
    kept = without_lookalikes(pool, language, keywords)
    if not kept:
        raise DataError(f"no usable {language!r} sentence in {part}")
    return tuple(kept[:: max(1, len(kept) // MAX_SENTENCES)][:MAX_SENTENCES])


def lookalikes(language: str, keywords: tuple[str, ...], part: str = "training") -> list[str]:
    """The words of ``language``'s texts in ``part`` that :func:`sentences` rejects, for inspection."""
    pool = sorted({s for f in _files(language) for s in clean(f.read_text("utf-8", errors="replace"))
                   if split_of_sentence(s) == part})
    vocabulary = sorted({w.lower() for s in pool for w in _LETTERS.findall(s)})
    banned = keyword_sounds(keywords)
    return [w for w, t in zip(vocabulary, transcribe(vocabulary, language), strict=True) if fold(t) in banned]


def write_streams(folder: str | Path, keywords: Sequence[str], part: str = "validation", seconds: float = 120.0,
                  seed: int = 0, languages: Sequence[str] | None = None, units: str = "sentences") -> Path:
    """Streams of foreign speech into ``folder/<language>/NN.wav`` (16 kHz, files of about 30 s), about
    ``seconds`` a language: ``part``'s sentences read by the keyword set's ``part`` voice variants in turn,
    0.3-1.0 s apart, at -20..-4 dBFS; or with ``units="letters"``, letters and syllables said alone
    (:mod:`~ssm_signal.data.letters`, every alphabet by default), 0.8-2.5 s apart. A negative source
    folder for ``ssm-signal evaluate``. Cached: a folder holding the same settings returns at once."""
    import json

    import numpy as np
    import torch

    from ssm_signal.data import letters
    from ssm_signal.data.audio_io import write_audio
    from ssm_signal.data.generated import holds_generated
    from ssm_signal.data.keywords import VARIANTS, KeywordSetConfig, split_of, synthesize
    from ssm_signal.data.speech_commands import SAMPLE_RATE

    if units not in ("sentences", "letters"):
        raise ValueError(f"units must be 'sentences' or 'letters', got {units!r}")
    if languages is None:
        languages = tuple(letters.ALPHABETS if units == "letters" else FOREIGN_TEXTS)
    gap_s = (0.8, 2.5) if units == "letters" else (0.3, 1.0)
    folder = Path(folder)
    settings = {"generator": "ssm-signal foreign speech streams", "version": 1, "part": part, "seconds": seconds,
                "seed": seed, "languages": list(languages), "keywords": sorted(keywords)}
    if units != "sentences":  # sentence streams keep the settings they had before letters, so their caches hold
        settings["units"] = units
    if holds_generated(folder, "GENERATED.json", settings, "foreign speech stream set"):
        return folder
    cfg = KeywordSetConfig()
    variants = [v for v in VARIANTS if split_of(v, cfg.validation_percent, cfg.testing_percent) == part]
    if not variants:
        raise DataError(f"no voice variant in part {part!r}")
    for li, language in enumerate(languages):
        rng = np.random.default_rng([seed, 0xF0E17, li])
        pool = (letters.units(language, tuple(keywords)) if units == "letters"
                else sentences(language, tuple(keywords), part))
        order = rng.permutation(len(pool))
        pieces, total, k, file_no = [], 0, 0, 0
        while total < seconds * SAMPLE_RATE:
            variant = variants[k % len(variants)]
            voice = synthesize(pool[order[k % len(pool)]], f"{language}+{variant}", rng.uniform(130, 200),
                               rng.uniform(20, 80))
            voice = voice * (10 ** (rng.uniform(-20, -4) / 20) / voice.abs().max().clamp_min(1e-9))
            pieces += [voice, torch.zeros(int(rng.uniform(*gap_s) * SAMPLE_RATE))]
            total += pieces[-2].shape[0] + pieces[-1].shape[0]
            k += 1
            if sum(p.shape[0] for p in pieces) >= 30 * SAMPLE_RATE or total >= seconds * SAMPLE_RATE:
                write_audio(folder / language / f"{file_no:02d}.wav", torch.cat(pieces), SAMPLE_RATE)
                pieces, file_no = [], file_no + 1
    (folder / "GENERATED.json").write_text(json.dumps(settings, indent=2) + "\n")
    return folder


if __name__ == "__main__":
    import argparse

    from ssm_signal.data.speech_commands import CORE_WORDS

    ap = argparse.ArgumentParser(description="Write streams of foreign speech (evaluation negatives).")
    ap.add_argument("folder")
    ap.add_argument("--part", default="validation", choices=("validation", "testing"))
    ap.add_argument("--seconds", type=float, default=120.0, help="seconds per language")
    ap.add_argument("--units", default="sentences", choices=("sentences", "letters"))
    a = ap.parse_args()
    try:
        print(write_streams(a.folder, CORE_WORDS, a.part, a.seconds, units=a.units))
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
