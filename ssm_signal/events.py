"""Events from per-frame scores: keyword detections and anomaly alarms.

Per frame t of a stream, with s_t the model's scores (classification: softmax posteriors
over the labels; anomaly: the head's score):

    s̄_t  = mean(s_{t-W+1}, ..., s_t)                 moving average over W = smoothing_frames
                                                       (fewer at the start of a stream)
    c_t  = argmax_{c in K} s̄_t[c]                     K: the reportable labels (classification:
                                                       all but those starting with "_", i.e.
                                                       _silence_ and _unknown_; anomaly: the score)
    keyword:  fire at t  iff  s̄_t[c_t] >= θ[c_t],  the frame before did not already hold c_t
              at or above its threshold (c_{t-1} != c_t or s̄_{t-1}[c_{t-1}] < θ[c_{t-1}]),
              and t >= quiet_until                  θ: one threshold per label (calibrated
                                                       thresholds live in the bundle's config)
    anomaly:  fire at t  iff  s̄_t > threshold  and  t >= quiet_until
    then quiet_until = t + R                           R = refractory_s * frame rate (refractory period)

A keyword fires once when its smoothed posterior rises to the threshold, however long it then
stays there: keyword models hold their posterior for a while after the word (the default recipe
trains them to), and one spoken word is one event. It fires again only after falling below the
threshold (or another keyword taking over) and the refractory period. An anomaly that persists
raises an alarm every R. The event's time is the end of frame t in seconds of stream time,
(t + 1) / frame rate.

The detector state (last W-1 scores, frames seen, quiet_until, the label held) is explicit
(:class:`DetectorArrays`; the torch engine carries it as ``DetectorState`` in its typed state), so
the events of a stream do not depend on how it is chunked, and snapshots carry it. This module is
numpy only: the torch sessions and the torch-free ONNX session (``ssm_signal.runtime``) share it. The rule after
the smoothing is :func:`fire`, one function that the live detector and the evaluation's
threshold sweep (``pipelines.evaluate``) both call, so a swept operating point is exactly what
the live detector does at that threshold.

Which settings apply: a field set in the :class:`DetectorConfig` the caller passes, else the
bundle's ``detector`` section (written by calibration, ``ssm-signal evaluate --calibrate``),
else the defaults below (:meth:`DetectorConfig.over`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


def is_keyword(label: str) -> bool:
    """Whether a class label names a keyword: every label does but those that start with ``_`` (``_silence_``,
    ``_unknown_``), the rule training, detection, calibration and mining read labels by."""
    return not label.startswith("_")


DEFAULT_KEYWORD_THRESHOLD = 0.8
# high enough that the brief blips of other words at a word's onset (up to ~0.65 with the
# default model) do not fire, far below a held detection (~0.95)
DEFAULT_KEYWORD_WINDOW = 10  # frames: 100 ms at a 10 ms hop
DEFAULT_REFRACTORY_S = 1.0


@dataclasses.dataclass
class DetectorConfig:
    """How frame scores become events. A field left None takes the bundle's setting, else the default.

    smoothing_frames: W, frames in the moving average (1 = no smoothing; default: 10 frames,
        i.e. 100 ms at a 10 ms hop, for classification, 1 for anomaly).
    threshold: smoothed score at or above which an event fires: one number for every label, or a
        mapping label -> threshold (labels it leaves out take ``default_threshold``; calibration
        writes one per keyword). Default: 0.8 for classification, the bundle's ``head.threshold``
        for anomaly.
    default_threshold: the threshold of labels a mapping leaves out (None: the default above).
    refractory_s: seconds after an event during which no other event of the stream fires (default 1).
    ignore: labels never reported (None = every label starting with "_").
    """

    smoothing_frames: int | None = None
    threshold: float | dict[str, float] | None = None
    default_threshold: float | None = None
    refractory_s: float | None = None
    ignore: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.smoothing_frames is not None and (isinstance(self.smoothing_frames, bool)
                                                  or not isinstance(self.smoothing_frames, int)
                                                  or not 1 <= self.smoothing_frames <= 10_000):
            raise ValueError(f"smoothing_frames must be an int in [1, 10000], got {self.smoothing_frames!r}")
        if isinstance(self.threshold, dict):
            for label, value in self.threshold.items():
                _check_threshold(value, f"threshold[{label!r}]")
            self.threshold = {str(k): float(v) for k, v in self.threshold.items()}
        elif self.threshold is not None:
            _check_threshold(self.threshold, "threshold")
        if self.default_threshold is not None:
            _check_threshold(self.default_threshold, "default_threshold")
        if self.refractory_s is not None and (isinstance(self.refractory_s, bool)
                                              or not isinstance(self.refractory_s, int | float)
                                              or not 0.0 <= self.refractory_s <= 3600.0):
            raise ValueError(f"refractory_s must be in [0, 3600] seconds, got {self.refractory_s!r}")
        if self.ignore is not None:
            self.ignore = tuple(self.ignore)

    def over(self, base: DetectorConfig | dict | None) -> DetectorConfig:
        """This config's fields where set, ``base``'s elsewhere (base: e.g. a bundle's ``detector`` section)."""
        if base is None:
            return self
        base = base if isinstance(base, DetectorConfig) else DetectorConfig.from_dict(base)
        return DetectorConfig(**{f.name: getattr(self, f.name) if getattr(self, f.name) is not None
                                 else getattr(base, f.name) for f in dataclasses.fields(self)})

    def to_dict(self) -> dict:
        """The fields that are set, as JSON types (what a bundle's config stores)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "ignore" in d:
            d["ignore"] = list(d["ignore"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        if not isinstance(d, dict):
            raise ValueError(f"a detector config must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown detector config keys {sorted(unknown)}")
        return cls(**d)


def _check_threshold(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Event:
    """One detection. kind: "keyword" or "anomaly"; label; time_s: end of the frame it fired
    at, in seconds of stream time; score: the smoothed score; frame: that frame's index."""

    kind: str
    label: str
    time_s: float
    score: float
    frame: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DetectorArrays:
    """The detector's state for B streams: recent (B, W-1, C) float32, the last W-1 frame scores,
    oldest first (zeros before the start); seen (B,) int64 frames seen; quiet_until (B,) int64 the
    first frame allowed to fire; held (B,) int64 the label index at or above the threshold at the
    last frame (-1: none)."""

    recent: np.ndarray
    seen: np.ndarray
    quiet_until: np.ndarray
    held: np.ndarray


class EventDetector:
    """Moving-average smoothing, threshold and refractory period over frame scores.

    kind: "keyword" (scores are posteriors over ``labels``), "anomaly" (one score column) or
    "none" (forecast heads: smoothing only, no events). frame_rate: frames per second.
    default_threshold: the anomaly head's threshold (anomaly models only).
    """

    def __init__(self, kind: str, labels: list[str], frame_rate: float, config: DetectorConfig | None = None,
                 default_threshold: float | None = None):
        if kind not in ("keyword", "anomaly", "none"):
            raise ValueError(f"EventDetector kind must be keyword, anomaly or none, got {kind!r}")
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        config = config or DetectorConfig()
        self.kind, self.labels, self.frame_rate, self.config = kind, list(labels), float(frame_rate), config
        self.window = config.smoothing_frames or (DEFAULT_KEYWORD_WINDOW if kind == "keyword" else 1)
        if config.default_threshold is not None:
            default = float(config.default_threshold)
        elif kind == "keyword":
            default = DEFAULT_KEYWORD_THRESHOLD
        else:
            default = float(default_threshold if default_threshold is not None else float("inf"))
        refractory_s = DEFAULT_REFRACTORY_S if config.refractory_s is None else config.refractory_s
        self.refractory_frames = max(1, int(round(refractory_s * self.frame_rate)))
        if kind == "keyword":
            ignore = config.ignore if config.ignore is not None else tuple(lb for lb in labels if not is_keyword(lb))
            unknown = set(ignore) - set(labels)
            if unknown:
                raise ValueError(f"ignore names labels the model does not have: {sorted(unknown)}")
            self.reportable = [i for i, lb in enumerate(labels) if lb not in ignore]
            if not self.reportable:
                raise ValueError("every label is ignored: no keyword can be reported")
        else:
            self.reportable = [0]
        self.reportable_labels = [self.labels[i] if kind == "keyword" else kind for i in self.reportable]
        per_label = config.threshold if isinstance(config.threshold, dict) else {}
        unknown = set(per_label) - set(self.reportable_labels)
        if unknown:
            raise ValueError(f"threshold names labels the model does not report: {sorted(unknown)} "
                             f"(it reports {self.reportable_labels})")
        single = float(config.threshold) if isinstance(config.threshold, int | float) else default
        # θ: (K,) one threshold per reportable label
        self.thresholds = np.array([per_label.get(lb, single) for lb in self.reportable_labels], np.float64)
        # a contiguous run of reportable labels (the usual case: the "_" labels come last) is a view
        r = self.reportable
        self._rep = slice(r[0], r[-1] + 1) if r == list(range(r[0], r[-1] + 1)) else np.array(r)

    @property
    def threshold(self) -> float | dict[str, float]:
        """The threshold: one number when every label shares it, else label -> threshold."""
        if np.all(self.thresholds == self.thresholds[0]):
            return float(self.thresholds[0])
        return {lb: float(t) for lb, t in zip(self.reportable_labels, self.thresholds, strict=True)}

    @property
    def width(self) -> int:
        """Score columns: one per label (keywords: the labels; anomaly: ["anomaly"]; forecasts: features)."""
        return len(self.labels)

    def init_state(self, batch_size: int) -> DetectorArrays:
        return DetectorArrays(
            recent=np.zeros((batch_size, self.window - 1, self.width), np.float32),
            seen=np.zeros(batch_size, np.int64),
            quiet_until=np.zeros(batch_size, np.int64),
            held=np.full(batch_size, -1, np.int64),
        )

    def smooth(self, scores: np.ndarray, state: DetectorArrays) -> tuple[np.ndarray, np.ndarray]:
        """scores (B, F, C) -> the moving average s̄ (B, F, C) float64 and the absolute frame index t (B, F)."""
        B, F, C = scores.shape
        W = self.window
        x = np.concatenate([state.recent, scores], axis=1).astype(np.float64)  # (B, W-1+F, C)
        # every window summed in the same order (oldest first), so chunking cannot change the result
        sums = x[:, 0:F].copy()
        for k in range(1, W):
            sums += x[:, k:k + F]  # (B, F, C)
        t = state.seen[:, None] + np.arange(F)  # (B, F)
        return sums / np.minimum(t + 1, W)[..., None], t

    def best(self, smoothed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """s̄ (..., C) -> (max over the reportable labels, its index into ``reportable``), each (...)."""
        rep = smoothed[..., self._rep]
        return rep.max(-1), rep.argmax(-1)

    def __call__(self, scores: np.ndarray, state: DetectorArrays
                 ) -> tuple[np.ndarray, list[list[Event]], DetectorArrays]:
        """scores (B, F, C) -> smoothed (B, F, C) float32, events per stream, new state."""
        scores = np.asarray(scores, np.float32)
        B, F, C = scores.shape
        if F == 0:
            return np.zeros((B, 0, C), np.float32), [[] for _ in range(B)], state
        smoothed, t = self.smooth(scores, state)
        events: list[list[Event]] = [[] for _ in range(B)]
        quiet, held = state.quiet_until.copy(), state.held.copy()
        if self.kind != "none":
            best, arg = self.best(smoothed)  # (B, F)
            fired, held, quiet = fire(best, arg, self.thresholds, self.kind == "keyword", held, quiet, t[:, 0],
                                      self.refractory_frames)
            for b, f in fired:
                events[b].append(Event(self.kind, self.reportable_labels[int(arg[b, f])], (int(t[b, f]) + 1) / self.frame_rate,
                                       float(best[b, f]), int(t[b, f])))
        recent = np.concatenate([state.recent, scores], axis=1)[:, F:]  # the last W-1 frames
        new = DetectorArrays(recent=np.ascontiguousarray(recent, dtype=np.float32), seen=state.seen + F,
                             quiet_until=quiet, held=held)
        return smoothed.astype(np.float32), events, new


def fire(best: np.ndarray, arg: np.ndarray, thresholds: np.ndarray, rising: bool, held: np.ndarray,
         quiet_until: np.ndarray, t0: np.ndarray, refractory_frames: int
         ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """The firing rule over F frames of B streams (see the module docstring).

    best (B, F): max smoothed score over the reportable labels; arg (B, F): its label index k into
    ``thresholds`` (K,) θ; rising: keywords fire where a label rises to its threshold (anomaly: at
    every frame over it); held, quiet_until (B,): each stream's state before its first frame, whose
    absolute index is t0 (B,). Returns the (stream, frame) pairs that fire, in time order per stream,
    and the new held and quiet_until (copies).
    """
    theta = thresholds[arg]
    quiet = np.array(quiet_until, dtype=np.int64)
    if rising:  # keywords fire at the threshold, only where a label rises to it
        cand = best >= theta
        cur = np.where(cand, arg, -1)  # (B, F) the label held at each frame, -1 if none
        prev = np.concatenate([np.asarray(held, np.int64)[:, None], cur[:, :-1]], axis=1)
        firing = cand & (cur != prev)
        held = cur[:, -1].copy() if cur.shape[1] else np.array(held, dtype=np.int64)
    else:  # anomaly alarms over it, as Bundle.predict labels them
        firing = best > theta
        held = np.array(held, dtype=np.int64)
    out = []
    for b, f in zip(*np.nonzero(firing), strict=True):  # row-major: each stream's frames in time order
        tf = int(t0[b]) + int(f)
        if tf >= quiet[b]:
            out.append((int(b), int(f)))
            quiet[b] = tf + refractory_frames
    return out, held, quiet
