"""Batch-scoring throughput: signal-seconds scored per wall-clock second, against the
model's bare forward throughput on the same machine (the rest is decoding and I/O).

    python benchmarks/bench_score.py [--files 2000] [--seconds 1.0] [--batch-size 64] [--num-workers 2]

On the H100 (16 host cores): --files 70000 --seconds 1 --batch-size 1024 --num-workers 14 (keyword
clips, 19 h) and --files 17500 --seconds 10 --batch-size 256 --num-workers 14 (recordings, 49 h):
jobs large enough for the scorer's BatchRing (made when a job moves twice its size); --no-ring
measures DataLoader's ordinary path instead. Medians of --repeats whole scoring runs (the first run
on a fresh machine also compiles the kernels).

Uses the default keyword model (artifacts/kws_default if present, else the architecture of
configs/kws_default.yaml with random weights: throughput does not depend on the weights).
Writes benchmarks/results/score_<device>_<seconds>s_<date>.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import default_bundle, machine, median, write_result  # noqa: E402

from ssm_signal import load_bundle  # noqa: E402


def write_files(root: Path, n: int, seconds: float, rate: int = 16000) -> None:
    """n 16-bit WAV files of noise, each a different slice of one long noise buffer (throughput
    does not depend on the content; drawing fresh noise per file dominated writing 5 GB of them)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    length = int(seconds * rate)
    noise = (0.1 * rng.standard_normal(length + 97 * rate)).astype(np.float32)
    for i in range(n):
        d = root / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        start = (i * 7919) % (97 * rate)
        sf.write(d / f"{i:06d}.wav", noise[start:start + length], rate, subtype="PCM_16")


def bare_forward(bundle, batch: int, seconds: float, device: str, repeats: int = 10) -> float:
    """Signal-seconds per second of the model alone on pre-decoded, pre-batched input."""
    model = bundle.model.to(device).eval()
    x = torch.randn(batch, int(seconds * bundle.sample_rate), 1, device=device) * 0.1
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t)
    return batch * seconds / median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--bundle", default=None, help="bundle directory (default artifacts/kws_default or random)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-ring", action="store_true",
                   help="batches through DataLoader's ordinary shared-memory path instead of the BatchRing")
    args = p.parse_args()
    from pipelines.score import ScoreConfig, score

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_path, which = default_bundle(args.bundle, tmp)
        t = time.time()
        write_files(tmp / "data", args.files, args.seconds)
        print(f"wrote {args.files} files in {time.time() - t:.1f} s", flush=True)
        bundle = load_bundle(bundle_path)
        bare = bare_forward(bundle, args.batch_size, args.seconds, device)
        runs = []
        for r in range(args.repeats):  # the first run on a fresh machine also compiles the kernels
            out = tmp / f"scores{r}.parquet"
            s = score(ScoreConfig(model=bundle_path, input=str(tmp / "data"), output=str(out),
                                  batch_size=args.batch_size, num_workers=args.num_workers,
                                  accelerator="gpu" if device == "cuda" else "cpu", mlflow=False,
                                  ring=False if args.no_ring else None))
            runs.append((s["audio_s_per_s"], s["steady_audio_s_per_s"]))
        bare2 = bare_forward(bundle, args.batch_size, args.seconds, device)
    whole = median([r[0] for r in runs])
    steady = median([r[1] for r in runs])
    bare_med = median([bare, bare2])
    result = {"benchmark": "score", "machine": machine(), "model": which, "config": vars(args),
              "scorer_whole_run_audio_s_per_s": [r[0] for r in runs],
              "scorer_steady_audio_s_per_s": [r[1] for r in runs],
              "bare_forward_audio_s_per_s": [bare, bare2],
              "scorer_x_realtime_whole_run": whole, "scorer_x_realtime_steady": steady, "bare_x_realtime": bare_med,
              "steady_over_bare": steady / bare_med, "whole_run_over_bare": whole / bare_med}
    print(f"scorer: {whole:.0f}x real time over the whole run (start-up included), {steady:.0f}x steady; "
          f"bare forward: {bare_med:.0f}x; steady/bare {steady / bare_med:.2f}")
    write_result(f"score_{'gpu' if device == 'cuda' else 'cpu'}_{args.seconds:g}s" + ("_noring" if args.no_ring else ""),
                 result)


if __name__ == "__main__":
    main()
