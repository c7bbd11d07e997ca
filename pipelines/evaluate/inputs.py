"""What an evaluation streams: positive clips (one keyword each) and negative sources (long audio).

Positives come as
- a Speech Commands split list (``testing_list.txt``: relative paths, the label is the folder),
- a folder with one subfolder per label (Speech Commands layout; ``_background_noise_`` is skipped),
- a CSV manifest ``path,label[,speech_end_s][,...]`` (paths relative to the manifest's folder; any
  other column, e.g. ``speaker`` or ``band``, is kept for grouping the results).

A clip labelled with a keyword the model reports is a *positive*; a clip whose label the model
has but never reports (``_unknown_``, ``_silence_``) is a *non-keyword clip*: any event on it is a
false accept. In the Speech Commands layout (a split list or a folder per label), a word the model
was not trained to spot is ``_unknown_`` if the model has that class, as Speech Commands' own setups
read it; otherwise, and in a manifest, a label the model does not have is skipped and counted, never
guessed.

Negatives are sources: a folder (its audio files, recursively, in sorted order, concatenated into
one stream: state carries across files, the way a device hears them), a folder of source folders
(``--negatives data/negatives/speech`` gives one source per subfolder), or a single file.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from ssm_signal.data.audio_io import AUDIO_EXTENSIONS, read_audio_with_rate, resample
from ssm_signal.data.phrases import label_of_folder
from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.data.speech_commands import BACKGROUND_DIR


@dataclasses.dataclass(frozen=True)
class Clip:
    """One positive (or non-keyword) clip: path, label, and where its speech ends (None: estimated
    from the audio, :func:`speech_end`); ``extra``: other manifest columns (e.g. speaker, band)."""

    path: str
    label: str
    speech_end_s: float | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Source:
    """One negative source: a name and its files, concatenated in this order into one stream."""

    name: str
    files: tuple[str, ...]


def read_positives(spec: str | Path, labels: list[str], skips: SkipLog) -> list[Clip]:
    """The clips of a split list, a label-per-folder tree or a CSV manifest; labels outside ``labels`` skipped."""
    p = Path(spec)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder (positives: a split list .txt, a manifest .csv or a folder)")
    if p.is_dir():
        clips = [Clip(str(f), _sc_label(f.parent.name, labels)) for d in sorted(p.iterdir())
                 if d.is_dir() and d.name != BACKGROUND_DIR for f in sorted(d.iterdir())
                 if f.suffix.lower() in AUDIO_EXTENSIONS]
    elif p.suffix.lower() == ".csv":
        clips = _read_manifest(p)
    elif p.suffix.lower() == ".txt":
        root = p.parent
        lines = [ln.strip().replace("\\", "/") for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        clips = [Clip(str(root / ln), _sc_label(ln.split("/")[0], labels)) for ln in lines]
    else:
        raise DataError(f"{p}: positives must be a folder, a split list (.txt) or a manifest (.csv)")
    if not clips:
        raise DataError(f"{p}: no clips found")
    known = set(labels)
    kept = []
    for c in clips:
        if c.label not in known:
            skips.add(c.path, f"label not in the model: {c.label!r}")
        else:
            kept.append(c)
    if not kept:
        raise DataError(f"{p}: none of its {len(clips)} clips has a label the model knows ({sorted(known)})")
    return kept


def _sc_label(word: str, labels: list[str]) -> str:
    """A Speech Commands folder name as the model's label (a phrase's folder ``hey_nova`` is ``hey nova``):
    other words are ``_unknown_`` where the model has it."""
    label = label_of_folder(word, labels)
    if label is not None:
        return label
    return "_unknown_" if not word.startswith("_") and "_unknown_" in labels else word


def _read_manifest(p: Path) -> list[Clip]:
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    missing = {"path", "label"} - set(rows[0])
    if missing:
        raise DataError(f"{p}: manifest lacks the column(s) {sorted(missing)} (needs path,label[,speech_end_s])")
    clips = []
    for i, r in enumerate(rows, start=2):
        path = Path(r["path"])
        end = r.get("speech_end_s") or None
        if end is not None:
            try:
                end = float(end)
            except ValueError:
                raise DataError(f"{p}:{i}: speech_end_s is not a number: {end!r}") from None
            if not math.isfinite(end) or end < 0:
                raise DataError(f"{p}:{i}: speech_end_s must be a finite number >= 0, got {end}")
        extra = tuple((k, str(v)) for k, v in r.items() if k not in ("path", "label", "speech_end_s") and k)
        clips.append(Clip(str(path if path.is_absolute() else p.parent / path), r["label"].strip(), end, extra))
    return clips


def read_negatives(spec: str | Path) -> list[Source]:
    """The sources of one ``--negatives`` argument (see the module docstring)."""
    p = Path(spec)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder (negatives: an audio file, a folder, or a folder of folders)")
    if p.is_file():
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            raise DataError(f"{p}: not an audio file ({', '.join(AUDIO_EXTENSIONS)})")
        return [Source(p.stem, (str(p),))]
    subdirs = sorted(d for d in p.iterdir() if d.is_dir())
    own = _audio_files(p, recursive=False)
    if subdirs and not own:  # a folder of sources
        sources = [Source(f"{p.name}/{d.name}", tuple(_audio_files(d))) for d in subdirs]
        sources = [s for s in sources if s.files]
    else:
        sources = [Source(p.name, tuple(_audio_files(p)))]
    if not sources or not any(s.files for s in sources):
        raise DataError(f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return sources


def _audio_files(folder: Path, recursive: bool = True) -> list[str]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(f) for f in it if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)


def read_clip(path: str) -> tuple[np.ndarray, int]:
    """(samples (n,) float32 mono, rate). Raises DataError for anything unreadable."""
    wave, rate = read_audio_with_rate(path)
    return wave.numpy(), rate


def speech_end(wave: np.ndarray, rate: int, frame_s: float = 0.01) -> float:
    """Where speech ends in a clip, in seconds: the end of the last 10 ms frame whose energy is well above
    the clip's noise floor (its 10th-percentile frame energy + 10 dB) and within 35 dB of its loudest frame.

    A clip is one word with background noise, so this finds the word's last loud frame; a manifest's
    ``speech_end_s`` overrides it where known.
    """
    n = max(1, int(round(frame_s * rate)))
    frames = len(wave) // n
    if frames == 0:
        return len(wave) / rate
    e = (wave[:frames * n].astype(np.float64).reshape(frames, n) ** 2).mean(1)
    db = 10 * np.log10(e + 1e-12)
    threshold = max(np.percentile(db, 10) + 10.0, db.max() - 35.0)
    loud = np.flatnonzero(db >= threshold)
    return (int(loud[-1]) + 1) * n / rate if len(loud) else len(wave) / rate


def source_audio(source: Source, skips: SkipLog) -> tuple[np.ndarray, int, int]:
    """A source's files concatenated: (samples, rate, files used). Files at another rate than the first
    readable one are resampled to it; unreadable files are skipped and counted."""
    parts, first_rate = [], None
    for f in source.files:
        try:
            wave, r = read_audio_with_rate(f)
        except DataError as e:
            skips.add(f, str(e).removeprefix(f"{f}: "))
            continue
        if first_rate is None:
            first_rate = r
        if r != first_rate:
            wave = resample(wave, r, first_rate)
        parts.append(wave.numpy())
    if not parts:
        return np.zeros(0, np.float32), 0, 0
    return np.concatenate(parts), int(first_rate), len(parts)
