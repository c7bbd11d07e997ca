"""Anomaly bundles: alarms against labelled anomaly intervals, streamed like a live sensor feed.

Input: a sensor table (series_id, [split,] time, channel columns, label: 0 normal / 1 anomaly per row),
the layout ``make train CONFIG=configs/sensor_anomaly.yaml`` trains on. The series that are not in the
``train`` split are evaluated (each one stream, pushed in chunks of ``chunk_s`` seconds, at least one
sample); the normal ``train`` series are what ``--calibrate`` looks at.

At a threshold, with intervals = runs of anomalous frames (a frame is anomalous if any of its samples is):
- an alarm is *true* if it falls in an interval or up to ``hit_window_s`` after its end, else *false*;
- precision = true alarms / alarms; recall = intervals with a true alarm / intervals (event level);
- delay = the first true alarm's time minus the interval's start;
- false alarms per hour = false alarms / hours of normal time (frames outside every interval and its tolerance).
``--calibrate X`` sets the threshold to the lowest swept value at which the normal series raise at most X
alarms per hour, and writes it into a new bundle version.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ssm_signal.bundle import Bundle
from ssm_signal.data.sensor_tables import read_table
from ssm_signal.data.skips import DataError
from ssm_signal.events import DetectorConfig, EventDetector
from ssm_signal.streaming import StreamConfig, StreamEngine

from .job import write_calibrated
from .metrics import Laid
from .report import write_json
from .stream import stream_many

DEFAULT_TABLE = "data/sensor_anomaly/table.parquet"
META = ("series_id", "split", "time", "label")


def read_series(spec: str, channels: int, train: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(signals (L, C) float32, labels (L,) int, series ids) of the ``train`` split (train=True) or the others."""
    table = read_table(spec)
    missing = {"series_id", "label"} - set(table.columns)
    if missing:
        raise DataError(f"{spec}: the table lacks the column(s) {sorted(missing)} (series_id, [split,] time, "
                        "channels, label)")
    cols = [c for c in table.columns if c not in META]
    if len(cols) != channels:
        raise DataError(f"{spec}: {len(cols)} channel columns {cols[:8]}, the model expects {channels}")
    if "split" in table.columns:
        table = table[(table["split"] == "train") == train]
    elif train:
        table = table.iloc[:0]
    if "time" in table.columns:
        table = table.sort_values(["series_id", "time"], kind="stable")
    xs, ys, ids = [], [], []
    for sid, g in table.groupby("series_id", sort=True):
        x = g[cols].to_numpy(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{spec}: series {sid!r} holds NaN or Inf values")
        xs.append(x)
        ys.append(pd.to_numeric(g["label"]).to_numpy().astype(np.int64))
        ids.append(str(sid))
    return xs, ys, ids


def intervals(labels: np.ndarray, hop: int, frames: int) -> list[tuple[int, int]]:
    """Runs [start, end) of frames holding an anomalous sample (frame f covers samples f*hop .. (f+1)*hop - 1)."""
    lab = labels[:frames * hop].reshape(frames, hop).max(1) > 0 if frames else np.zeros(0, bool)
    edges = np.diff(np.concatenate([[0], lab.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


@dataclasses.dataclass
class AlarmOutcome:
    alarms: int
    true_alarms: int
    intervals: int
    detected: int
    delays: list[float]
    false_alarms: int
    normal_hours: float

    def as_dict(self) -> dict:
        d = np.array(self.delays)
        return {"precision": self.true_alarms / self.alarms if self.alarms else None,
                "recall": self.detected / self.intervals if self.intervals else None,
                "alarms": self.alarms, "true_alarms": self.true_alarms, "intervals": self.intervals,
                "detected": self.detected, "false_alarms": self.false_alarms, "normal_hours": self.normal_hours,
                "false_alarms_per_hour": self.false_alarms / self.normal_hours if self.normal_hours else None,
                "delay_s": {"median": float(np.median(d)) if len(d) else None,
                            "p95": float(np.percentile(d, 95)) if len(d) else None}}


def alarm_outcome(det: EventDetector, laid: Laid, truth: list[list[tuple[int, int]]], frames: list[int],
                  threshold: float, tolerance: int) -> AlarmOutcome:
    stream, _, t = laid.events(det, np.array([threshold]))
    f = np.rint(t * det.frame_rate).astype(np.int64) - 1
    alarms = true = detected = false = 0
    delays, normal = [], 0
    for s, ivs in enumerate(truth):
        mine = f[stream == s]
        covered = np.zeros(frames[s], bool)
        hit = np.zeros(len(mine), bool)
        for a, b in ivs:
            covered[a:min(frames[s], b + tolerance)] = True
            inside = (mine >= a) & (mine < b + tolerance)
            hit |= inside
            if inside.any():
                detected += 1
                delays.append(float((mine[inside].min() - a) / det.frame_rate))
        alarms += len(mine)
        true += int(hit.sum())
        false += int((~hit).sum())
        normal += int((~covered).sum())
    return AlarmOutcome(alarms, true, sum(len(v) for v in truth), detected, delays, false,
                        normal / det.frame_rate / 3600)


def _stream(engine: StreamEngine, xs: list[np.ndarray], cfg) -> tuple[Laid, list[int], list]:
    rs = stream_many(engine, xs, engine.rate, max(cfg.stream.chunk_s, 1.0 / engine.rate), cfg.stream.batch)
    return Laid.of(engine.detector, [r.scores for r in rs]), [len(r.scores) for r in rs], rs


def evaluate_anomaly(cfg, bundle: Bundle) -> dict:
    t0 = time.perf_counter()
    spec = cfg.positives[0] if cfg.positives else DEFAULT_TABLE
    if not Path(spec).exists():
        raise DataError(f"{spec}: no such table (anomaly models: --positives TABLE with series_id, split, time, "
                        "channels, label)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = StreamEngine(bundle, config=StreamConfig(compile=False))
    tol = max(0, int(round(cfg.stream.hit_window_s * engine.frame_rate)))
    calibration = None
    if cfg.calibrate is not None:
        cal_spec = cfg.calibration_positives[0] if cfg.calibration_positives else spec
        xs, _, _ = read_series(cal_spec, bundle.in_channels, train=True)
        if not xs:
            raise DataError(f"{cal_spec}: no normal 'train' series to calibrate the alarm rate on")
        laid, frames, _ = _stream(engine, xs, cfg)
        grid = _grid(laid.best)
        rate = [alarm_outcome(engine.detector, laid, [[] for _ in xs], frames, th, tol).false_alarms
                / (sum(frames) / engine.frame_rate / 3600) for th in grid]
        ok = [th for th, r in zip(grid, rate, strict=True) if r <= cfg.calibrate + 1e-12]
        theta = float(ok[0] if ok else grid[-1])
        bundle, calibration = write_calibrated(
            bundle, cfg.calibrated_out, DetectorConfig(threshold=theta).over(bundle.detector),
            {"target_fa_per_hour": cfg.calibrate, "threshold": theta, "series": len(xs),
             "normal_hours": sum(frames) / engine.frame_rate / 3600, "source": cal_spec})
        engine = StreamEngine(bundle, config=StreamConfig(compile=False))
    xs, ys, ids = read_series(spec, bundle.in_channels, train=False)
    if not xs:
        raise DataError(f"{spec}: no series outside the 'train' split to evaluate")
    laid, frames, streamed = _stream(engine, xs, cfg)
    det = engine.detector
    truth = [intervals(y, engine.samples_per_frame, n) for y, n in zip(ys, frames, strict=True)]
    live = sum(len(r.events) for r in streamed)
    at_bundle = alarm_outcome(det, laid, truth, frames, float(det.thresholds[0]), tol)
    if at_bundle.alarms != live:
        raise RuntimeError(f"the sweep's detector disagrees with the live one ({live} vs {at_bundle.alarms} alarms)")
    rows = []
    for th in _grid(laid.best):
        o = alarm_outcome(det, laid, truth, frames, th, tol).as_dict()
        rows.append({"threshold": th, **{k: v for k, v in o.items() if k != "delay_s"},
                     "delay_median_s": o["delay_s"]["median"]})
    df = pd.DataFrame(rows)
    df.to_parquet(out / "det.parquet", index=False)
    _plot(df, at_bundle.as_dict(), out / "det.png", f"{bundle.name} {bundle.version}")
    summary = {"kind": "anomaly", "model": {"name": bundle.name, "version": bundle.version, "path": str(bundle.path)},
               "detector": {"smoothing_frames": det.window, "threshold": det.threshold,
                            "refractory_s": det.refractory_frames / det.frame_rate},
               "calibration": calibration,
               "sets": {Path(spec).name: {"source": spec, "series": len(xs), "at_bundle_thresholds": at_bundle.as_dict()}},
               "skipped": {"count": 0, "by_reason": {}, "items": []},
               "timing": {"audio_hours": sum(frames) / engine.frame_rate / 3600,
                          "seconds": round(time.perf_counter() - t0, 1)}}
    write_json(out / "summary.json", summary)
    return summary


def _grid(best: np.ndarray) -> np.ndarray:
    """Thresholds swept: 60 quantiles of the smoothed scores from the median up, and their maximum."""
    v = best[np.isfinite(best)]
    if not len(v):
        return np.array([0.0])
    return np.unique(np.concatenate([np.quantile(v, np.linspace(0.5, 1.0, 60)), [v.max()]]))


def _plot(df: pd.DataFrame, at: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(df["false_alarms_per_hour"], df["recall"], label="event recall")
    ax.plot(df["false_alarms_per_hour"], df["precision"], label="alarm precision")
    if at["false_alarms_per_hour"] is not None:
        ax.plot([at["false_alarms_per_hour"]], [at["recall"] or 0], "k*", ms=12, label="bundle's threshold")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("false alarms per hour (normal time)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
