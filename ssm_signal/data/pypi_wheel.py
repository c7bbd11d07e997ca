"""Pinned wheels from PyPI as a source of data and weights: the one place the project downloads a wheel.

Some data and pre-trained weights the project uses ship inside packages on PyPI, which the project's machines can
reach: real anomaly streams and UEA problems in aeon's wheel (:mod:`ssm_signal.data.aeon_wheel`), a pre-trained
speech encoder in openWakeWord's (:mod:`pipelines.pretrained`). :func:`pinned_wheel` downloads a wheel with pip
(``--no-deps``: the package is never installed or imported) and checks its SHA-256; :func:`read_member` and
:func:`extract` take files out of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path


def download_wheel(name: str, version: str, workdir: Path) -> Path:
    """``pip download --no-deps name==version`` (a wheel) into workdir; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"{name}=={version}",
           "-d", str(workdir)]
    print("running:", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"could not download the {name} {version} wheel from PyPI ({e}); pass a copy of "
                           f"{name}-{version}-py3-none-any.whl instead") from e
    wheels = sorted(Path(workdir).glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download produced no {name} {version} wheel in {workdir}")
    return wheels[0]


def sha256(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_wheel(wheel: Path, digest: str, what: str) -> Path:
    """``wheel`` if its SHA-256 is ``digest``; ValueError naming ``what`` (e.g. "aeon 1.6.0") otherwise."""
    found = sha256(wheel)
    if found != digest:
        raise ValueError(f"{wheel}: sha256 {found} is not the pinned {digest} of {what}; refusing it")
    return Path(wheel)


@contextlib.contextmanager
def pinned_wheel(name: str, version: str, digest: str, wheel: str | Path | None = None,
                 download: Callable[[Path], Path] | None = None) -> Iterator[Path]:
    """The checked wheel: ``wheel`` if given, else downloaded into a temporary folder that is removed afterwards.
    ``download``: the function that downloads it into a folder (default: pip, :func:`download_wheel`)."""
    what = f"{name} {version}"
    if wheel is not None:
        yield check_wheel(Path(wheel), digest, what)
        return
    with tempfile.TemporaryDirectory(prefix=f"{name}_wheel_") as tmp:
        got = download(Path(tmp)) if download is not None else download_wheel(name, version, Path(tmp))
        yield check_wheel(got, digest, what)


def read_member(wheel: Path, member: str) -> bytes:
    """The bytes of ``member`` (a path inside the wheel); KeyError naming the wheel when it has none."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise KeyError(f"{Path(wheel).name} has no {member}") from None


def extract(wheel: Path, members: dict[str, Path]) -> None:
    """Write each wheel ``member`` to its path, beside it first and renamed, so an interrupted run leaves no
    half file that a later check for presence would take for a complete one."""
    with zipfile.ZipFile(wheel) as zf:
        for member, out in members.items():
            out = Path(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(zf.read(member))
            os.replace(tmp, out)
            print(f"wrote {out} ({out.stat().st_size} bytes)")
