"""Keywords said by people: recorded English game dialogue, with the text of every line.

Adventure games of the 1990s ship their whole voice cast with the text of every line, and Debian packages two
of them in ``main`` under a freeware licence. Their lines hold the twenty Speech Commands words hundreds of
times ("NO THANKS", "HEY, WHAT'S UP MAN?"), said by actors in running speech, and hours of English speech that
holds none of them.

They are real validation data (``benchmarks/fetch_real_validation.py``, sets ``dialogue-*``): each keyword cut out
of its line at the word span a forced alignment found (:data:`SPANS`, pinned; ``benchmarks/align_dialogue.py``
made it; :func:`checked_spans`, :func:`cut`) is a positive, and keyword-free lines are negative English speech.
Validation data must stay out of training, so no training recipe reads them (docs/results.md, seventeenth
run: as training clips they did not help).

This module reads the packages (:func:`fetch`), their lines (:func:`lines`, :func:`read_line`) and the spans.
Sources (Debian packages in ``main``, downloaded with ``apt-get download`` and unpacked, never installed; SHA-256
pinned in :data:`PACKAGES`); which file says which line: :mod:`ssm_signal.data.game_lines`:

==================================  ==========================================  =====================================
package                             what                                        lines
==================================  ==========================================  =====================================
``flight-of-the-amazon-queen``      Flight of the Amazon Queen (John Passfield  6,573 lines, about 13 actors (the
1.0.0-9                             and Steven Stamatiadis, 1995), CD version   game's credits), Joe 42%; MPEG audio
                                                                                at 11,025 Hz, about 4 kHz of band
``drascula`` 1.0+ds4-2              Drascula: The Vampire Strikes Back          742 lines, 10 characters (John
                                    (Alcachofa Soft, 1996), English version     Hacker 62%); 8-bit PCM at 11,025 Hz
==================================  ==========================================  =====================================

Licences (debian/copyright): the Flight-of-the-Amazon-Queen-License and the Drascula-License, the same
freeware terms: the games may be used, modified and redistributed, with their notices, but not sold by
themselves. The report set (``benchmarks/fetch_real_audio.py``) reads neither package; a test holds that.
Narrowband audio is no loss to the default frontend, whose mel bands end at 3.8 kHz.

Layout of what :func:`fetch` unpacks (``<cache>/<package>/``, with ``SOURCE.json``: version, SHA-256).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ssm_signal.data import game_lines
from ssm_signal.data.game_lines import Line
from ssm_signal.data.skips import DataError


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    #: the folder of the game's data inside the package
    folder: str
    #: the lines of the unpacked folder, and one line's audio in it (samples (L,), sample rate)
    lines: Callable[[Path], list[Line]]
    read: Callable[[Path, str], tuple[np.ndarray, int]]


PACKAGES = {
    "drascula": Package("drascula", "1.0+ds4-2",
                        "ed4af8e2d41ad446e2f3b73533daa1804e2f13f62f596c0b02b8dc39544f22b4",
                        "usr/share/scummvm/drascula/en", game_lines.drascula_lines, game_lines.read_drascula),
    "fotaq": Package("flight-of-the-amazon-queen", "1.0.0-9",
                     "40c08fd258d6fe95c46c1eaf5e9137f84ba330657995a281bd887c94a560a0f1",
                     "usr/share/scummvm/flight-of-the-amazon-queen", game_lines.queen_lines, game_lines.read_queen),
}

#: where :func:`fetch` unpacks the packages
DEFAULT_CACHE = Path("data/dialogue")
#: the pinned word spans of keywords in the lines (benchmarks/align_dialogue.py)
SPANS = Path(__file__).with_name("dialogue_spans.csv")


# ------------------------------------------------------------------------------------------------ packages


def fetch(name: str, cache: str | Path | None = None) -> Path:
    """The unpacked package ``name`` of :data:`PACKAGES` under ``cache`` (default :data:`DEFAULT_CACHE`;
    downloaded once); the game's folder.

    Raises:
        DataError: the package cannot be downloaded or unpacked here, or its SHA-256 is not the pinned one.
    """
    from ssm_signal.data import debian_package

    pkg = PACKAGES[name]
    out = Path(cache or DEFAULT_CACHE) / pkg.name
    marker = out / "SOURCE.json"
    if marker.is_file() and json.loads(marker.read_text()).get("sha256") == pkg.sha256:
        return out / pkg.folder
    with tempfile.TemporaryDirectory() as tmp:
        deb = debian_package.download(f"{pkg.name}={pkg.version}", Path(tmp))
        digest = debian_package.sha256(deb)
        if digest != pkg.sha256:
            raise DataError(f"dialogue: {deb.name} has SHA-256 {digest[:12]}..., not the pinned {pkg.sha256[:12]}...")
        if out.exists():
            shutil.rmtree(out)
        debian_package.unpack(deb, out)
    marker.write_text(json.dumps({"package": pkg.name, "version": pkg.version, "sha256": pkg.sha256}, indent=2) + "\n")
    return out / pkg.folder


# ------------------------------------------------------------------------------------------------ all sources

def lines(source: str, folder: str | Path) -> list[Line]:
    """The lines of ``source`` (a key of :data:`PACKAGES`) in its unpacked ``folder``."""
    return PACKAGES[source].lines(Path(folder))


def read_line(source: str, folder: str | Path, clip: str, sample_rate: int) -> torch.Tensor:
    """A line's audio (L,) at ``sample_rate``."""
    from ssm_signal.data.audio_io import resample

    wave, rate = PACKAGES[source].read(Path(folder), clip)
    return resample(torch.from_numpy(np.ascontiguousarray(wave)), rate, sample_rate)


def words(text: str) -> list[str]:
    """The words of a line as the alignment reads them: lower case, letters and apostrophes ("no-one" is two)."""
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower())


@dataclasses.dataclass(frozen=True)
class Span:
    """Where the word ``word`` was said in a line: ``start_s`` to ``end_s`` of the line's audio."""

    source: str
    clip: str
    speaker: str
    word: str
    start_s: float
    end_s: float


def spans(path: str | Path | None = None) -> tuple[Span, ...]:
    """The keyword spans of the table at ``path`` (default :data:`SPANS`, the pinned one), in its order."""
    return _spans(Path(path or SPANS))


@functools.lru_cache(maxsize=2)
def _spans(path: Path) -> tuple[Span, ...]:
    with path.open(newline="") as f:
        return tuple(Span(r["source"], r["clip"], r["speaker"], r["word"], float(r["start_s"]), float(r["end_s"]))
                     for r in csv.DictReader(f))


# ------------------------------------------------------------------------------------------------ clips

#: kept around a keyword's aligned span: the alignment's 10 ms frames place a boundary within a few frames
MARGIN_S = (0.03, 0.05)
FADE_S = 0.01


def cut(wave: torch.Tensor, span: Span, sample_rate: int) -> torch.Tensor:
    """The keyword of ``span`` cut out of its line's ``wave`` (L,) with :data:`MARGIN_S` and faded in and out
    over :data:`FADE_S`, so that no click marks where the cut is."""
    a = max(0, int((span.start_s - MARGIN_S[0]) * sample_rate))
    b = min(wave.shape[0], int((span.end_s + MARGIN_S[1]) * sample_rate))
    piece = wave[a:b].clone()
    k = min(int(FADE_S * sample_rate), piece.shape[0] // 2)
    if k:
        ramp = torch.linspace(0.0, 1.0, k)
        piece[:k] *= ramp
        piece[-k:] *= ramp.flip(0)
    return piece


def checked_spans(folders: dict[str, Path]) -> list[tuple[Span, Line]]:
    """The pinned spans of the sources in ``folders`` ({source: unpacked folder}, see :func:`fetch`), each with
    its line, in the table's order (sorted by line).

    Raises:
        DataError: a span's word is not in its line's text (another version of a package, or a table made from
            other lines).
    """
    by_clip = {(s, ln.clip): ln for s, folder in folders.items() for ln in lines(s, folder)}
    out = [(x, by_clip.get((x.source, x.clip))) for x in spans() if x.source in folders]
    wrong = [x for x, ln in out if ln is None or x.word not in words(ln.text)]
    if wrong:
        raise DataError(f"dialogue: {len(wrong)} pinned spans do not match their lines' text (first: "
                        f"{wrong[0].source} {wrong[0].clip} {wrong[0].word!r})")
    return out  # type: ignore[return-value]
