"""Real data from the ``aeon`` wheel on PyPI.

The UEA/UCR archive websites are out of reach from the project's machines; PyPI is not, and aeon's
wheel carries a few archive problems (``aeon/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts``)
and two real anomaly streams in TimeEval's CSV layout (Daphnet S06R02E0 and the UCR anomaly
archive's series 135). :func:`aeon_wheel` gives the pinned wheel (downloaded and checked by
:mod:`ssm_signal.data.pypi_wheel`: aeon itself is never installed or imported); :func:`read_member` and
:func:`extract` take files out of it. ``benchmarks/fetch_uea.py`` (the UEA problems) and
:mod:`ssm_signal.data.anomaly_streams` (the anomaly streams) both come through here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ssm_signal.data.pypi_wheel import download_wheel as _download
from ssm_signal.data.pypi_wheel import extract, pinned_wheel, read_member

__all__ = ["AEON_VERSION", "AEON_WHEEL_SHA256", "DATA_PREFIX", "aeon_wheel", "download_wheel", "extract",
           "read_member"]

AEON_VERSION = "1.6.0"
# sha256 of aeon-1.6.0-py3-none-any.whl as served by PyPI (files there are immutable).
AEON_WHEEL_SHA256 = "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409"
DATA_PREFIX = "aeon/datasets/data/"


def download_wheel(workdir: Path) -> Path:
    """``pip download --no-deps aeon==AEON_VERSION`` into workdir; the wheel's path."""
    return _download("aeon", AEON_VERSION, workdir)


@contextlib.contextmanager
def aeon_wheel(wheel: str | Path | None = None, download=None) -> Iterator[Path]:
    """The checked wheel: ``wheel`` if given, else downloaded into a temporary folder that is removed
    afterwards. ``download``: the function that downloads it (default :func:`download_wheel`)."""
    with pinned_wheel("aeon", AEON_VERSION, AEON_WHEEL_SHA256, wheel, download or download_wheel) as whl:
        yield whl
