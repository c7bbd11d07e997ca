"""Sensor anomaly detection: the causal SSM and aeon's detectors side by side, on the same streams and measures.

    make bench-sensor-env                                    # once: .venv-bench (aeon 1.6.0, pyod, stumpy)
    python benchmarks/bench_sensor_anomaly.py [--streams ucr135 daphnet sensor_anomaly] [--bundles artifacts]
    python benchmarks/bench_sensor_anomaly.py --select --streams ucr135        # how the SSM recipes were chosen
    python benchmarks/bench_sensor_anomaly.py --plot ucr135 --bundles artifacts # docs/img/sensor_ucr135.png

The streams are sensor tables with ``train`` (normal), ``val`` and ``test`` series: the UCR anomaly archive's
series 135 and Daphnet S06R02E0 from the aeon wheel (:mod:`ssm_signal.data.anomaly_streams`), and the generated
table (:mod:`ssm_signal.data.synthetic_sensors`). Per stream, in one run:

1. The SSM: ``configs/sensor_<stream>.yaml`` trained by the project's own training path (``pipelines.train.
   run_fit``, i.e. ``ssm-signal fit``, what ``make train CONFIG=...`` runs; MLflow, the registry and the progress
   bar off, the bundle in a temporary folder), or the bundle ``--bundles DIR/<name>`` made that way. Its val and
   test series are streamed through the StreamEngine in chunks, as a live session would (causal: a score
   never sees a later sample).
2. aeon's detectors (:data:`BASELINES`) in their own virtualenv (``benchmarks/aeon_baselines.py``; aeon is never
   a dependency of the project), fitted on the training series where they learn (semi-supervised), scoring the
   same val and test series offline (their windows see both sides of a point).
3. Choices on val only: each baseline's window length is the one of :data:`BASELINES`' grid with the highest
   val ROC-AUC; every detector's alarm threshold, the SSM's included, is the one with the best event F1 on the
   val series (:func:`pipelines.evaluate.anomaly_metrics.best_f1_threshold`).
4. Test: point ROC-AUC and PR-AUC, the UCR archive's rule, and event precision, recall, delay and false alarms
   per hour at that threshold, all by :func:`pipelines.evaluate.anomaly_metrics.quality`, identically for all.

``--select`` trains the SSM recipes of :data:`CANDIDATES` with seeds 0-2 and ranks them by their mean val ROC-AUC
(the test series are never read). Writes ``benchmarks/results/sensor_anomaly_<date>.json`` (``_selection`` for --select).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import machine, write_result  # noqa: E402

STREAMS = {
    # hit window: how long after a labelled anomaly an alarm still counts (the UCR rule's own 100 points for 135)
    "ucr135": {"config": "configs/sensor_ucr135.yaml", "table": "data/anomaly_streams/ucr135/table.parquet",
               "windows": [16, 64, 192], "hit_window_s": 100.0},
    "daphnet": {"config": "configs/sensor_daphnet.yaml", "table": "data/anomaly_streams/daphnet/table.parquet",
                "windows": [16, 64, 128], "hit_window_s": 0.5},
    "sensor_anomaly": {"config": "configs/sensor_anomaly.yaml", "table": "data/sensor_anomaly/table.parquet",
                       "windows": [16, 64, 128], "hit_window_s": 10.0},
}
# (aeon class, how it is fitted, fixed parameters); each runs with every window of its stream's grid.
# MERLIN's window is its longest discord (its shortest: a quarter of it).
BASELINES = {
    "LOF": ("LOF", "semi", {"n_neighbors": 20}),
    "KMeansAD": ("KMeansAD", "semi", {"n_clusters": 20, "random_state": 0}),
    "IsolationForest": ("IsolationForest", "semi", {"random_state": 0}),
    "CBLOF": ("CBLOF", "semi", {"random_state": 0}),
    "COPOD": ("COPOD", "semi", {}),
    "LeftSTAMPi": ("LeftSTAMPi", "seeded", {}),
    "STOMP": ("STOMP", "unsupervised", {}),
    "MERLIN": ("MERLIN", "unsupervised", {}),
}
UNIVARIATE = ("LeftSTAMPi", "STOMP", "MERLIN")
# the baselines learn from at most this many training samples (the generated table has 240,000); LeftSTAMPi's
# matrix profile starts from the last SEED of them (its cost grows with the square of the length)
MAX_TRAIN = 20_000
SEED = 3_000
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
         "false", "--output.register", "false"]
# --select: recipes (overrides of the shipped config, "shipped" = none) compared on val ROC-AUC
H = "--model.network.head.horizons"
W = "--model.network.head.score_window"
D = "--model.network.frontend.decimate"
M = "--model.network.head.memory"
S = ["--model.network.frontend.spread", "true"]
NS = ["--model.network.frontend.spread", "false"]  # the UCR recipes compared before the spread feature existed
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "sensor_anomaly": {
        "shipped": [],
        "next-frame forecaster, one-sided (the former recipe's head)": [H, "[1]", W, "1"],
        "horizons 1-16": [H, "[1, 2, 4, 8, 16]"],
        "one-sided (score window 1)": [W, "1"],
        "frames of 2 steps, horizons 1-32": [D, "2", H, "[1, 2, 4, 8, 16, 32]"],
        "10 epochs": ["--trainer.max_epochs", "10"],
        # 2026-12-06: a frame's mean absolute step (spread) sees a sensor that stops moving (0) and a rhythm played
        # faster or slower (larger or smaller steps), the two kinds the shipped recipe misses most
        "frames of 2 steps with spread, horizons 1-32": [D, "2", *S, H, "[1, 2, 4, 8, 16, 32]"],
        "frames of 4 steps with spread, horizons 1-16": [D, "4", *S, H, "[1, 2, 4, 8, 16]"],
    },
    "ucr135": {
        "shipped": [],
        "without spread": NS,
        "without spread, frames of 1 point, horizons 1-64": [*NS, D, "1", H, "[1, 2, 4, 8, 16, 32, 64]"],
        "without spread, frames of 2 points, horizons 1-32": [*NS, D, "2", H, "[1, 2, 4, 8, 16, 32]"],
        "without spread, horizons 1-32": [*NS, H, "[1, 2, 4, 8, 16, 32]"],
        "without spread, frames of 8 points, horizons 1-8": [*NS, D, "8", H, "[1, 2, 4, 8]"],
        "horizons 1-32 (spread)": [H, "[1, 2, 4, 8, 16, 32]"],
        "frames of 2 points, horizons 1-32 (spread)": [D, "2", H, "[1, 2, 4, 8, 16, 32]"],
        "frames of 8 points, horizons 1-8 (spread)": [D, "8", H, "[1, 2, 4, 8]"],
        # 2026-12-07: the two-sided score (errors too large or too small), for the kinds it ranks lowest on val
        # (frozen, drift); tried on Daphnet and on the generated table before, never here
        "score window 4 (two-sided)": [W, "4"],
        "score window 8 (two-sided)": [W, "8"],
        # 2026-12-07: the nearest normal hidden state's distance added to the score (head.memory), adopted by the
        # rule of sensor_anomaly_selection_state_neighbours_20261207.json (shipped since); the recipe before it
        "without memory": [M, "0"],
    },
    "daphnet": {
        "shipped": [],
        "horizons 1-8": [H, "[1, 2, 4, 8]"],
        "frames of 4 samples": [D, "4"],
        "frames of 1 sample, horizons 1-32": [D, "1", H, "[1, 2, 4, 8, 16, 32]"],
        "spread": S,
        "score window 4": [W, "4"],
        "without memory": [M, "0"],
    },
}
SELECT_SEEDS = [0, 1, 2]
# --select also reads each run's val scores as a detector with a fixed latency would: frame t judged by the largest
# of its score and the next k frames' (alarms k frames late); what that would buy, before building it
LOOKAHEADS = (1, 2, 4)


# --select also reads a second score beside the forecast error, from the same weights, before it was built (it is
# now the anomaly head's ``memory``): the squared distance of a frame's hidden state h_t (the backbone's output) to
# the nearest of the normal training frames' (at most BANK of them), over its mean among the training frames
# themselves (each against the others): ssm_signal.models.heads.memory_bank and nearest_state
BANK = 4000
SEEN = {"ucr135": 900}  # val points that are also training points (read apart: a memory of them scores them ~0)


def state_neighbours(model, train: list, series: list) -> list[np.ndarray]:
    """Frame scores (F_i, 1): the distance of each frame's hidden state to the bank of the training series' states
    (the states the head's memory keeps) over the bank's scale, with no frame left unscored."""
    from pipelines.task import memory_states
    from ssm_signal.models.heads import memory_bank, nearest_state

    bank, scale = memory_bank(memory_states(model, [s.x.copy() for s in train]), BANK)
    with torch.no_grad():
        hidden = [model.forward_parts(torch.tensor(s.x, dtype=torch.float32)[None]).hidden[0] for s in series]
    return [(nearest_state(h, bank) / scale).numpy()[:, None] for h in hidden]


def looking_ahead(score: np.ndarray, k: int) -> np.ndarray:
    """Frame scores (F, 1) -> (F, 1): frame t's the largest of frames t .. t + k (the last frames: of those there)."""
    x = np.concatenate([score[:, 0], np.full(k, score[-1, 0] if len(score) else 0.0)])
    return np.max(np.stack([x[j:j + len(score)] for j in range(k + 1)]), 0)[:, None].astype(score.dtype)


# -- the SSM ----------------------------------------------------------------------------------------------------
def train(stream: str, extra: list[str], out: Path) -> tuple[Path, dict]:
    """``ssm-signal fit`` on the stream's config into ``out``; the bundle path and timings."""
    from pipelines.train import run_fit

    cfg = STREAMS[stream]
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    r = run_fit(["--config", str(ROOT / cfg["config"]), *QUIET, "--output.bundle_dir", str(out / "bundle"),
                 "--trainer.default_root_dir", str(out / "runs"), "--output.test", "false", *extra])
    return out / "bundle", {"fit_seconds": r["metrics"]["fit_seconds"], "wall_seconds": time.perf_counter() - t0,
                            "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def ssm_scores(bundle_dir: Path, series: list) -> tuple[list[np.ndarray], object]:
    """Frame scores (F_i, 1) of each series streamed through the bundle's engine in 1 s chunks; the engine."""
    from pipelines.evaluate.stream import stream_many
    from ssm_signal import load_bundle
    from ssm_signal.streaming import StreamConfig, StreamEngine

    engine = StreamEngine(load_bundle(bundle_dir), config=StreamConfig(compile=False))
    streamed = stream_many(engine, [s.x for s in series], engine.rate, 1.0, batch=64)
    return [r.scores for r in streamed], engine


# -- the baselines ----------------------------------------------------------------------------------------------
def baseline_scores(stream: str, train: list, series: list, python: Path, names: list[str],
                    cache: Path | None = None) -> dict[str, dict]:
    """{detector: {window: (scores per series (L_i,), seconds, undefined values) or an error}} from
    aeon_baselines.py in the bench venv. ``cache``: a folder keeping each worker's output under a hash of its jobs
    and data, so a rerun that changes only the SSM does not score the baselines again (they are deterministic)."""
    x = np.concatenate([s.x for s in train])[:MAX_TRAIN]
    jobs = []
    for name in names:
        cls, mode, params = BASELINES[name]
        for w in STREAMS[stream]["windows"]:
            p = {"min_length": max(4, w // 4), "max_length": w} if cls == "MERLIN" else {"window_size": w}
            jobs.append({"key": f"{name}@{w}", "detector": cls, "mode": mode, "params": {**params, **p},
                         "seed": SEED})
    with tempfile.TemporaryDirectory(prefix="bench_sensor_") as tmp:
        np.savez(f"{tmp}/streams.npz", train=x, **{f"series_{i}": s.x for i, s in enumerate(series)})
        Path(f"{tmp}/jobs.json").write_text(json.dumps(jobs))
        key = hashlib.sha256(Path(f"{tmp}/jobs.json").read_bytes() + Path(f"{tmp}/streams.npz").read_bytes())
        cached = cache / f"{stream}_{key.hexdigest()[:16]}.npz" if cache else None
        if cached is None or not cached.is_file():
            subprocess.run([str(python), str(ROOT / "benchmarks/aeon_baselines.py"), f"{tmp}/jobs.json",
                            f"{tmp}/streams.npz", f"{tmp}/scores.npz"], check=True)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f"{tmp}/scores.npz", cached)
        got = dict(np.load(cached if cached is not None else f"{tmp}/scores.npz"))
    out: dict[str, dict] = {}
    for job in jobs:
        name, w = job["key"].split("@")
        if f"{job['key']}/error" in got:
            out.setdefault(name, {})[int(w)] = str(got[f"{job['key']}/error"])
            continue
        out.setdefault(name, {})[int(w)] = ([got[f"{job['key']}/{i}"] for i in range(len(series))],
                                            float(got[f"{job['key']}/seconds"]),
                                            sum(int(got[f"{job['key']}/{i}/undefined"]) for i in range(len(series))))
    return out


# -- measures ---------------------------------------------------------------------------------------------------
def measure(det, scores: list[np.ndarray], val: list, test: list, hop: int, tolerance: int) -> dict:
    """Val ROC-AUC, the threshold chosen on val (the best event F1 there), and every test measure at it."""
    from pipelines.evaluate.anomaly_metrics import best_f1_threshold, quality

    v_scores, t_scores = scores[:len(val)], scores[len(val):]
    v = quality(det, v_scores, [s.label for s in val], hop, np.inf, tolerance)
    theta, f1 = best_f1_threshold(det, v_scores, [s.label for s in val], hop, tolerance)
    t = quality(det, t_scores, [s.label for s in test], hop, theta, tolerance, [s.kind for s in test])
    return {"val_roc_auc": v["roc_auc"], "val_pr_auc": v["pr_auc"], "val_event_f1": f1, "test": t}


def sample_detector(rate: int, refractory_s: float):
    """The event detector applied to a baseline's per-sample scores: no smoothing, the SSM's refractory period."""
    from ssm_signal.events import DetectorConfig, EventDetector

    return EventDetector("anomaly", ["anomaly"], rate, DetectorConfig(smoothing_frames=1, refractory_s=refractory_s))


def run_stream(stream: str, args) -> dict:
    from ssm_signal.data.sensor_tables import table_series

    cfg = STREAMS[stream]
    table = ensure_table(stream)
    train_s = table_series(table, splits=["train"])
    val = table_series(table, splits=["val"])
    test = table_series(table, exclude=["train", "val"])
    with tempfile.TemporaryDirectory(prefix="bench_sensor_ssm_") as tmp:
        if args.bundles:
            bundle, fit = Path(args.bundles) / Path(cfg["config"]).stem, None
        else:
            bundle, fit = train(stream, [], Path(tmp))
        t0 = time.perf_counter()
        scores, engine = ssm_scores(bundle, val + test)
        stream_s = time.perf_counter() - t0
        det, hop = engine.detector, engine.samples_per_frame
        tol = int(round(cfg["hit_window_s"] * engine.frame_rate))
        ssm = {"model": {"name": engine.bundle.name, "version": engine.bundle.version, "config": cfg["config"],
                         "parameters": sum(p.numel() for p in engine.model.parameters()),
                         "detector": {"smoothing_frames": det.window,
                                      "refractory_s": det.refractory_frames / det.frame_rate}},
               "fit": fit, "stream_seconds": stream_s, **measure(det, scores, val, test, hop, tol)}
    out = {"table": cfg["table"], "series": {"train": len(train_s), "val": len(val), "test": len(test)},
           "hit_window_s": cfg["hit_window_s"], "ssm": ssm, "baselines": {}}
    # the univariate-only detectors (matrix profile, discords) on univariate streams: on C channels each runs C
    # times, and LeftSTAMPi's incremental profile already takes minutes per window on one channel here
    names = [n for n in BASELINES if n not in (args.skip or []) and (n not in UNIVARIATE or test[0].x.shape[1] == 1)]
    if names:
        bl = baseline_scores(stream, train_s, val + test, Path(args.aeon_python), names,
                             Path(args.cache) if args.cache else None)
        bdet = sample_detector(engine.rate, det.refractory_frames / det.frame_rate)
        btol = int(round(cfg["hit_window_s"] * engine.rate))
        for name, by_window in bl.items():
            failed = {str(w): r for w, r in by_window.items() if isinstance(r, str)}
            tried = {w: measure(bdet, [x[:, None] for x in r[0]], val, test, 1, btol) | {"seconds": r[1],
                                                                                         "undefined": r[2]}
                     for w, r in by_window.items() if not isinstance(r, str)}
            if not tried:
                out["baselines"][name] = {"failed": failed}
                continue
            best = max(tried, key=lambda w: (tried[w]["val_roc_auc"] or 0.0, -w))
            out["baselines"][name] = {"window": best, "val_roc_auc_by_window": {
                str(w): r["val_roc_auc"] for w, r in tried.items()}, **tried[best], "failed": failed}
    roc = {k: v["test"]["roc_auc"] for k, v in out["baselines"].items() if "test" in v}
    out["summary"] = {"ssm_test_roc_auc": ssm["test"]["roc_auc"],
                      "best_baseline": max(roc, key=lambda k: roc[k] or 0.0) if roc else None,
                      "best_baseline_test_roc_auc": max((r or 0.0) for r in roc.values()) if roc else None,
                      "ssm_ucr_rule": ssm["test"]["ucr_rule"]["solved"], "ucr_series": ssm["test"]["ucr_rule"]["series"]}
    return out


def ensure_table(stream: str) -> Path:
    """The stream's table, written first if absent (fetched from the aeon wheel, or generated)."""
    path = ROOT / STREAMS[stream]["table"]
    if not path.is_file():
        if stream == "sensor_anomaly":
            from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table

            make_sensor_anomaly_table(path)
        else:
            from ssm_signal.data.anomaly_streams import make_stream_table

            make_stream_table(stream, path)
    return path


# -- recipe selection -------------------------------------------------------------------------------------------
def select(stream: str, names: list[str] | None = None) -> dict:
    from pipelines.evaluate.anomaly_metrics import frame_labels, point_metrics, quality
    from ssm_signal import load_bundle
    from ssm_signal.data.sensor_tables import table_series

    cfg = STREAMS[stream]
    val = table_series(ensure_table(stream), splits=["val"])
    train_s = table_series(ensure_table(stream), splits=["train"])

    rows = {}
    for name, extra in CANDIDATES[stream].items():
        if names and name not in names:
            continue
        runs = []
        for seed in SELECT_SEEDS:
            with tempfile.TemporaryDirectory(prefix="bench_sensor_select_") as tmp:
                bundle, fit = train(stream, [*extra, "--seed_everything", str(seed)], Path(tmp))
                scores, engine = ssm_scores(bundle, val)
                near = state_neighbours(load_bundle(bundle).model.eval(), train_s, val)
            tol, hop = int(round(cfg["hit_window_s"] * engine.frame_rate)), engine.samples_per_frame
            labels, kinds = [s.label for s in val], [s.kind for s in val]
            q = quality(engine.detector, scores, labels, hop, np.inf, tol, kinds)
            ahead = {k: quality(engine.detector, [looking_ahead(x, k) for x in scores], labels, hop, np.inf,
                                tol)["roc_auc"] for k in LOOKAHEADS}
            unseen = SEEN.get(stream, 0) // hop
            second = {}
            for score_name, sc in {"forecast": scores, "neighbour": near,
                                   "forecast + neighbour": [a + b for a, b in zip(scores, near, strict=True)]}.items():
                r = q if score_name == "forecast" else quality(engine.detector, sc, labels, hop, np.inf, tol, kinds)
                second[score_name] = {"val_roc_auc": r["roc_auc"], "by_kind": r.get("roc_auc_by_kind"),
                                      "unseen_frames": r["roc_auc"]}
                if unseen:
                    second[score_name]["unseen_frames"] = point_metrics([x[unseen:, 0] for x in sc], [
                        frame_labels(y, hop, len(x))[unseen:] for x, y in zip(sc, labels, strict=True)])["roc_auc"]
            runs.append({"seed": seed, "val_roc_auc": q["roc_auc"], "val_pr_auc": q["pr_auc"],
                         "val_roc_auc_by_kind": q.get("roc_auc_by_kind"), "val_roc_auc_lookahead": ahead,
                         "val_state_neighbours": second, **fit})
        mean = float(np.mean([r["val_roc_auc"] for r in runs]))
        rows[name] = {"overrides": extra, "val_roc_auc_mean": mean, "runs": runs, "val_roc_auc_lookahead_mean": {
            k: float(np.mean([r["val_roc_auc_lookahead"][k] for r in runs])) for k in LOOKAHEADS},
            "val_state_neighbours_mean": {n: {m: float(np.mean([r["val_state_neighbours"][n][m] for r in runs]))
                                              for m in ("val_roc_auc", "unseen_frames")}
                                          for n in runs[0]["val_state_neighbours"]}}
        print(f"{stream} {name}: val ROC-AUC {mean:.4f} (seeds {[round(r['val_roc_auc'], 4) for r in runs]})",
              flush=True)
    return rows


# -- the docs' plot ---------------------------------------------------------------------------------------------
def plot(stream: str, bundles: str, out: Path) -> None:
    """The stream's first test series replayed through its bundle, drawn as the demo draws it."""
    from app.figures import replay_figure
    from ssm_signal import load_bundle
    from ssm_signal.data.sensor_tables import table_series
    from ssm_signal.streaming import StreamConfig, StreamEngine
    from ssm_signal.streaming.replay import Replay, read_recording

    engine = StreamEngine(load_bundle(Path(bundles) / Path(STREAMS[stream]["config"]).stem),
                          config=StreamConfig(compile=False))
    table = ensure_table(stream)
    first = table_series(table, exclude=["train", "val"])[0].series_id
    replay = Replay(engine, read_recording(table, engine, first), speed=1000)
    view = list(replay.play(sleep=lambda s: None))[-1]
    fig = replay_figure(view)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}: {len(view.alarms)} alarms, labelled {view.labelled}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    p.add_argument("--bundles", help="take the SSMs from DIR/<config name> (e.g. artifacts) instead of training")
    p.add_argument("--aeon-python", default=str(ROOT / ".venv-bench/bin/python"),
                   help="the benchmark virtualenv's python, with aeon (make bench-sensor-env)")
    p.add_argument("--skip", nargs="*", choices=list(BASELINES), help="baselines to leave out")
    p.add_argument("--cache", help="keep the baselines' scores in this folder and reuse them (same jobs and data)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the CPU is shared)")
    p.add_argument("--select", action="store_true", help="rank the SSM recipes of CANDIDATES on val instead")
    p.add_argument("--candidates", nargs="+", help="with --select: only these recipes (names of CANDIDATES)")
    p.add_argument("--name", help="the result file's name before its date (default: sensor_anomaly, or "
                   "sensor_anomaly_selection with --select)")
    p.add_argument("--plot", choices=list(STREAMS), help="draw this stream's test series with its bundle (--bundles)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import pipelines.train  # noqa: F401  (imports Lightning, which sets its loggers' levels: quieten them after)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*args parameter is intended.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", pattern)
    if args.plot:
        if not args.bundles:
            p.error("--plot needs --bundles (the trained bundles' folder)")
        plot(args.plot, args.bundles, ROOT / "docs/img" / f"sensor_{args.plot}.png")
        return
    if not args.select and not args.skip == list(BASELINES) and not Path(args.aeon_python).is_file():
        p.error(f"{args.aeon_python} is missing: make bench-sensor-env creates the baselines' virtualenv")
    results = {}
    for stream in args.streams:
        results[stream] = select(stream, args.candidates) if args.select else run_stream(stream, args)
        if not args.select:
            s = results[stream]["summary"]
            print(f"{stream}: SSM test ROC-AUC {s['ssm_test_roc_auc']:.4f}; best aeon baseline {s['best_baseline']} "
                  f"{s['best_baseline_test_roc_auc']:.4f}; UCR rule {s['ssm_ucr_rule']}/{s['ucr_series']}", flush=True)
    payload = {"benchmark": "sensor_anomaly_selection" if args.select else "sensor_anomaly", "machine": machine(),
               "threads": args.threads, "command": " ".join(["python", *sys.argv]),
               "protocol": __doc__.split("\n\n", 2)[2].split("``--select``")[0].strip(),
               "configs": {s: (ROOT / STREAMS[s]["config"]).read_text() for s in args.streams}, "streams": results}
    write_result(args.name or ("sensor_anomaly_selection" if args.select else "sensor_anomaly"), payload)


if __name__ == "__main__":
    main()
