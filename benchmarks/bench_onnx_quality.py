"""What the ONNX export (float32 and int8) does to a keyword bundle's quality, against the torch model.

    python benchmarks/bench_onnx_quality.py [--model artifacts/kws_default] [--export DIR] [--quick]
        [--runtimes torch onnx_float32 onnx_int8]

Run from the repository root, where ``data/keywords`` (the generated keyword set) and ``data/negatives``
(the generated negative corpus) are (``make train`` and ``make evaluate`` make them). Three runtimes,
each measured by the project's own jobs:

1. clip accuracy on the test split (``data/keywords/testing_list.txt``): ``ssm-signal score`` with
   ``--runtime torch``, ``--runtime onnx`` and ``--runtime onnx --precision int8``;
2. detection on streamed audio: ``ssm-signal evaluate`` with the same three runtimes, the test voices as
   positives and the test half of the negative corpus as negatives (the defaults of ``make evaluate``
   without the real recordings): FRR and FA/h at the bundle's calibrated thresholds, and the pooled
   FRR at 0.5 FA/h read off the threshold sweep (the DET curve);
3. the graphs' file sizes.

The export is written to ``--export`` (default: a temporary folder) unless it holds one of this bundle.
Writes benchmarks/results/onnx_quality_<date>.json. ``--quick``: 60 test clips and 2 negative sources.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, write_result  # noqa: E402

from pipelines.errors import UsageError  # noqa: E402
from pipelines.evaluate import EvaluateConfig, evaluate  # noqa: E402
from pipelines.evaluate.job import KEYWORD_ROOT  # noqa: E402
from pipelines.export import export_onnx  # noqa: E402
from pipelines.export.job import open_export  # noqa: E402
from pipelines.score import ScoreConfig, score  # noqa: E402
from ssm_signal import load_bundle  # noqa: E402
from ssm_signal.runtime import read_sidecar  # noqa: E402

RUNTIMES = {"torch": {}, "onnx_float32": {"runtime": "onnx"}, "onnx_int8": {"runtime": "onnx", "precision": "int8"}}


def ensure_export(bundle, export: Path) -> Path:
    """``export`` holding this bundle's graphs: the one there if it was exported from this model
    (``open_export``'s check), else a new export."""
    try:
        open_export(bundle, export)
    except UsageError:
        export_onnx(bundle, export)
    return export


def clip_accuracy(model: str, export: Path, tmp: Path, positives: str, runtimes: dict) -> dict:
    out = {}
    for name, kw in runtimes.items():
        t0 = time.perf_counter()
        s = score(ScoreConfig(model=model, input=positives, output=str(tmp / f"scores_{name}.parquet"), num_workers=0,
                              accelerator="cpu", mlflow=False, onnx=str(export) if kw else None, **kw))
        out[name] = {"accuracy": s["accuracy"], "files": s["files"], "ok": s["ok"],
                     "seconds": round(time.perf_counter() - t0, 1)}
    return out


def detection(model: str, export: Path, tmp: Path, positives: str, negatives: list[str], runtimes: dict) -> dict:
    out = {}
    for name, kw in runtimes.items():
        t0 = time.perf_counter()
        s = evaluate(EvaluateConfig(model=model, positives=[positives], negatives=negatives,
                                    out=str(tmp / f"eval_{name}"), onnx=str(export) if kw else None, **kw))
        (pos,) = s["sets"].values()
        neg = s["negatives"]["at_bundle_thresholds"]
        at = pos["operating_points"]["0.5"]["pooled"]
        out[name] = {"at_bundle_thresholds": {"frr": pos["at_bundle_thresholds"]["frr"],
                                              "clips": pos["at_bundle_thresholds"]["clips"],
                                              "false_accepts": neg["false_accepts"], "fa_per_hour": neg["fa_per_hour"],
                                              "negative_hours": neg["hours"]},
                     "at_0.5_fa_per_hour": at, "seconds": round(time.perf_counter() - t0, 1)}
    return out


def quick_manifest(tmp: Path, n_clips: int) -> str:
    """Every k-th clip of the test split as a manifest (path,label) in ``tmp``: data/ is only read."""
    root = Path(KEYWORD_ROOT).resolve()
    lines = (root / "testing_list.txt").read_text().splitlines()
    picked = lines[:: max(1, len(lines) // n_clips)][:n_clips]
    path = tmp / "quick.csv"
    path.write_text("path,label\n" + "".join(f"{root / p},{p.split('/')[0]}\n" for p in picked))
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="artifacts/kws_default")
    p.add_argument("--export", default=None, help="the export's folder (default: a temporary one)")
    p.add_argument("--quick", action="store_true", help="60 test clips, 2 negative sources")
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES),
                   help="which to measure (torch, the baseline, always is)")
    a = p.parse_args()
    runtimes = {n: RUNTIMES[n] for n in RUNTIMES if n == "torch" or n in a.runtimes}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bundle = load_bundle(a.model)
        export = ensure_export(bundle, Path(a.export) if a.export else tmp / "onnx")
        positives = str(Path(KEYWORD_ROOT) / "testing_list.txt")
        negatives: list[str] = []
        if a.quick:
            from pipelines.evaluate.job import _default_negatives

            positives = quick_manifest(tmp, 60)
            negatives = _default_negatives("test", bundle.labels)[:2]
        sc = read_sidecar(export)
        sizes = {f: (export / f).stat().st_size for g in sc.graphs.values() for f in g.values()}
        acc = clip_accuracy(a.model, export, tmp, positives, runtimes)
        det = detection(a.model, export, tmp, positives, negatives, runtimes)

    def delta(d: dict, key, base="torch") -> dict:
        return {n: None if key(v) is None or key(d[base]) is None else round(100 * (key(v) - key(d[base])), 3)
                for n, v in d.items() if n != base}

    payload = {
        "machine": machine(), "model": {"path": a.model, "name": bundle.name, "version": bundle.version,
                                         "parameters": sum(p.numel() for p in bundle.model.parameters())},
        "quick": a.quick, "positives": positives, "negatives": negatives or "the test half of data/negatives",
        "clip_accuracy": acc, "detection": det,
        "accuracy_change_points": delta(acc, lambda v: v["accuracy"]),
        "frr_change_points_at_bundle_thresholds": delta(det, lambda v: v["at_bundle_thresholds"]["frr"]),
        "frr_change_points_at_0.5_fa_per_hour": delta(det, lambda v: (v["at_0.5_fa_per_hour"] or {}).get("frr")),
        "file_bytes": sizes, "int8_size_ratio": {g: sizes[f["int8"]] / sizes[f["float32"]]
                                                 for g, f in sc.graphs.items() if "int8" in f},
    }
    write_result("onnx_quality_quick" if a.quick else "onnx_quality", payload)
    print({k: payload[k] for k in ("accuracy_change_points", "frr_change_points_at_bundle_thresholds",
                                   "frr_change_points_at_0.5_fa_per_hour", "int8_size_ratio")})


if __name__ == "__main__":
    main()
