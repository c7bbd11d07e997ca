"""How much a keyword's streamed posterior depends on what came before it: validation voices in contexts.

    python benchmarks/bench_kws_context.py --model artifacts/kws_default --model artifacts/kws_pcen \
        [--root data/keywords_robust] [--clips 150]

Each of ``--clips`` keyword clips of the set's *validation* split (a seeded shuffle, the same for every bundle)
is streamed from a fresh state alone, and with 0.5 s before and 1.5 s after it of: digital silence, white noise
at -60 dBFS, white noise at -40 dBFS. For each, the clip's keyword posterior is smoothed over 20 frames (the
detector's window) and its maximum taken; reported are its mean and the share of clips where it passes 0.5.
A frontend that carries a level from the context (PCEN's smoother) shows it here; the log-mel does not.

Validation voices only: this is for choosing recipes (docs/results.md, fifth run).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, write_result  # noqa: E402
from ssm_signal.bundle import load_bundle  # noqa: E402
from ssm_signal.events import DetectorConfig, EventDetector, is_keyword  # noqa: E402

#: context around the clip: its level in dBFS (None: the clip alone; -inf: digital silence)
CONTEXTS = {"clip alone": None, "digital silence": -np.inf, "noise -60 dBFS": -60.0, "noise -40 dBFS": -40.0}
WINDOW = 20


def in_context(w: np.ndarray, rate: int, level_db: float | None, rng: np.random.Generator) -> np.ndarray:
    if level_db is None:
        return w
    scale = 0.0 if level_db == -np.inf else 10 ** (level_db / 20)
    before, after = (rng.standard_normal(int(s * rate)).astype(np.float32) * scale for s in (0.5, 1.5))
    return np.concatenate([before, w, after])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="bundle directory (repeat for several)")
    p.add_argument("--root", default="data/keywords_robust")
    p.add_argument("--clips", type=int, default=150)
    a = p.parse_args()
    torch.set_num_threads(1)
    rels = [r.strip() for r in open(Path(a.root) / "validation_list.txt") if r.strip()]
    random.Random(0).shuffle(rels)
    out = {}
    for path in a.model:
        b = load_bundle(path)
        keywords = [label for label in b.labels if is_keyword(label)]
        # the live detector's moving average (its first frames average over those seen so far)
        detector = EventDetector("keyword", b.labels, 100.0, DetectorConfig(smoothing_frames=WINDOW))
        peaks: dict[str, list[float]] = {k: [] for k in CONTEXTS}
        chosen = [r for r in rels if r.split("/")[0] in keywords][:a.clips]
        for n, rel in enumerate(chosen):
            w, rate = sf.read(Path(a.root) / rel, dtype="float32")
            k = b.labels.index(rel.split("/")[0])
            rng = np.random.default_rng(n)
            for name, level in CONTEXTS.items():
                post = b.frame_outputs(b.prepare(in_context(w, rate, level, rng), rate))[0].softmax(-1)
                smoothed, _ = detector.smooth(post.numpy()[None], detector.init_state(1))
                peaks[name].append(float(smoothed[0, :, k].max()))
        out[path] = {name: {"mean_peak": round(float(np.mean(v)), 4), "share_above_0.5": round(float(np.mean(np.array(v) > 0.5)), 4)}
                     for name, v in peaks.items()} | {"clips": len(chosen), "version": b.version}
        print(path, out[path])
    write_result("kws_context", {"root": a.root, "split": "validation", "window": WINDOW, "machine": machine(),
                                 "bundles": out})


if __name__ == "__main__":
    main()
