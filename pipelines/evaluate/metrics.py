"""Hits, misses, false accepts and detection delay of a keyword detector, at any thresholds.

The streams' frame scores are kept, so the events of any detector setting are recomputed without
running the model again: the moving average of :class:`~ssm_signal.events.EventDetector` and then its
firing rule :func:`~ssm_signal.events.fire`, the functions the live detector runs. All streams of
one kind are laid end to end with a gap of ``refractory + 1`` silent frames between them (a frame
that cannot fire, after which no refractory period or held label is left), so one call of ``fire``
per threshold setting covers them all and each stream still starts as a fresh one.

Definitions (positives: one clip per stream, with ``lead_s`` of padding before it):
- a *hit*: an event of the clip's keyword at a time t with lead_s <= t <= speech end + ``hit_window_s``;
  the clip is detected if it has one; FRR = 1 - detected / clips, per keyword and pooled;
- *delay*: the first hit's time minus the end of speech (negative: it fired before the word ended);
- on a positive stream every other event (another label, outside the window, a second hit) is a
  false accept, and so is every event on a non-keyword clip (``_unknown_``, ``_silence_``);
- on negative sources every event is a false accept; FA/h = false accepts / hours of negative audio.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ssm_signal.events import EventDetector, fire


@dataclasses.dataclass
class Laid:
    """Streams laid end to end for one detector window: best (N,) and arg (N,) (see the module
    docstring), offsets (S + 1,) where each stream starts, frame_rate."""

    best: np.ndarray
    arg: np.ndarray
    offsets: np.ndarray
    frame_rate: float

    @classmethod
    def of(cls, detector: EventDetector, scores: list[np.ndarray]) -> Laid:
        gap = detector.refractory_frames + 1
        bests, args, offsets, at = [], [], [], 0
        for s in scores:
            smoothed, _ = detector.smooth(s[None].astype(np.float32), detector.init_state(1))
            best, arg = detector.best(smoothed[0])
            offsets.append(at)
            bests += [best, np.full(gap, -np.inf)]
            args += [arg, np.zeros(gap, np.int64)]
            at += len(best) + gap
        offsets.append(at)
        cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
        return cls(cat(bests, np.float64), cat(args, np.int64), np.array(offsets), detector.frame_rate)

    def events(self, detector: EventDetector, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The events at ``thresholds`` (K,): (stream (E,), label index k (E,), time in its stream, s (E,))."""
        fired, _, _ = fire(self.best[None], self.arg[None], thresholds, detector.kind == "keyword",
                           np.array([-1]), np.array([0]), np.array([0]), detector.refractory_frames)
        f = np.array([fr for _, fr in fired], np.int64)
        stream = np.searchsorted(self.offsets, f, side="right") - 1
        return stream, self.arg[f], (f - self.offsets[stream] + 1) / self.frame_rate


@dataclasses.dataclass
class Positives:
    """The positive streams' ground truth: keyword index k per clip (-1: a non-keyword clip), the
    lead before each clip and where its speech ends (seconds of its stream), the hit window."""

    k: np.ndarray
    lead_s: np.ndarray
    end_s: np.ndarray
    hit_window_s: float


@dataclasses.dataclass
class Outcome:
    """Counts at one threshold setting. K = reportable labels.

    clips (K,), detected (K,): positive clips and those detected, per keyword; delay (clips,): per
    positive stream, seconds from the end of speech to the first hit (NaN: not detected);
    fa_positive (K,): false accepts on positive streams by the label that fired; fa_nonkeyword (K,):
    on non-keyword clips; nonkeyword_clips, nonkeyword_fired: those clips, and how many fired;
    fa_negative (sources, K): false accepts per negative source and label; hours (sources,).
    """

    clips: np.ndarray
    detected: np.ndarray
    delay: np.ndarray
    fa_positive: np.ndarray
    fa_nonkeyword: np.ndarray
    nonkeyword_clips: int
    nonkeyword_fired: int
    fa_negative: np.ndarray
    hours: np.ndarray

    @property
    def frr(self) -> np.ndarray:
        """(K,) false-reject rate per keyword (NaN without clips)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - self.detected / self.clips

    @property
    def frr_pooled(self) -> float:
        n = self.clips.sum()
        return float(1.0 - self.detected.sum() / n) if n else float("nan")

    @property
    def fa_per_hour(self) -> np.ndarray:
        """(K,) false accepts per hour of negative audio, per keyword."""
        h = self.hours.sum()
        return self.fa_negative.sum(0) / h if h else np.full(self.fa_negative.shape[1], np.nan)

    @property
    def fa_per_hour_pooled(self) -> float:
        h = self.hours.sum()
        return float(self.fa_negative.sum() / h) if h else float("nan")


def outcome(detector: EventDetector, thresholds: np.ndarray, pos: Laid, truth: Positives,
            negs: list[Laid], hours: np.ndarray) -> Outcome:
    """Hits, misses and false accepts at ``thresholds`` (K,) over the positive streams and each negative source."""
    K = len(detector.reportable)
    stream, k, t = pos.events(detector, thresholds)
    ks, lead, end = truth.k[stream], truth.lead_s[stream], truth.end_s[stream]
    in_window = (k == ks) & (ks >= 0) & (t >= lead) & (t <= end + truth.hit_window_s)
    n = len(truth.k)
    first = np.full(n, np.inf)
    np.minimum.at(first, stream[in_window], t[in_window])
    detected_clip = np.isfinite(first)
    # the first hit of a clip is its detection; every other event on a positive stream is a false accept
    is_first = in_window & (t == first[stream])
    _, first_idx = np.unique(stream[is_first], return_index=True)
    hit = np.zeros(len(stream), bool)
    hit[np.flatnonzero(is_first)[first_idx]] = True
    keyword_clip = truth.k >= 0
    clips = np.bincount(truth.k[keyword_clip], minlength=K)
    detected = np.bincount(truth.k[keyword_clip & detected_clip], minlength=K)
    delay = np.where(detected_clip, first - truth.end_s, np.nan)[keyword_clip]
    on_kw = ks >= 0
    fa_positive = np.bincount(k[~hit & on_kw], minlength=K)
    fa_nonkeyword = np.bincount(k[~on_kw], minlength=K)
    nonkw = ~keyword_clip
    fired = np.zeros(n, bool)
    fired[stream] = True
    fa_negative = np.zeros((len(negs), K), np.int64)
    for i, lay in enumerate(negs):
        _, kn, _ = lay.events(detector, thresholds)
        fa_negative[i] = np.bincount(kn, minlength=K)
    return Outcome(clips, detected, delay, fa_positive, fa_nonkeyword, int(nonkw.sum()), int((fired & nonkw).sum()),
                   fa_negative, hours)


def threshold_grid() -> np.ndarray:
    """Thresholds swept: 0.1-0.9 in steps of 0.05, then 1 - 10^-x up to 1 - 1e-5 (the smoothed posteriors
    of a confident model crowd near 1), and 1.0 itself."""
    return np.unique(np.round(np.concatenate([np.linspace(0.1, 0.9, 17), 1 - np.logspace(-1, -5, 33), [1.0]]), 10))


def operating_point(fa_per_hour: np.ndarray, frr: np.ndarray, target: float) -> int | None:
    """Index of the setting with the lowest FRR among those whose FA/h is at most ``target`` (ties: the
    first, i.e. the lowest threshold of an ascending sweep); None if no setting gets there."""
    ok = np.flatnonzero(fa_per_hour <= target + 1e-12)
    if not len(ok):
        return None
    return int(ok[np.argmin(frr[ok])])
