"""Events from per-frame scores: keyword detections and anomaly alarms.

Per frame t of a stream, with s_t the model's scores (classification: softmax posteriors
over the labels; anomaly: the head's score):

    s̄_t  = mean(s_{t-W+1}, ..., s_t)                 moving average over W = smoothing_frames
                                                       (fewer at the start of a stream)
    c_t  = argmax_{c in K} s̄_t[c]                     K: the reportable labels (classification:
                                                       all but those starting with "_", i.e.
                                                       _silence_ and _unknown_; anomaly: the score)
    keyword:  fire at t  iff  s̄_t[c_t] >= threshold,  the frame before did not already hold c_t
              at or above the threshold (c_{t-1} != c_t or s̄_{t-1}[c_{t-1}] < threshold),
              and t >= quiet_until
    anomaly:  fire at t  iff  s̄_t > threshold  and  t >= quiet_until
    then quiet_until = t + R                           R = refractory_s * frame rate (refractory period)

A keyword fires once when its smoothed posterior rises to the threshold, however long it then
stays there: keyword models hold their posterior for a while after the word (the default recipe
trains them to), and one spoken word is one event. It fires again only after falling below the
threshold (or another keyword taking over) and the refractory period. An anomaly that persists
raises an alarm every R. The event's time is the end of frame t in seconds of stream time,
(t + 1) / frame rate.

The detector state (last W-1 scores, frames seen, quiet_until) is a typed State, so the
events of a stream do not depend on how it is chunked, and snapshots carry it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from ssm_signal.state import State


@dataclasses.dataclass
class DetectorConfig:
    """How frame scores become events.

    smoothing_frames: W, frames in the moving average (1 = no smoothing; None = the head's
        default: 10 frames, i.e. 100 ms at a 10 ms hop, for classification, 1 for anomaly).
    threshold: smoothed score at or above which an event fires (None = 0.8 for classification,
        the bundle's ``head.threshold`` for anomaly).
    refractory_s: seconds after an event during which no other event of the stream fires.
    ignore: labels never reported (None = every label starting with "_").
    """

    smoothing_frames: int | None = None
    threshold: float | None = None
    refractory_s: float = 1.0
    ignore: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.smoothing_frames is not None and (isinstance(self.smoothing_frames, bool)
                                                  or not isinstance(self.smoothing_frames, int)
                                                  or not 1 <= self.smoothing_frames <= 10_000):
            raise ValueError(f"smoothing_frames must be an int in [1, 10000], got {self.smoothing_frames!r}")
        if self.threshold is not None and not (isinstance(self.threshold, int | float) and self.threshold == self.threshold):
            raise ValueError(f"threshold must be a number, got {self.threshold!r}")
        if not 0.0 <= self.refractory_s <= 3600.0:
            raise ValueError(f"refractory_s must be in [0, 3600] seconds, got {self.refractory_s}")
        if self.ignore is not None:
            self.ignore = tuple(self.ignore)


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
class DetectorState(State):
    """recent: (B, W-1, C) the last W-1 frame scores, oldest first (zeros before the start);
    seen: (B,) int64 frames seen; quiet_until: (B,) int64 first frame allowed to fire;
    held: (B,) int64 the label index at or above the threshold at the last frame (-1: none)."""

    recent: Tensor
    seen: Tensor
    quiet_until: Tensor
    held: Tensor


class EventDetector:
    """Moving-average smoothing, threshold and refractory period over frame scores.

    kind: "keyword" (scores are posteriors over ``labels``), "anomaly" (one score column) or
    "none" (forecast heads: smoothing only, no events). frame_rate: frames per second.
    """

    def __init__(self, kind: str, labels: list[str], frame_rate: float, config: DetectorConfig | None = None,
                 default_threshold: float | None = None):
        if kind not in ("keyword", "anomaly", "none"):
            raise ValueError(f"EventDetector kind must be keyword, anomaly or none, got {kind!r}")
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        config = config or DetectorConfig()
        self.kind, self.labels, self.frame_rate, self.config = kind, list(labels), float(frame_rate), config
        self.window = config.smoothing_frames or (10 if kind == "keyword" else 1)
        if config.threshold is not None:
            self.threshold = float(config.threshold)
        elif kind == "keyword":
            # high enough that the brief blips of other words at a word's onset (up to ~0.65 with
            # the default model) do not fire, far below a held detection (~0.95)
            self.threshold = 0.8
        else:
            self.threshold = float(default_threshold if default_threshold is not None else float("inf"))
        self.refractory_frames = int(round(config.refractory_s * self.frame_rate))
        if kind == "keyword":
            ignore = config.ignore if config.ignore is not None else tuple(lb for lb in labels if lb.startswith("_"))
            unknown = set(ignore) - set(labels)
            if unknown:
                raise ValueError(f"ignore names labels the model does not have: {sorted(unknown)}")
            self.reportable = [i for i, lb in enumerate(labels) if lb not in ignore]
            if not self.reportable:
                raise ValueError("every label is ignored: no keyword can be reported")
        else:
            self.reportable = [0]
        # a contiguous run of reportable labels (the usual case: the "_" labels come last) is a view
        r = self.reportable
        self._rep = slice(r[0], r[-1] + 1) if r == list(range(r[0], r[-1] + 1)) else np.array(r)

    @property
    def width(self) -> int:
        """Score columns: one per label (keywords: the labels; anomaly: ["anomaly"]; forecasts: features)."""
        return len(self.labels)

    def init_state(self, batch_size: int, *, device=None) -> DetectorState:
        return DetectorState(
            recent=torch.zeros(batch_size, self.window - 1, self.width, device=device),
            seen=torch.zeros(batch_size, dtype=torch.int64, device=device),
            quiet_until=torch.zeros(batch_size, dtype=torch.int64, device=device),
            held=torch.full((batch_size,), -1, dtype=torch.int64, device=device),
        )

    def __call__(self, scores: Tensor, state: DetectorState) -> tuple[Tensor, list[list[Event]], DetectorState]:
        """scores (B, F, C) -> smoothed (B, F, C) float32, events per stream, new state. CPU tensors.

        Computed in numpy: a few dozen frames per call make this dispatch-bound in torch.
        """
        B, F, C = scores.shape
        if F == 0:
            return scores.new_zeros(B, 0, C), [[] for _ in range(B)], state
        W = self.window
        x = np.concatenate([state.recent.numpy(), scores.numpy()], axis=1).astype(np.float64)  # (B, W-1+F, C)
        # every window summed in the same order (oldest first), so chunking cannot change the result
        sums = x[:, 0:F].copy()
        for k in range(1, W):
            sums += x[:, k:k + F]  # (B, F, C)
        seen = state.seen.numpy()
        t = seen[:, None] + np.arange(F)  # (B, F) absolute frame index
        smoothed = sums / np.minimum(t + 1, W)[..., None]
        events: list[list[Event]] = [[] for _ in range(B)]
        quiet = state.quiet_until.numpy().copy()
        held = state.held.numpy().copy()
        if self.kind != "none":
            rep = smoothed[..., self._rep]  # (B, F, K)
            best = rep.max(-1)
            arg = rep.argmax(-1)
            # keywords fire at the threshold; anomaly alarms over it, as Bundle.predict labels them
            cand = best >= self.threshold if self.kind == "keyword" else best > self.threshold
            if self.kind == "keyword":  # only where a label rises to the threshold (see the module docstring)
                cur = np.where(cand, arg, -1)  # (B, F) the label held at each frame, -1 if none
                prev = np.concatenate([held[:, None], cur[:, :-1]], axis=1)
                fire = cand & (cur != prev)
                held = cur[:, -1].copy()
            else:
                fire = cand
            for b, f in zip(*np.nonzero(fire), strict=True):  # row-major: each stream's frames in time order
                tf = int(t[b, f])
                if tf >= quiet[b]:
                    label = self.labels[self.reportable[int(arg[b, f])]] if self.kind == "keyword" else "anomaly"
                    events[b].append(Event(self.kind, label, (tf + 1) / self.frame_rate, float(best[b, f]), tf))
                    quiet[b] = tf + max(1, self.refractory_frames)
        new = DetectorState(recent=torch.from_numpy(x[:, x.shape[1] - (W - 1):].astype(np.float32)),
                            seen=torch.from_numpy(seen + F), quiet_until=torch.from_numpy(quiet),
                            held=torch.from_numpy(held))
        return torch.from_numpy(smoothed.astype(np.float32)), events, new
