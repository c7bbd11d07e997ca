"""Recorded speech for the training split's ``_unknown_`` class: words and short phrases said by people.

Every other ``_unknown_`` clip of the keyword set is generated, so the only human voices a model trained on
it has met are inside its frozen encoder; on real recordings it fires on short words said alone (docs/results.md,
fourteenth run). The field's spotters train their negatives on hours of recorded speech. This module gives the
training split recorded words and phrases said alone, by people, in many languages.

Source: Tux Paint's stamp descriptions (Debian ``tuxpaint-stamps-default``, GPL-2): each picture stamp's name
or a short description of it ("Un renard.", "Une pièce de monnaie américaine"), spoken by volunteers in
11 languages other than English (:data:`LANGUAGES`: Belarusian, Bulgarian, Catalan, Danish, Greek, Spanish,
French, Malayalam, Dutch, Romanian, Russian); 7,056 clips pass the rule below for the twenty Speech Commands
words (168 minutes, median 1.1 s). Neither real set
(the report set, ``benchmarks/fetch_real_audio.py``, nor the validation set, ``fetch_real_validation.py``)
reads the package; a test holds it. Each clip's text, in the language it is spoken in, sits in
``<stamp>.txt`` beside it as ``<lang>.utf8=...``. A clip is used only if it has that text and no word of the
text sounds like a keyword: the look-alike rule of foreign sentences (folded espeak-ng IPA of each word,
:func:`~ssm_signal.data.foreign_speech.keyword_sounds`). English clips are never used: English is where
keywords and their homophones hide.

A clip becomes a training clip as a generated word does: a 1 s window that holds speech
(:func:`~ssm_signal.data.training_speech.speech_windows`), placed at a random offset, levelled and mixed
with background noise (``keywords.place``), written as ``<root>/_unknown_/recorded<k>_nohash_r0.wav``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ssm_signal.data.skips import DataError

PACKAGE = "tuxpaint-stamps-default"
STAMPS = Path("/usr/share/tuxpaint/stamps")
#: the language of a description file (``<stamp>_desc_<lang>.ogg``) -> its espeak-ng language
#: (Tux Paint's Lithuanian clips carry no Lithuanian text, so they cannot be checked and are not used)
LANGUAGES = {"be": "be", "bg": "bg", "ca": "ca", "da": "da", "el": "el", "es": "es", "fr": "fr-fr", "ml": "ml",
             "nl": "nl", "ro": "ro", "ru": "ru"}
PREFIX = "recorded"
_DESCRIPTION = re.compile(r"^(?P<stamp>.+)_desc_(?P<lang>[a-z]{2})\.ogg$")


def _text(stamp_txt: Path, lang: str) -> str | None:
    """The ``<lang>.utf8=`` line of a stamp's text file, or None."""
    if not stamp_txt.is_file():
        return None
    key = f"{lang}.utf8="
    for line in stamp_txt.read_text("utf-8", errors="replace").splitlines():
        if line.startswith(key):
            return line[len(key):].strip() or None
    return None


def recordings(keywords: tuple[str, ...], stamps: Path | None = None) -> tuple[tuple[str, str, str], ...]:
    """The usable description clips under ``stamps`` (default :data:`STAMPS`): (path, language, text), sorted by
    path. A clip in a language of :data:`LANGUAGES` with its text, no word of which sounds like one of ``keywords``.

    Raises:
        DataError: the package is not installed, or no clip is left.
    """
    return _recordings(tuple(keywords), Path(stamps or STAMPS))


@functools.lru_cache(maxsize=4)
def _recordings(keywords: tuple[str, ...], stamps: Path) -> tuple[tuple[str, str, str], ...]:
    from ssm_signal.data.foreign_speech import without_lookalikes

    if not stamps.is_dir():
        raise DataError(f"real_speech: {stamps} not found; install {PACKAGE} (`sudo apt-get install {PACKAGE}`)")
    found = []
    for path in sorted(stamps.rglob("*_desc_*.ogg")):
        m = _DESCRIPTION.match(path.name)
        if not m or m["lang"] not in LANGUAGES:
            continue
        text = _text(path.with_name(m["stamp"] + ".txt"), m["lang"])
        if text:
            found.append((str(path), m["lang"], text))
    kept = []
    for lang in sorted({lang for _, lang, _ in found}):
        clean = set(without_lookalikes(sorted({t for _, la, t in found if la == lang}), LANGUAGES[lang], keywords))
        kept += [f for f in found if f[1] == lang and f[2] in clean]
    if not kept:
        raise DataError(f"real_speech: no usable recording under {stamps}")
    return tuple(sorted(kept))


def write_clips(folder: str | Path, count: int, keywords: Sequence[str], seed: int, sample_rate: int,
                place: Callable[[torch.Tensor, np.random.Generator], torch.Tensor],
                stamps: Path | None = None) -> list[Path]:
    """``count`` training clips of recorded speech into ``folder`` (``recorded<k>_nohash_r0.wav``), each a
    different recording drawn without replacement (all of them if fewer), by a random stream of its own.

    ``place(voice, rng)`` turns a window (L,) into a clip (levels it, mixes noise). Returns the paths."""
    from ssm_signal.data.audio_io import read_audio, write_audio
    from ssm_signal.data.training_speech import speech_windows

    pool = recordings(tuple(keywords), stamps)
    rng = np.random.default_rng([seed, 0x5EC0])
    chosen = sorted(rng.choice(len(pool), size=min(count, len(pool)), replace=False).tolist())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, i in enumerate(chosen):
        speech = read_audio(pool[i][0], sample_rate)
        windows = speech_windows(speech, sample_rate, 1, rng)
        if not windows:  # nothing above a tenth of the clip's peak in any window's middle: not used
            continue
        out.append(write_audio(folder / f"{PREFIX}{k:04d}_nohash_r0.wav", place(windows[0], rng), sample_rate))
    return out
