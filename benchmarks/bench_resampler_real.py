"""The resampler's passband and a keyword bundle on the real recordings' positives (a measurement only).

    python benchmarks/bench_resampler_real.py [--model artifacts/kws_default] \
        [--manifest data/real/positives/manifest.csv]

Each positive clip streams through a StreamingSession (eager, one push and a flush, the bundle's own
detector) twice: with the resampler as shipped (passband to 0.95 of the lower Nyquist frequency) and with
the former design (0.9). Clips already at the model rate are not resampled, so only the others (the 8 kHz
telephone recordings) can differ; the figures are given for those and for all clips. Per filter: clips
detected (an event of the clip's keyword), clip accuracy (the label with the highest smoothed posterior
over the clip, keywords only), and the mean peak smoothed posterior of the clip's keyword.
Writes ``benchmarks/results/resampler_real_<date>.json``.

The real recordings are for reporting only: nothing here chooses a design or a threshold.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, write_result  # noqa: E402
from ssm_signal.bundle import load_bundle  # noqa: E402
from ssm_signal.data.audio_io import read_audio_with_rate  # noqa: E402
from ssm_signal.events import is_keyword  # noqa: E402
from ssm_signal.frontends.resample import ROLLOFF, shared_resampler  # noqa: E402
from ssm_signal.streaming import StreamConfig, StreamEngine, StreamingSession  # noqa: E402

FILTERS = {"new (rolloff 0.95)": ROLLOFF, "old (rolloff 0.90)": 0.9}


def run_clip(engine: StreamEngine, wave: np.ndarray, rate: int, label: str) -> dict:
    session = StreamingSession.from_engine(engine)
    updates = [session.push(wave, rate), session.flush()]
    smoothed = np.concatenate([u.smoothed for u in updates])  # (F, labels)
    labels = engine.labels
    keywords = [i for i, name in enumerate(labels) if is_keyword(name)]
    best = keywords[int(smoothed[:, keywords].max(0).argmax())]
    return {"detected": any(e.label == label for u in updates for e in u.events),
            "correct": labels[best] == label, "peak": float(smoothed[:, labels.index(label)].max())}


def summary(rows: list[dict]) -> dict:
    return {"clips": len(rows), "detected": sum(r["detected"] for r in rows),
            "accuracy": float(np.mean([r["correct"] for r in rows])),
            "mean_peak_posterior": float(np.mean([r["peak"] for r in rows]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="artifacts/kws_default")
    ap.add_argument("--manifest", default="data/real/positives/manifest.csv")
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    root = Path(args.manifest).parent
    clips = []
    for row in csv.DictReader(open(args.manifest)):
        if row["label"] in bundle.config.labels:
            wave, rate = read_audio_with_rate(root / row["path"])
            clips.append((row["path"], wave.numpy(), rate, row["label"]))
    result = {"bundle": f"{bundle.name} {bundle.version}", "manifest": args.manifest, "machine": machine()}
    for name, rolloff in FILTERS.items():
        engine = StreamEngine(bundle, config=StreamConfig(compile=False))
        # the engine takes its filters from here: swap in the design under test
        engine.resampler = lambda r, e=engine, ro=rolloff: shared_resampler(r, e.rate, e.in_channels, rolloff=ro)
        rows = [dict(path=p, rate=r, **run_clip(engine, w, r, lab)) for p, w, r, lab in clips]
        resampled = [r for r in rows if r["rate"] != bundle.sample_rate]
        result[name] = {"resampled": summary(resampled), "all": summary(rows), "clips": rows}
        print(f"{name}: resampled {summary(resampled)}; all {summary(rows)}")
    write_result("resampler_real", result)


if __name__ == "__main__":
    main()
