"""Debian packages as a source of data: downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x``,
never installed (no maintainer scripts, no dependencies such as a game's engine). The one place the project does
this: the recorded game dialogue (:mod:`ssm_signal.data.dialogue`) and the real sets of the benchmarks
(``benchmarks/fetch_real_audio.py``, ``fetch_real_validation.py``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ssm_signal.data.skips import DataError


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def last_line(text: str) -> str:
    """The last line of a tool's output that says something (apt's sandbox warning is no reason)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("W: Download is")]
    return lines[-1] if lines else "no output"


def sha256(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: whether this process has run ``apt-get update`` (once is enough: a package it did not list is not there)
_lists_updated = False


def download(spec: str, folder: Path) -> Path:
    """``apt-get download spec`` (a name, or ``name=version``) into ``folder``; the .deb's path. A machine without
    package lists gets them once per process (``apt-get update``) and the download is tried again.

    Raises:
        DataError: apt-get is missing or the download fails (one line, saying why).
    """
    if shutil.which("apt-get") is None:
        raise DataError(f"apt-get not found: {spec} cannot be downloaded on this machine")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777)  # apt-get download runs as the _apt user when it can
    global _lists_updated
    r = _run(["apt-get", "download", spec], cwd=folder)
    if r.returncode and "Unable to locate package" in r.stderr and not _lists_updated:
        _lists_updated = True
        print("apt-get download found no package lists; running apt-get update once", flush=True)
        _run(["apt-get", "update", "-qq"])
        r = _run(["apt-get", "download", spec], cwd=folder)
    debs = sorted(folder.glob("*.deb"))
    if r.returncode or not debs:
        raise DataError(f"apt-get download {spec} failed: {last_line(r.stderr or r.stdout)}")
    return debs[0]


def unpack(deb: Path, out: Path) -> str:
    """The files of ``deb`` into ``out`` (created); the package's version.

    Raises:
        DataError: dpkg-deb is missing or fails.
    """
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"dpkg-deb not found: {deb.name} cannot be unpacked on this machine")
    out.mkdir(parents=True, exist_ok=True)
    v = _run(["dpkg-deb", "-f", str(deb), "Version"])
    x = _run(["dpkg-deb", "-x", str(deb), str(out)])
    if v.returncode or x.returncode:
        raise DataError(f"dpkg-deb on {deb.name} failed: {last_line(v.stderr + x.stderr)}")
    return v.stdout.strip()
