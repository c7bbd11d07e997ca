"""Peak memory of `ssm-signal score` on one long file: bounded by the window, not the file's length.

    python benchmarks/bench_score_memory.py                 # 10 h of 16 kHz mono, 1 h of 44.1 kHz stereo
    python benchmarks/bench_score_memory.py --hours 1 --whole  # also the whole-file path, for comparison

Each file is generated on the fly into a temporary folder (10 h of 16 kHz 16-bit mono is 1.15 GB),
written block by block, scored by the command in a child process (default bundle: see
common.default_bundle), and deleted. The figure is the child's peak resident set (``wait4``'s
ru_maxrss, so the interpreter's exit is included), with its wall time and the row's status; the
JSON goes to benchmarks/results/.

The command is started by a small launcher process (:data:`LAUNCHER`, ~10 MB), not by this one:
on Linux a child's ru_maxrss starts from its parent's resident set when it forks, and this
process holds torch and the bundle (~600 MB), which would otherwise floor every figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import default_bundle, machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_long_wav(path: Path, hours: float, rate: int, channels: int, block_s: float = 60.0) -> int:
    """A speech-band noise-and-tones WAV of ``hours``, 16-bit PCM, written a minute at a time."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    total = int(hours * 3600 * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        for start in range(0, total, int(block_s * rate)):
            n = min(int(block_s * rate), total - start)
            t = (start + np.arange(n)) / rate
            x = 0.2 * np.sin(2 * np.pi * (300 + 200 * np.sin(t / 7)) * t) + 0.02 * rng.standard_normal(n)
            f.write(np.repeat(x[:, None], channels, 1).astype(np.float32))
    return total


# argv: result file, command...: runs the command, writes its peak RSS (KiB) and exit code to the file
LAUNCHER = ("import os, subprocess, sys\n"
            "p = subprocess.Popen(sys.argv[2:])\n"
            "_, status, usage = os.wait4(p.pid, 0)\n"
            "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n")


def run(cmd: list[str]) -> dict:
    """Wall seconds, peak RSS (MB) and return code of one child process, started by :data:`LAUNCHER`."""
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as res:
        # -I -S: the launcher imports nothing it does not need (its own size is the floor of the figure)
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, res.name, *cmd], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        text = res.read().split()
    rss_kib, rc = (int(text[0]), int(text[1])) if len(text) == 2 else (0, proc.returncode)
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mb": rss_kib / 1024, "rc": rc,
            "output_tail": proc.stdout.decode(errors="replace")[-600:]}


def score_cmd(bundle: str, wav: Path, out: Path, whole: bool) -> list[str]:
    if not whole:
        return [sys.executable, "-m", "pipelines.cli", "score", "--model", bundle, "--input", str(wav.parent),
                "--output", str(out), "--num-workers", "0", "--accelerator", "cpu", "--no-mlflow"]
    # the whole-file path (what every file took before): long files never split off
    code = ("import sys; from pipelines.score import ScoreConfig, score; "
            f"score(ScoreConfig(model={bundle!r}, input={str(wav.parent)!r}, output={str(out)!r}, num_workers=0, "
            "accelerator='cpu', mlflow=False, long_bytes=1 << 62))")
    return [sys.executable, "-c", code]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=10.0, help="length of the 16 kHz mono file")
    p.add_argument("--stereo-hours", type=float, default=1.0, help="length of the 44.1 kHz stereo file (0: none)")
    p.add_argument("--whole", action="store_true", help="also score each file through the whole-file path")
    p.add_argument("--bundle", default=None)
    p.add_argument("--tmp", default=tempfile.gettempdir(), help="where the long files are written (and deleted)")
    p.add_argument("--name", default="score_memory", help="result file name (benchmarks/results/NAME_DATE.json)")
    a = p.parse_args()
    import pandas as pd

    tmp = Path(tempfile.mkdtemp(prefix="bench_score_memory_", dir=a.tmp))
    results = []
    try:
        bundle, what = default_bundle(a.bundle, tmp)
        # what the command holds before reading any file (torch's CUDA build, pandas, pyarrow, the
        # model; Lightning only once a job has files for the batch path): what scoring adds is over this
        base = run([sys.executable, "-c", "import sys, pipelines.cli, pipelines.score; from ssm_signal import load_bundle; "
                                          f"load_bundle({bundle!r}); "
                                          "print('loaded:', *[m for m in ('lightning', 'mlflow', 'pandas') if m in sys.modules])"])
        print(f"baseline (imports and the model): peak RSS {base['peak_rss_mb']:.0f} MB")
        cases = [(a.hours, 16000, 1)] + ([(a.stereo_hours, 44100, 2)] if a.stereo_hours else [])
        for hours, rate, channels in cases:
            folder = tmp / f"in_{rate}_{channels}"
            folder.mkdir()
            wav = folder / "long.wav"
            t0 = time.perf_counter()
            write_long_wav(wav, hours, rate, channels)
            case = {"hours": hours, "rate": rate, "channels": channels, "file_mb": wav.stat().st_size / 1e6,
                    "write_s": time.perf_counter() - t0}
            for whole in ([False, True] if a.whole else [False]):
                out = tmp / f"out_{rate}_{channels}_{'whole' if whole else 'blocks'}.parquet"
                r = run(score_cmd(bundle, wav, out, whole))
                r["added_mb"] = r["peak_rss_mb"] - base["peak_rss_mb"]
                if out.exists():
                    row = pd.read_parquet(out).iloc[0]
                    # an ok row's error is a missing value (NaN to pandas): JSON has null for it
                    r.update(status=row["status"], error=None if pd.isna(row["error"]) else row["error"],
                             duration_s=row["duration_s"])
                case["whole" if whole else "blocks"] = r
                print(f"{hours:g} h {rate} Hz x{channels} {'whole' if whole else 'blocks'}: "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB (+{r['added_mb']:.0f}), {r['wall_s']:.0f} s, rc {r['rc']}, {r.get('status')}")
            wav.unlink()
            results.append(case)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_result(a.name, {"machine": machine(), "bundle": what, "baseline": base, "cases": results,
                          "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
