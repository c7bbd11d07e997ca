"""Fetch UEA/UCR archive problems and real anomaly streams from the files the ``aeon`` wheel ships.

    python benchmarks/fetch_uea.py --dest data/uea [--names BasicMotions JapaneseVowels] [--wheel aeon.whl]
    python benchmarks/fetch_uea.py --streams ucr135 daphnet [--streams-dest data/anomaly_streams]

The UEA archive website is out of reach from the project's machines; PyPI is not, and aeon's wheel carries
a few problems in ``aeon/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts``. The wheel is downloaded
and checked by :mod:`ssm_signal.data.aeon_wheel` (pip ``--no-deps``, SHA-256 pinned: aeon itself is never
installed or imported); the requested problems go into ``<dest>/<Name>/``, the archive's own layout, which
``ssm_signal.data.uea.UEADataset(name, split=..., root=dest)`` reads. ``--streams`` writes the anomaly
stream tables of :mod:`ssm_signal.data.anomaly_streams` (what ``configs/sensor_ucr135.yaml`` and
``configs/sensor_daphnet.yaml`` train on; their data modules fetch them on first use too). What is present
already is left as it is, so running it again downloads nothing.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ssm_signal.data.aeon_wheel import AEON_VERSION, DATA_PREFIX, aeon_wheel, download_wheel  # noqa: E402
from ssm_signal.data.aeon_wheel import extract as extract_members  # noqa: E402

DEFAULT_NAMES = ("BasicMotions", "JapaneseVowels")
SPLITS = ("TRAIN", "TEST")


def targets(dest: Path, name: str) -> list[Path]:
    return [dest / name / f"{name}_{split}.ts" for split in SPLITS]


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
    extract_members(wheel, {f"{DATA_PREFIX}{name}/{out.name}": out for name in names for out in targets(dest, name)})


def main(argv: list[str] | None = None) -> int:
    from ssm_signal.data.anomaly_streams import STREAMS, make_stream_table, stream_table_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=Path("data/uea"), help="archive root (default data/uea)")
    ap.add_argument("--names", nargs="*", default=list(DEFAULT_NAMES), help="problem names")
    ap.add_argument("--streams", nargs="*", default=[], choices=sorted(STREAMS),
                    help="anomaly streams to write as sensor tables")
    ap.add_argument("--streams-dest", type=Path, default=Path("data/anomaly_streams"),
                    help="where the stream tables go (default data/anomaly_streams/<name>/table.parquet)")
    ap.add_argument("--wheel", type=Path, help=f"use this aeon {AEON_VERSION} wheel instead of downloading it")
    args = ap.parse_args(argv)

    todo = [n for n in args.names if not all(p.is_file() for p in targets(args.dest, n))]
    for n in args.names:
        if n not in todo:
            print(f"{n}: already in {args.dest / n}, skipped")
    streams = [s for s in args.streams if not stream_table_path(s, args.streams_dest).is_file()]
    for s in args.streams:
        if s not in streams:
            print(f"{s}: already in {stream_table_path(s, args.streams_dest)}, skipped")
    if not todo and not streams:
        return 0
    try:
        with aeon_wheel(args.wheel, download=download_wheel) as wheel:
            if todo:
                extract(wheel, todo, args.dest)
            for s in streams:
                print(f"wrote {make_stream_table(s, stream_table_path(s, args.streams_dest), wheel=wheel)}")
    except (RuntimeError, ValueError) as e:
        raise SystemExit(str(e)) from e
    return 0


if __name__ == "__main__":
    sys.exit(main())
