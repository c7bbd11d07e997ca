"""What a scoring job reads and what it may write over.

Inputs: a directory (recursive), a glob, a manifest (.csv/.parquet with ``path`` [, ``label``]) or
a Speech Commands split list (.txt). A directory holds what the model reads: audio files for an
audio model, tables for a sensor model; anything else in it is skipped and counted, never read
as a guess (a .npy in an audio folder is not a 1 Hz signal). Each input is ``stat``-ed once, at
listing: its size and modification time are its identity (a resumed job rescores a file that
changed), and a path that is not a regular file (missing, a FIFO, a directory, a symlink loop)
carries the reason and becomes an error row without ever being opened.

Paths are kept as ``str`` with surrogate escapes (what ``os`` returns for names that are not
UTF-8), so every file stays reachable; :func:`path_key` is the lossless bytes used to match rows
to inputs, :func:`display_path` the UTF-8 text written to the Parquet ``path`` column.

Outputs: :func:`check_output` refuses, before anything is scored, an ``--output`` that is a
directory, the input itself, or an existing file that is not this scorer's own output.
"""

from __future__ import annotations

import collections
import dataclasses
import glob as globlib
import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipelines.errors import UsageError
from ssm_signal.data.audio_io import AUDIO_EXTENSIONS
from ssm_signal.data.file_checks import not_regular_words, os_error_words

log = logging.getLogger("ssm_signal.pipelines")

TABLE_EXT = {".csv", ".parquet", ".pq", ".npy"}
MANIFEST_EXT = {".csv", ".parquet", ".pq"}


@dataclasses.dataclass
class Item:
    """One input: its path, true label where known, and its identity when listed.

    size, mtime_ns: from ``os.stat`` at listing (-1: not known); problem: why the path cannot be
    read ("no such file", "not a regular file (a FIFO (named pipe))", ...), None for a regular file.
    """

    path: str
    label: str | None = None
    size: int = -1
    mtime_ns: int = -1
    problem: str | None = None


def file_kinds(audio: bool) -> tuple[str, ...] | set[str]:
    """The suffixes a model's folder listing takes: audio files, or sensor tables."""
    return AUDIO_EXTENSIONS if audio else TABLE_EXT


def list_inputs(spec: str, audio: bool = True, skipped: collections.Counter | None = None) -> list[Item]:
    """The inputs of ``spec`` (see the module docstring), stat-ed, in a stable order.

    audio: the model reads audio (else sensor tables); skipped: counts, by suffix, the files of a
    directory that the model does not read. Raises UsageError when nothing is found or a manifest
    has no ``path`` column.
    """
    p = Path(spec)
    if p.is_file() and p.suffix == ".txt":
        rels = [line.strip() for line in p.read_text().splitlines() if line.strip()]
        items = [Item(str(p.parent / r), Path(r).parent.name or None) for r in rels]
    elif p.is_file() and p.suffix in MANIFEST_EXT and (_is_manifest(p) or audio):
        if not _is_manifest(p):
            cols = list(_columns(p))
            raise UsageError(f"--input {spec}: a manifest needs a 'path' column (it has {cols[:8]})")
        items = _manifest_items(p)
    elif p.is_dir():
        items = _folder_items(spec, file_kinds(audio), skipped if skipped is not None else collections.Counter())
    else:
        items = [Item(f) for f in sorted(globlib.glob(spec, recursive=True)) if not os.path.isdir(f)]
    if not items:
        why = "" if p.exists() or globlib.has_magic(spec) else " (no such file or directory)"
        raise UsageError(f"--input {spec}: no input files found{why}")
    dupes = len(items) - len({it.path for it in items})
    if dupes:
        log.warning("%s lists %d paths more than once: each is scored once and gets one output row per listing",
                    spec, dupes)
    stat_items(items)
    return items


def _columns(p: Path) -> list[str]:
    return list(pq.read_schema(p).names if p.suffix != ".csv" else pd.read_csv(p, nrows=0).columns)


def _is_manifest(p: Path) -> bool:
    return "path" in _columns(p)


def _manifest_items(p: Path) -> list[Item]:
    df = pd.read_parquet(p) if p.suffix != ".csv" else pd.read_csv(p)
    base, labels = p.parent, df["label"] if "label" in df.columns else [None] * len(df)
    items = []
    for path, label in zip(df["path"], labels, strict=True):
        if pd.isna(path) or not str(path).strip():
            raise UsageError(f"--input {p}: row {len(items) + 2} has an empty path")
        rel = str(path)
        items.append(Item(rel if os.path.isabs(rel) else str(base / rel), None if pd.isna(label) else str(label)))
    return items


def _folder_items(spec: str, kinds: set[str], skipped: collections.Counter) -> list[Item]:
    # os.walk and plain strings, the label once per folder: listing 100k files through pathlib
    # objects, or path functions per file, takes seconds
    root, items = os.path.normpath(spec), []
    for d, _, files in os.walk(root):
        # Speech Commands / labelled-folder layout: the parent folder is the label
        label, prefix = (os.path.basename(d) if d != root else None), d + os.sep
        for f in files:
            ext = f[f.rfind("."):].lower() if "." in f else ""
            if ext in kinds:
                items.append(Item(prefix + f, label))
            else:
                skipped[ext or "(no suffix)"] += 1
    if skipped:
        log.warning("%s: skipped %d files this model does not read (%s)", spec, sum(skipped.values()),
                    ", ".join(f"{n} {ext}" for ext, n in skipped.most_common()))
    items.sort(key=lambda it: it.path)
    return items


def stat_items(items: list[Item]) -> None:
    """Fill each item's size, mtime_ns and problem from one ``os.stat`` (symlinks followed; no open)."""
    for it in items:
        try:
            st = os.stat(it.path)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in a manifest's path
            it.problem = os_error_words(e) if isinstance(e, OSError) else "invalid path"
            continue
        it.size, it.mtime_ns, it.problem = st.st_size, st.st_mtime_ns, not_regular_words(st.st_mode)


def path_key(path: str) -> bytes:
    """The path's bytes as the file system holds them: matches rows to inputs losslessly."""
    return os.fsencode(path)


def display_path(path: str) -> str:
    """The path as UTF-8 text: itself, or for a name that is not UTF-8 its bytes with \\x escapes
    (the exact bytes go to the ``path_bytes`` column)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def soundfile_source(path: str) -> str | int:
    """What to hand soundfile for ``path``: the path, or for a name that is not UTF-8 an open file
    descriptor (soundfile encodes str paths strictly and would fail; it closes the descriptor)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.open(path, os.O_RDONLY)


def check_output(out: Path, spec: str, is_own_output) -> None:
    """Refuse an ``--output`` this job must not write over, before anything is scored.

    ``is_own_output(path) -> bool`` says whether an existing file is a scoring output (the scorer's
    Parquet schema). Raises UsageError naming the path.
    """
    if out.is_dir():
        raise UsageError(f"--output {out}: is a directory; name a .parquet file to write")
    if out.exists():
        if os.path.exists(spec) and os.path.samefile(out, spec):
            raise UsageError(f"--output {out}: is the input; name another file")
        if not is_own_output(out):
            raise UsageError(f"--output {out}: exists and is not an ssm-signal scoring output; "
                             "refusing to overwrite it (name another file)")
    for side, want_dir in ((out.with_name(out.name + ".parts"), True), (out.with_suffix(".summary.json"), False)):
        if side.exists() and side.is_dir() != want_dir:
            raise UsageError(f"--output {out}: {side} exists and is not the scorer's "
                             f"{'parts folder' if want_dir else 'summary file'}; refusing to overwrite it")
