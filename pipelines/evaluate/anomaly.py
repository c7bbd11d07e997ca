"""Anomaly bundles: alarms against labelled anomaly intervals, streamed like a live sensor feed.

Input: a sensor table (series_id, [split,] time, channel columns, label: 0 normal / 1 anomaly per row[, kind]),
the layout ``make train CONFIG=configs/sensor_anomaly.yaml`` trains on. The ``test`` series (every series
outside the ``train`` and ``val`` splits) are evaluated, each one stream pushed in chunks of ``chunk_s``
seconds (at least one sample). The measures (:mod:`.anomaly_metrics`): event-level precision, recall,
delay and false alarms per hour at the bundle's threshold and over a threshold sweep, point ROC-AUC and
PR-AUC of the smoothed score, the UCR archive's rule, and the recall per anomaly kind where the table
names them.

``--calibrate X`` sets the threshold to the lowest swept value at which the ``val`` series raise at most X
false alarms per hour of their normal time (alarms outside their labelled anomalies), or without ``val``
series the normal ``train`` series at most X alarms per hour, and writes it into a new bundle version.
Training series underestimate the alarm rate of unseen data (the model has fitted them): ``val`` is the
better set.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ssm_signal.bundle import Bundle
from ssm_signal.data.sensor_tables import TableSeries, table_series
from ssm_signal.data.skips import DataError
from ssm_signal.events import DetectorConfig
from ssm_signal.streaming import StreamConfig, StreamEngine

from .anomaly_metrics import alarm_outcome, calibrated_threshold, intervals, quality, threshold_grid
from .job import write_calibrated
from .metrics import Laid
from .report import write_json
from .stream import stream_many

DEFAULT_TABLE = "data/sensor_anomaly/table.parquet"
FIT_SPLITS = ("train", "val")  # every other split is evaluated


def read_series(spec: str, channels: int, splits: tuple[str, ...] | None = None,
                exclude: tuple[str, ...] = ()) -> list[TableSeries]:
    """The series of ``spec`` in ``splits`` (None: all) and not in ``exclude``, each with per-row labels."""
    series = table_series(spec, channels, splits=splits, exclude=exclude)
    if any(s.label is None for s in series):
        raise DataError(f"{spec}: the table lacks the column 'label' (series_id, [split,] time, channels, label)")
    return series


def _stream(engine: StreamEngine, xs: list[np.ndarray], cfg) -> tuple[Laid, list[int], list]:
    rs = stream_many(engine, xs, engine.rate, max(cfg.stream.chunk_s, 1.0 / engine.rate), cfg.stream.batch)
    return Laid.of(engine.detector, [r.scores for r in rs]), [len(r.scores) for r in rs], rs


def calibrate_threshold(engine: StreamEngine, spec: str, target: float, tolerance: int, cfg) -> dict:
    """The lowest swept threshold at which ``spec``'s ``val`` series (or, without any, its normal ``train``
    series) raise at most ``target`` false alarms per hour of normal time; a record of how it was chosen."""
    series = read_series(spec, engine.in_channels, ("val",)) or read_series(spec, engine.in_channels, ("train",))
    if not series:
        raise DataError(f"{spec}: no 'val' or normal 'train' series to calibrate the alarm rate on")
    streamed = stream_many(engine, [s.x for s in series], engine.rate, max(cfg.stream.chunk_s, 1.0 / engine.rate),
                           cfg.stream.batch)
    theta, hours = calibrated_threshold(engine.detector, [r.scores for r in streamed], [s.label for s in series],
                                        engine.samples_per_frame, target, tolerance)
    return {"target_fa_per_hour": target, "threshold": theta, "split": series[0].split, "series": len(series),
            "normal_hours": hours, "source": spec}


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
        record = calibrate_threshold(engine, cfg.calibration_positives[0] if cfg.calibration_positives else spec,
                                     cfg.calibrate, tol, cfg)
        bundle, calibration = write_calibrated(bundle, cfg.calibrated_out,
                                               DetectorConfig(threshold=record["threshold"]).over(bundle.detector),
                                               record)
        engine = StreamEngine(bundle, config=StreamConfig(compile=False))
    series = read_series(spec, bundle.in_channels, exclude=FIT_SPLITS)
    if not series:
        raise DataError(f"{spec}: no series outside the 'train' and 'val' splits to evaluate")
    laid, frames, streamed = _stream(engine, [s.x for s in series], cfg)
    det, hop = engine.detector, engine.samples_per_frame
    truth = [intervals(s.label, hop, n) for s, n in zip(series, frames, strict=True)]
    live = sum(len(r.events) for r in streamed)
    measured = quality(det, [r.scores for r in streamed], [s.label for s in series], hop, float(det.thresholds[0]),
                       tol, [s.kind for s in series])
    if measured["at_threshold"]["alarms"] != live:
        raise RuntimeError(f"the sweep's detector disagrees with the live one ({live} vs "
                           f"{measured['at_threshold']['alarms']} alarms)")
    rows = []
    for th in threshold_grid(laid.best):
        o = alarm_outcome(det, laid, truth, frames, th, tol).as_dict()
        rows.append({"threshold": th, **{k: v for k, v in o.items() if k != "delay_s"},
                     "delay_median_s": o["delay_s"]["median"]})
    df = pd.DataFrame(rows)
    df.to_parquet(out / "det.parquet", index=False)
    _plot(df, measured["at_threshold"], out / "det.png", f"{bundle.name} {bundle.version}")
    at = measured.pop("at_threshold")
    summary = {"kind": "anomaly", "model": {"name": bundle.name, "version": bundle.version, "path": str(bundle.path)},
               "detector": {"smoothing_frames": det.window, "threshold": det.threshold,
                            "refractory_s": det.refractory_frames / det.frame_rate},
               "calibration": calibration,
               "sets": {Path(spec).name: {"source": spec, "series": len(series), "at_bundle_thresholds": at,
                                          **measured}},
               "skipped": {"count": 0, "by_reason": {}, "items": []},
               "timing": {"audio_hours": sum(frames) / engine.frame_rate / 3600,
                          "seconds": round(time.perf_counter() - t0, 1)}}
    write_json(out / "summary.json", summary)
    return summary


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
