"""Anomaly detection quality of per-frame scores against per-sample labels: the one set of definitions that
``ssm-signal evaluate`` applies to anomaly bundles and ``benchmarks/bench_sensor_anomaly.py`` applies to every
detector it compares (the SSM's streamed scores and the baselines' alike).

Frames: frame f covers samples f*hop .. (f+1)*hop - 1 and is anomalous if any of them is. The scores are
smoothed by the :class:`~ssm_signal.events.EventDetector` (its moving average: what the live alarms threshold).

- Event level, at a threshold (:func:`alarm_outcome`), with intervals = runs of anomalous frames: an alarm is
  *true* if it falls in an interval or up to ``tolerance`` frames after its end, else *false*; precision =
  true alarms / alarms; recall = intervals with a true alarm / intervals; delay = the first true alarm's time
  minus the interval's start; false alarms per hour = false alarms / hours outside every interval and its
  tolerance.
- Point level, over every frame of every series (:func:`point_metrics`): ROC-AUC and PR-AUC (average precision)
  of the smoothed score against the frame labels.
- The UCR anomaly archive's rule (:func:`ucr_rule`; Wu and Keogh, "Current time series anomaly detection
  benchmarks are flawed and are creating the illusion of progress", IEEE TKDE 2021): a series is solved when its
  highest score lies within ``margin`` samples (100) of its labelled range.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from ssm_signal.events import EventDetector

from .metrics import Laid

UCR_MARGIN = 100


def frame_labels(labels: np.ndarray, hop: int, frames: int) -> np.ndarray:
    """Per-sample labels (L,) -> per-frame (frames,) bool: a frame holding an anomalous sample is anomalous."""
    if frames == 0:
        return np.zeros(0, bool)
    return labels[:frames * hop].reshape(frames, hop).max(1) > 0


def intervals(labels: np.ndarray, hop: int, frames: int) -> list[tuple[int, int]]:
    """Runs [start, end) of frames holding an anomalous sample (frame f covers samples f*hop .. (f+1)*hop - 1)."""
    edges = np.diff(np.concatenate([[0], frame_labels(labels, hop, frames).astype(np.int8), [0]]))
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
    hits: list[bool] = dataclasses.field(default_factory=list)  # per interval, in series then time order

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
    """The event-level outcome of the detector at ``threshold`` over streams laid end to end (``laid``),
    whose anomalous frame runs are ``truth`` and lengths ``frames``."""
    stream, _, t = laid.events(det, np.array([threshold]))
    f = np.rint(t * det.frame_rate).astype(np.int64) - 1
    alarms = true = detected = false = 0
    delays, normal, hits = [], 0, []
    for s, ivs in enumerate(truth):
        mine = f[stream == s]
        covered = np.zeros(frames[s], bool)
        hit = np.zeros(len(mine), bool)
        for a, b in ivs:
            covered[a:min(frames[s], b + tolerance)] = True
            inside = (mine >= a) & (mine < b + tolerance)
            hit |= inside
            hits.append(bool(inside.any()))
            if inside.any():
                detected += 1
                delays.append(float((mine[inside].min() - a) / det.frame_rate))
        alarms += len(mine)
        true += int(hit.sum())
        false += int((~hit).sum())
        normal += int((~covered).sum())
    return AlarmOutcome(alarms, true, sum(len(v) for v in truth), detected, delays, false,
                        normal / det.frame_rate / 3600, hits)


def threshold_grid(best: np.ndarray) -> np.ndarray:
    """Thresholds swept: 60 quantiles of the smoothed scores from the median up, and their maximum."""
    v = best[np.isfinite(best)]
    if not len(v):
        return np.array([0.0])
    return np.unique(np.concatenate([np.quantile(v, np.linspace(0.5, 1.0, 60)), [v.max()]]))


def calibrated_threshold(det: EventDetector, scores: list[np.ndarray], labels: list[np.ndarray], hop: int,
                         target: float, tolerance: int) -> tuple[float, float]:
    """The lowest swept threshold (:func:`threshold_grid`) at which the series raise at most ``target`` false
    alarms per hour of their normal time (alarms outside their labelled anomalies and tolerance), else the
    highest; returns it and the normal hours it was measured on."""
    laid = Laid.of(det, scores)
    frames = [len(s) for s in scores]
    truth = [intervals(y, hop, n) for y, n in zip(labels, frames, strict=True)]
    grid = threshold_grid(laid.best)
    hours = 0.0
    for th in grid:
        o = alarm_outcome(det, laid, truth, frames, th, tolerance)
        hours = o.normal_hours
        if o.normal_hours and o.false_alarms / o.normal_hours <= target + 1e-12:
            return float(th), hours
    return float(grid[-1]), hours


def best_f1_threshold(det: EventDetector, scores: list[np.ndarray], labels: list[np.ndarray], hop: int,
                      tolerance: int) -> tuple[float, float]:
    """The swept threshold (:func:`threshold_grid`) with the best event-level F1 (alarm precision and event
    recall) on labelled series, the lowest on ties; returns it and its F1 (0 where nothing is detected)."""
    laid = Laid.of(det, scores)
    frames = [len(s) for s in scores]
    truth = [intervals(y, hop, n) for y, n in zip(labels, frames, strict=True)]
    best = (-1.0, 0.0)
    for th in threshold_grid(laid.best):
        o = alarm_outcome(det, laid, truth, frames, th, tolerance)
        p = o.true_alarms / o.alarms if o.alarms else 0.0
        r = o.detected / o.intervals if o.intervals else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best[0]:
            best = (f1, float(th))
    return best[1], best[0]


def unit_interval(scores: torch.Tensor) -> torch.Tensor:
    """Scores of any range mapped into (0, 1) in float64 by the increasing s -> (1 + s / (1 + |s|)) / 2, for
    torchmetrics' binary ROC-AUC and average precision: given any value outside [0, 1] they take the scores for
    logits and apply a sigmoid, which rounds every score above about 37 (17 in float32) to exactly 1, so the
    highest scores tie. Both measures depend on the scores' order only, which this map keeps (to float64's
    resolution: distinct scores below 1e7 stay distinct)."""
    s = scores.double()
    return 0.5 + 0.5 * s / (1.0 + s.abs())


def point_metrics(scores: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    """ROC-AUC and PR-AUC (average precision) of frame scores (F_i,) against frame labels (F_i,) bool, pooled
    over the series; None where one class is absent."""
    s = torch.from_numpy(np.concatenate(scores).astype(np.float64)) if scores else torch.zeros(0)
    y = torch.from_numpy(np.concatenate(labels).astype(np.int64)) if labels else torch.zeros(0, dtype=torch.long)
    if not torch.isfinite(s).all():
        raise ValueError("anomaly scores hold NaN or Inf values")
    s = unit_interval(s)
    both = 0 < int(y.sum()) < len(y)
    return {"roc_auc": float(binary_auroc(s, y)) if both else None,
            "pr_auc": float(binary_average_precision(s, y)) if both else None,
            "frames": len(y), "anomalous_frames": int(y.sum())}


def roc_auc_by_kind(scores: list[np.ndarray], labels: list[np.ndarray], kinds: list[np.ndarray], hop: int
                    ) -> dict[str, float | None]:
    """Point ROC-AUC of each planted kind: the frames holding that kind (the first named kind among a frame's
    samples) against every normal frame, pooled over the series; scores (F_i,) as :func:`point_metrics` takes."""
    frame_kind, normal = [], []
    for s, y, k in zip(scores, labels, kinds, strict=True):
        n = len(s)
        per = np.asarray(k[:n * hop], dtype=object).reshape(n, hop) if n else np.zeros((0, hop), object)
        frame_kind.append(np.array([_first_kind(row) for row in per], dtype=object))
        normal.append(~frame_labels(y, hop, n))
    s, kind, ok = np.concatenate(scores), np.concatenate(frame_kind), np.concatenate(normal)
    names = sorted({str(x) for x in kind[~ok] if str(x)})
    return {name: point_metrics([s[ok | (kind == name)]], [~ok[ok | (kind == name)]])["roc_auc"] for name in names}


def ucr_rule(score: np.ndarray, labels: np.ndarray, hop: int, margin: int = UCR_MARGIN) -> dict | None:
    """Whether the highest frame score (the first, on ties) lies within ``margin`` samples of the labelled range
    [first anomalous sample, last]; None for a series without anomalies."""
    where = np.flatnonzero(labels > 0)
    if not len(where) or not len(score):
        return None
    top = int(np.argmax(score))
    first, last = top * hop, (top + 1) * hop - 1  # the samples of the top frame
    lo, hi = int(where[0]) - margin, int(where[-1]) + margin
    return {"hit": bool(last >= lo and first <= hi), "top_sample": first, "labelled": [int(where[0]), int(where[-1])]}


def kind_recall(hits: list[bool], kinds: list[str]) -> dict[str, dict]:
    """Detected / labelled intervals per anomaly kind (``kinds``: one per interval, in the order of ``hits``)."""
    out: dict[str, dict] = {}
    for hit, kind in zip(hits, kinds, strict=True):
        d = out.setdefault(kind or "unnamed", {"intervals": 0, "detected": 0})
        d["intervals"] += 1
        d["detected"] += int(hit)
    for d in out.values():
        d["recall"] = d["detected"] / d["intervals"]
    return dict(sorted(out.items()))


def quality(det: EventDetector, scores: list[np.ndarray], labels: list[np.ndarray], hop: int, threshold: float,
            tolerance: int, kinds: list[np.ndarray | None] | None = None) -> dict:
    """Every measure above for frame scores (F_i, 1) of series with per-sample labels (L_i,) (and per-sample
    anomaly kinds, optional): point ROC-AUC and PR-AUC of the smoothed scores, the UCR rule per series with
    labelled anomalies, and the event-level outcome at ``threshold`` with its recall per kind."""
    laid = Laid.of(det, scores)
    frames = [len(s) for s in scores]
    smoothed = [laid.best[a:a + n] for a, n in zip(laid.offsets[:-1], frames, strict=True)]
    truth = [intervals(y, hop, n) for y, n in zip(labels, frames, strict=True)]
    outcome = alarm_outcome(det, laid, truth, frames, threshold, tolerance)
    ucr = [ucr_rule(s, y, hop) for s, y in zip(smoothed, labels, strict=True)]
    ucr = [u for u in ucr if u is not None]
    out = {**point_metrics(smoothed, [frame_labels(y, hop, n) for y, n in zip(labels, frames, strict=True)]),
           "ucr_rule": {"solved": sum(u["hit"] for u in ucr), "series": len(ucr), "per_series": ucr},
           "threshold": float(threshold), "at_threshold": outcome.as_dict()}
    if kinds is not None and all(k is not None for k in kinds):
        names = [_first_kind(k[a * hop:b * hop]) for k, ivs in zip(kinds, truth, strict=True) for a, b in ivs]
        out["recall_by_kind"] = kind_recall(outcome.hits, names)
        out["roc_auc_by_kind"] = roc_auc_by_kind(smoothed, labels, kinds, hop)
    return out


def _first_kind(kinds: np.ndarray) -> str:
    """The first named kind among an interval's samples ("" if none is named)."""
    named = [str(k) for k in kinds if str(k)]
    return named[0] if named else ""
