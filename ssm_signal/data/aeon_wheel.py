"""Real data from the ``aeon`` wheel on PyPI: the one place the project downloads it.

The UEA/UCR archive websites are out of reach from the project's machines; PyPI is not, and aeon's
wheel carries a few archive problems (``aeon/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts``)
and two real anomaly streams in TimeEval's CSV layout (Daphnet S06R02E0 and the UCR anomaly
archive's series 135). :func:`aeon_wheel` downloads the pinned wheel with pip (``--no-deps``: aeon
itself is never installed or imported) and checks its SHA-256; :func:`read_member` and
:func:`extract` take files out of it. ``benchmarks/fetch_uea.py`` (the UEA problems) and
:mod:`ssm_signal.data.anomaly_streams` (the anomaly streams) both come through here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

AEON_VERSION = "1.6.0"
# sha256 of aeon-1.6.0-py3-none-any.whl as served by PyPI (files there are immutable).
AEON_WHEEL_SHA256 = "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409"
DATA_PREFIX = "aeon/datasets/data/"


def download_wheel(workdir: Path) -> Path:
    """``pip download --no-deps aeon==AEON_VERSION`` into workdir; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"aeon=={AEON_VERSION}",
           "-d", str(workdir)]
    print("running:", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"could not download the aeon {AEON_VERSION} wheel from PyPI ({e}); pass a copy of "
                           f"aeon-{AEON_VERSION}-py3-none-any.whl instead") from e
    wheels = sorted(Path(workdir).glob(f"aeon-{AEON_VERSION}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download produced no aeon {AEON_VERSION} wheel in {workdir}")
    return wheels[0]


def sha256(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_wheel(wheel: Path) -> Path:
    """``wheel`` if its SHA-256 is the pinned one; ValueError otherwise."""
    digest = sha256(wheel)
    if digest != AEON_WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest} is not the pinned {AEON_WHEEL_SHA256} of aeon {AEON_VERSION}; "
                         "refusing it")
    return Path(wheel)


@contextlib.contextmanager
def aeon_wheel(wheel: str | Path | None = None, download=None) -> Iterator[Path]:
    """The checked wheel: ``wheel`` if given, else downloaded into a temporary folder that is removed
    afterwards. ``download``: the function that downloads it (default :func:`download_wheel`)."""
    if wheel is not None:
        yield check_wheel(Path(wheel))
        return
    with tempfile.TemporaryDirectory(prefix="aeon_wheel_") as tmp:
        yield check_wheel((download or download_wheel)(Path(tmp)))


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
