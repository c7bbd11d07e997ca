"""How fast `ssm-signal evaluate` streams hours of audio through the live detector (target: 3 h in <= 2 min
on the 2-core CPU).

    python benchmarks/bench_evaluate.py [--model artifacts/kws_default] [--chunk-s 0.1] [--threads 2]

Streams the generated keyword set's test voices as positives and the WHOLE generated negative corpus (both
halves, ~3.8 h) as negatives, with the command's defaults (100 ms chunks), no calibration, and records the
audio hours, the wall time (streaming, sweep, report) and hours of audio per minute. Settings can be
compared side by side in one run: ``--variants`` takes several ``segment_s:batch`` pairs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_bundle, machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--chunk-s", type=float, default=0.1)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to compare")
    p.add_argument("--variants", default="0:256", help="comma-separated segment_s:batch pairs (0: one stream per source)")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    load_before = os.getloadavg()
    from pipelines.evaluate import EvaluateConfig, evaluate
    from pipelines.evaluate.keywords import StreamSettings
    from ssm_signal.data.negatives import generate_negative_corpus

    negatives = generate_negative_corpus(ROOT / "data/negatives")
    with tempfile.TemporaryDirectory() as tmp:
        model, what = default_bundle(a.model, Path(tmp))
        runs = []
        for v, threads in [(v, int(t)) for v in a.variants.split(",") for t in a.threads.split(",")]:
            seg, batch = v.split(":")
            cfg = EvaluateConfig(model=model, positives=[str(ROOT / "data/keywords/testing_list.txt")],
                                 negatives=[str(negatives / k) for k in ("speech", "music", "noise")],
                                 out=str(Path(tmp) / "out"),
                                 stream=StreamSettings(chunk_s=a.chunk_s, segment_s=float(seg), batch=int(batch)),
                                 threads=threads)
            t0 = time.perf_counter()
            s = evaluate(cfg)
            wall = time.perf_counter() - t0
            hours = s["timing"]["audio_hours"]
            runs.append({"segment_s": float(seg), "batch": int(batch), "threads": threads, "audio_hours": hours, "wall_s": round(wall, 1),
                         "streaming_s": s["timing"]["streaming_seconds"],
                         "hours_per_minute": round(hours / (wall / 60), 3),
                         "seconds_for_3h": round(3 * wall / hours, 1)})
            print(runs[-1], flush=True)
    write_result("evaluate_cpu" + (f"_{a.tag}" if a.tag else ""),
                 {"benchmark": "bench_evaluate", "machine": machine(), "model": what, "chunk_s": a.chunk_s,
                  "load_average_before": load_before, "load_average_after": os.getloadavg(), "runs": runs})


if __name__ == "__main__":
    main()
