"""Keyword detection quality: streamed positives and negatives, the threshold sweep, calibration.

    sets = [stream_positives(engine, clips, cfg) ...]; negs = stream_negatives(engine, sources, cfg)
    sweep(engine.detector, sets, negs, windows)     # DET rows: FRR and FA/h per threshold and window
    calibrate(...)                                  # per-keyword thresholds at a target FA/h

Positives are streamed one clip per stream: ``lead_s`` of padding, the clip, ``trail_s`` of padding.
Each negative source is one stream, its files concatenated and the state carried across them, the
way a device hears them; sources advance side by side in one batch (a model call advances up to
``batch`` streams). ``segment_s`` can cut long sources into segments that start from a fresh state, to
put more streams side by side, at a cost: on 1.99 h of generated negatives, two-minute segments gave
9 false accepts where whole sources gave 4 (a fresh state is a start-up transient).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data.audio_io import resample
from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.events import DetectorConfig, EventDetector
from ssm_signal.streaming import StreamEngine

from .inputs import Clip, Source, read_clip, source_audio, speech_end
from .metrics import Laid, Outcome, Positives, operating_point, outcome, threshold_grid
from .stream import Streamed, stream_many

log = logging.getLogger("ssm_signal.evaluate")


@dataclasses.dataclass
class StreamSettings:
    """How clips become streams. chunk_s: seconds per push; lead_s / trail_s: padding around each
    positive clip; pad: "silence" or the path of an audio file looped as padding; hit_window_s: a
    hit may come up to this long after the end of speech; segment_s: negative sources are streamed
    in segments this long, each from a fresh state (0: one stream per source, the default);
    batch: streams advanced per model call."""

    chunk_s: float = bounded(0.1, gt=0)
    lead_s: float = bounded(0.5, ge=0)
    trail_s: float = bounded(1.5, ge=0)
    pad: str = "silence"
    hit_window_s: float = bounded(1.0, gt=0)
    segment_s: float = bounded(0.0, ge=0)
    batch: int = bounded(256, ge=1)

    def __post_init__(self):
        check_bounds(self)


@dataclasses.dataclass
class PositiveSet:
    """A streamed set of clips: its name, the clips kept, the ground truth and the streams."""

    name: str
    clips: list[Clip]
    truth: Positives
    streams: list[Streamed]


@dataclasses.dataclass
class NegativeSet:
    """Streamed negative sources: per source its name, the group (the ``--negatives`` argument it came
    from), hours, and its streams (segments)."""

    names: list[str]
    groups: list[str]
    hours: np.ndarray
    streams: list[list[Streamed]]


class _Padding:
    """The padding around positive clips: silence, or an audio file looped (read once, resampled once per rate)."""

    def __init__(self, pad: str):
        self.pad = pad
        self.source = None if pad == "silence" else read_clip(pad)
        self.by_rate: dict[int, np.ndarray] = {}

    def __call__(self, n: int, rate: int, offset: int) -> np.ndarray:
        """n samples at ``rate``, starting ``offset`` samples into the looped file."""
        if self.source is None or n == 0:
            return np.zeros(n, np.float32)
        if rate not in self.by_rate:
            wave, r = self.source
            self.by_rate[rate] = wave if r == rate else resample(torch.from_numpy(wave), r, rate).numpy()
        wave = self.by_rate[rate]
        reps = -(-(n + offset) // len(wave))
        return np.tile(wave, reps)[offset:offset + n].astype(np.float32)


def stream_positives(engine: StreamEngine, name: str, clips: list[Clip], cfg: StreamSettings,
                     skips: SkipLog) -> PositiveSet:
    """Read, pad and stream every clip (unreadable ones skipped and counted)."""
    labels = engine.detector.reportable_labels
    padding = _Padding(cfg.pad)
    by_rate: dict[int, list[int]] = {}
    kept, signals, ks, leads, ends = [], [], [], [], []
    for c in clips:
        try:
            wave, rate = read_clip(c.path)
        except DataError as e:
            skips.add(c.path, str(e).removeprefix(f"{c.path}: "))
            continue
        lead, trail = int(round(cfg.lead_s * rate)), int(round(cfg.trail_s * rate))
        end = c.speech_end_s if c.speech_end_s is not None else speech_end(wave, rate)
        by_rate.setdefault(rate, []).append(len(kept))
        signals.append(np.concatenate([padding(lead, rate, len(kept)), wave,
                                       padding(trail, rate, len(kept) + lead)]))
        kept.append(c)
        ks.append(labels.index(c.label) if c.label in labels else -1)
        leads.append(lead / rate)
        ends.append(lead / rate + min(end, len(wave) / rate))
    if not kept:
        raise DataError(f"positives {name!r}: no readable clip")
    streams: list[Streamed | None] = [None] * len(kept)
    for rate, idx in by_rate.items():
        for i, s in zip(idx, stream_many(engine, [signals[i] for i in idx], rate, cfg.chunk_s, cfg.batch),
                        strict=True):
            streams[i] = s
    truth = Positives(np.array(ks), np.array(leads), np.array(ends), cfg.hit_window_s)
    return PositiveSet(name, kept, truth, streams)  # type: ignore[arg-type]


def stream_negatives(engine: StreamEngine, groups: list[tuple[str, list[Source]]], cfg: StreamSettings,
                     skips: SkipLog) -> NegativeSet:
    """Each source concatenated, cut into segments and streamed; sources with no readable file skipped."""
    names, group_of, hours, segs, owner = [], [], [], [], []
    by_rate: dict[int, list[int]] = {}
    for group, sources in groups:
        for src in sources:
            audio, rate, used = source_audio(src, skips)
            if not used:
                skips.add(src.name, "no readable audio file in the source")
                continue
            step = int(cfg.segment_s * rate) if cfg.segment_s > 0 else len(audio)
            for start in range(0, len(audio), max(step, 1)):
                by_rate.setdefault(rate, []).append(len(segs))
                segs.append(audio[start:start + step])
                owner.append(len(names))
            names.append(src.name)
            group_of.append(group)
            hours.append(len(audio) / rate / 3600)
    if not names:
        raise DataError("negatives: no readable audio in any source")
    streamed: list[Streamed | None] = [None] * len(segs)
    for rate, idx in by_rate.items():
        for i, s in zip(idx, stream_many(engine, [segs[i] for i in idx], rate, cfg.chunk_s, cfg.batch), strict=True):
            streamed[i] = s
    per_source: list[list[Streamed]] = [[] for _ in names]
    for i, s in enumerate(streamed):
        per_source[owner[i]].append(s)  # type: ignore[arg-type]
    return NegativeSet(names, group_of, np.array(hours), per_source)


def detector_with(base: EventDetector, window: int | None = None, thresholds: dict[str, float] | None = None
                  ) -> EventDetector:
    """``base``'s detector with another smoothing window and/or per-label thresholds."""
    cfg = dataclasses.replace(base.config, smoothing_frames=window or base.window,
                              threshold=thresholds if thresholds is not None else base.threshold,
                              refractory_s=base.refractory_frames / base.frame_rate, ignore=tuple(
                                  lb for lb in base.labels if lb not in base.reportable_labels))
    return EventDetector(base.kind, base.labels, base.frame_rate, cfg)


def lay(detector: EventDetector, pos: list[PositiveSet], neg: NegativeSet) -> tuple[list[Laid], list[Laid]]:
    return ([Laid.of(detector, [s.scores for s in p.streams]) for p in pos],
            [Laid.of(detector, [s.scores for s in segs]) for segs in neg.streams])


def check_live(detector: EventDetector, pos: list[PositiveSet], neg: NegativeSet,
               laid: tuple[list[Laid], list[Laid]] | None = None) -> None:
    """The events recomputed from the kept scores equal the events the live detector fired (else a bug).
    laid: ``lay(detector, pos, neg)`` if already computed."""
    laid_pos, laid_neg = laid or lay(detector, pos, neg)
    pairs = [(lp, p.streams) for lp, p in zip(laid_pos, pos, strict=True)] + \
        [(ln, segs) for ln, segs in zip(laid_neg, neg.streams, strict=True)]
    for laid, streams in pairs:
        stream, k, t = laid.events(detector, detector.thresholds)
        live = [(i, detector.reportable_labels.index(e.label), e.frame) for i, s in enumerate(streams) for e in s.events]
        again = [(int(i), int(kk), int(round(tt * detector.frame_rate)) - 1) for i, kk, tt in zip(stream, k, t, strict=True)]
        if sorted(live) != sorted(again):
            raise RuntimeError(f"the sweep's detector disagrees with the live one ({len(live)} vs {len(again)} events)")


def sweep(base: EventDetector, pos: list[PositiveSet], neg: NegativeSet, windows: list[int]
          ) -> dict[tuple[int, float], list[Outcome]]:
    """Outcomes per (window, threshold) for every positive set (the same threshold for every keyword)."""
    out = {}
    for w in windows:
        det = detector_with(base, window=w)
        laid_pos, laid_neg = lay(det, pos, neg)
        for theta in threshold_grid():
            thr = np.full(len(det.reportable), theta)
            out[(w, float(theta))] = [outcome(det, thr, lp, p.truth, laid_neg, neg.hours)
                                      for lp, p in zip(laid_pos, pos, strict=True)]
    return out


def at(detector: EventDetector, pos: list[PositiveSet], neg: NegativeSet,
       laid: tuple[list[Laid], list[Laid]] | None = None) -> list[Outcome]:
    """Outcomes at ``detector``'s own settings, per positive set (laid: ``lay(detector, pos, neg)`` if computed)."""
    laid_pos, laid_neg = laid or lay(detector, pos, neg)
    return [outcome(detector, detector.thresholds, lp, p.truth, laid_neg, neg.hours)
            for lp, p in zip(laid_pos, pos, strict=True)]


# Companion false-accept rates of a calibration (FA/h): the FRR each would give on the same data is recorded
# beside the target's. On 2.7 h of calibration negatives a keyword's share of 0.5 FA/h (or of 5: 0.25 an hour)
# allows it no false accept at all, so each threshold rests on the single highest score the negatives reach and
# the FRR moves much between two trainings of one recipe; at 10 and 20 FA/h each keyword may fire once or twice
# (docs/results.md, ninth run).
COMPANION_TARGETS = (10.0, 20.0)


def lowest_within(fa_at, fa_k: np.ndarray, share: float) -> np.ndarray:
    """Grid indices (K,) of the lowest thresholds at which every keyword fires at most ``share`` times an hour.

    fa_k (thresholds, K): each keyword's FA/h when all keywords share one threshold (the sweep); fa_at(idx) ->
    (K,): each keyword's FA/h with keyword k at grid[idx[k]]. Start from the sweep, then raise the thresholds of
    keywords still over their share with the others at theirs (so that a quieter keyword does not silence the
    others through the refractory period) until none is over, or each is at the top of the grid.
    """
    n, K = fa_k.shape
    ok = fa_k <= share + 1e-12
    idx = np.array([np.flatnonzero(ok[:, k])[0] if ok[:, k].any() else n - 1 for k in range(K)])
    for _ in range(K * n):
        over = (fa_at(idx) > share + 1e-12) & (idx < n - 1)
        if not over.any():
            break
        idx[over] += 1
    return idx


def calibrate(base: EventDetector, pos: list[PositiveSet], neg: NegativeSet, target: float, windows: list[int],
              floor: float = 0.5, companions: tuple[float, ...] = COMPANION_TARGETS) -> tuple[DetectorConfig, dict]:
    """Per-keyword thresholds at ``target`` false accepts per hour, chosen on calibration data.

    Each of the K keywords gets an equal share target / K of the false-accept budget: its threshold is
    the lowest swept threshold at which that keyword fires at most target / K times per hour of the
    calibration negatives, with every other keyword at its own threshold (if none, 1.0, the highest
    swept). Per smoothing window; the window whose thresholds give the lowest pooled FRR on the
    calibration positives, within the target, wins. Returns the detector config and a record.

    No threshold goes below ``floor``. A budget of target / K per keyword is less than one false accept in
    the hours a calibration set has (0.025 per hour for 20 keywords at 0.5: one in 40 hours), so each
    threshold lands just above the highest score the calibration negatives happen to reach; where they
    reach little (a model that has learned the generator's speech), that is a posterior far below even
    odds, and negatives the calibration set does not cover fire at it (the held-out half of the generated
    corpus included). 0.5, a keyword rated more likely than everything else together, is the floor.

    Each trial also records, under ``companions``, the FRR and FA/h that the same procedure gives at each of
    ``companions`` (FA/h) on the same data and window: figures for comparing models, not thresholds.
    """
    grid = threshold_grid()
    grid = grid[grid >= floor]
    K = len(base.reportable)
    budget = target / K
    trials = []
    for w in windows:
        det = detector_with(base, window=w)
        laid_pos, laid_neg = lay(det, pos, neg)

        def fa_at(idx: np.ndarray, det=det, laid_pos=laid_pos, laid_neg=laid_neg) -> np.ndarray:
            """(K,) FA/h of each keyword with the thresholds grid[idx]."""
            return outcome(det, grid[idx], laid_pos[0], pos[0].truth, laid_neg, neg.hours).fa_per_hour

        fa_k = np.stack([fa_at(np.full(K, i)) for i in range(len(grid))])  # (thresholds, K)

        found = []  # (thresholds, pooled FRR, FA/h) at the target's share, then at each companion's
        for share in (budget, *(c / K for c in companions)):
            idx = lowest_within(fa_at, fa_k, share)
            mapping = {lb: float(grid[i]) for lb, i in zip(det.reportable_labels, idx, strict=True)}
            res = at(detector_with(base, window=w, thresholds=mapping), pos, neg, (laid_pos, laid_neg))
            found.append((mapping, float(np.nanmean([r.frr_pooled for r in res])), res[0].fa_per_hour_pooled))
        (mapping, frr, fa), *more = found
        extra = [{"target_fa_per_hour": c, "frr": f, "fa_per_hour": a}
                 for c, (_, f, a) in zip(companions, more, strict=True)]
        trials.append({"window": w, "thresholds": mapping, "frr": frr, "fa_per_hour": fa, "companions": extra})
        log.info("calibration, window %d: FRR %.3f, FA/h %.2f%s", w, frr, fa,
                 "".join(f"; at {c['target_fa_per_hour']:g} FA/h: FRR {c['frr']:.3f}" for c in extra))
    within = [t for t in trials if t["fa_per_hour"] <= target + 1e-12] or trials
    best = min(within, key=lambda t: (t["frr"], t["fa_per_hour"]))
    cfg = DetectorConfig(smoothing_frames=best["window"], threshold=best["thresholds"],
                         refractory_s=base.refractory_frames / base.frame_rate)
    record = {"target_fa_per_hour": target, "budget_per_keyword": budget, "floor": floor, "chosen": best,
              "trials": trials,
              "negative_hours": float(neg.hours.sum()), "positive_clips": int(sum(len(p.clips) for p in pos))}
    return cfg, record


def summary(outcomes: dict[tuple[int, float], list[Outcome]], set_index: int, labels: list[str],
            groups: dict[str, np.ndarray], targets=(0.5, 0.1)) -> dict:
    """Operating points of one positive set at each target FA/h, read off the sweep (one threshold for
    every keyword): pooled (FRR over all clips, FA/h of every keyword together, on all negatives), per
    negatives group (``groups``: name -> mask over the sources), and per keyword (its FRR and its own
    FA/h on all negatives; keywords without clips left out)."""
    keys = list(outcomes)
    runs = [outcomes[k][set_index] for k in keys]
    fa = np.array([o.fa_per_hour_pooled for o in runs])
    fa_g = {g: np.array([o.fa_negative[m].sum() / o.hours[m].sum() for o in runs]) for g, m in groups.items()
            if g != "all" and runs[0].hours[m].sum() > 0}
    frr = np.array([o.frr_pooled for o in runs])
    fa_k = np.stack([o.fa_per_hour for o in runs])  # (settings, K)
    frr_k = np.stack([o.frr for o in runs])
    has_clips = runs[0].clips > 0

    def at(fa_: np.ndarray, frr_: np.ndarray, target: float) -> dict | None:
        i = operating_point(fa_, frr_, target)
        return None if i is None else {"window": keys[i][0], "threshold": keys[i][1], "frr": float(frr_[i]),
                                       "fa_per_hour": float(fa_[i])}

    return {str(t): {"pooled": at(fa, frr, t),
                     "per_negatives": {g: at(f, frr, t) for g, f in fa_g.items()},
                     "per_keyword": {lb: at(fa_k[:, k], frr_k[:, k], t) for k, lb in enumerate(labels) if has_clips[k]}}
            for t in targets}
