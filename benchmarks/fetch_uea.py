"""Fetch UEA/UCR archive problems from the files the ``aeon`` wheel ships.

    python benchmarks/fetch_uea.py --dest data/uea [--names BasicMotions JapaneseVowels] [--wheel aeon.whl]

The UEA archive website is out of reach from the project's machines; PyPI is not, and aeon's wheel carries
a few problems in ``aeon/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts``. This script downloads that
wheel with pip (``--no-deps``: aeon itself is never installed or imported), checks its SHA-256 against the
pinned one, and extracts the requested problems into ``<dest>/<Name>/``, the archive's own layout, which
``ssm_signal.data.uea.UEADataset(name, split=..., root=dest)`` reads. Problems already present are left as
they are, so running it again downloads nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

AEON_VERSION = "1.6.0"
# sha256 of aeon-1.6.0-py3-none-any.whl as served by PyPI (files there are immutable).
AEON_WHEEL_SHA256 = "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409"
DATA_PREFIX = "aeon/datasets/data/"
DEFAULT_NAMES = ("BasicMotions", "JapaneseVowels")
SPLITS = ("TRAIN", "TEST")


def targets(dest: Path, name: str) -> list[Path]:
    return [dest / name / f"{name}_{split}.ts" for split in SPLITS]


def download_wheel(workdir: Path) -> Path:
    """``pip download --no-deps aeon==AEON_VERSION`` into workdir; the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"aeon=={AEON_VERSION}",
        "-d",
        str(workdir),
    ]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    wheels = sorted(workdir.glob(f"aeon-{AEON_VERSION}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download produced no aeon {AEON_VERSION} wheel in {workdir}")
    return wheels[0]


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def available(zf: zipfile.ZipFile) -> list[str]:
    """Problems with both splits in the wheel."""
    names = set()
    members = set(zf.namelist())
    for m in members:
        if m.startswith(DATA_PREFIX) and m.endswith("_TRAIN.ts"):
            name = m[len(DATA_PREFIX) :].split("/")[0]
            if all(f"{DATA_PREFIX}{name}/{name}_{s}.ts" in members for s in SPLITS):
                names.add(name)
    return sorted(names)


def extract(wheel: Path, names: list[str], dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        have = available(zf)
        unknown = [n for n in names if n not in have]
        if unknown:
            raise SystemExit(f"{wheel.name} has no {unknown}; it has: {' '.join(have)}")
        for name in names:
            (dest / name).mkdir(parents=True, exist_ok=True)
            for out in targets(dest, name):
                # Written beside the target and renamed, so an interrupted run leaves no half file
                # that the idempotence check would take for a complete one.
                tmp = out.with_suffix(".ts.part")
                tmp.write_bytes(zf.read(f"{DATA_PREFIX}{name}/{out.name}"))
                os.replace(tmp, out)
                print(f"wrote {out} ({out.stat().st_size} bytes)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=Path("data/uea"), help="archive root (default data/uea)")
    ap.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES), help="problem names")
    ap.add_argument("--wheel", type=Path, help=f"use this aeon {AEON_VERSION} wheel instead of downloading it")
    args = ap.parse_args(argv)

    todo = [n for n in args.names if not all(p.is_file() for p in targets(args.dest, n))]
    for n in args.names:
        if n not in todo:
            print(f"{n}: already in {args.dest / n}, skipped")
    if not todo:
        return 0
    with tempfile.TemporaryDirectory(prefix="fetch_uea_") as tmp:
        wheel = args.wheel if args.wheel is not None else download_wheel(Path(tmp))
        digest = sha256(wheel)
        if digest != AEON_WHEEL_SHA256:
            raise SystemExit(
                f"{wheel}: sha256 {digest} is not the pinned {AEON_WHEEL_SHA256} of aeon {AEON_VERSION}; refusing it"
            )
        extract(wheel, todo, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
