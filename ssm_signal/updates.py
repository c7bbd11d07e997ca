"""What a stream's push or flush returns, in numpy: :class:`Update` and its :class:`Timing`; and the
read-only views every one-stream session has (:class:`StreamViews`).

The same types come back from every session, the torch ``StreamingSession`` and ``StreamPool`` and the
torch-free ONNX session, so what shows them (the live page, the evaluation) takes any of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ssm_signal.events import Event


@dataclasses.dataclass(frozen=True)
class Timing:
    """processing_s: wall time this call took; audio_s: duration of the chunk; rtf: real-time
    factor processing_s / audio_s (0 for an empty chunk); backlog_s: seconds of work the stream
    is behind real time if chunks arrive in real time, b <- max(0, b + processing_s - audio_s)
    (a queue's waiting work: it grows only while processing is slower than the audio)."""

    processing_s: float
    audio_s: float
    rtf: float
    backlog_s: float

    @classmethod
    def of(cls, processing_s: float, audio_s: float, backlog_s: float) -> Timing:
        return cls(processing_s, audio_s, processing_s / audio_s if audio_s > 0 else 0.0, backlog_s)


@dataclasses.dataclass
class Update:
    """What one push (or flush) produced.

    frame_scores: (F, C) the new frames' scores (classification: posteriors over ``labels``;
    anomaly: the score, C = 1); smoothed: (F, C) the detector's moving average; frame_times:
    (F,) the end of each frame in seconds of stream time; first_frame: the index of the first
    new frame; events: detections; timing; final: True for the update of ``flush``.
    """

    frame_scores: np.ndarray
    smoothed: np.ndarray
    frame_times: np.ndarray
    first_frame: int
    events: list[Event]
    timing: Timing
    labels: list[str]
    final: bool = False

    @classmethod
    def of_frames(cls, scores: np.ndarray, smoothed: np.ndarray, first_frame: int, frame_rate: float,
                  events: list[Event], timing: Timing, labels: list[str], final: bool = False) -> Update:
        """An update of F new frames, (F, C) scores and smoothed, numbered from ``first_frame``."""
        times = (np.arange(first_frame, first_frame + scores.shape[0]) + 1) / frame_rate
        return cls(scores, smoothed, times, first_frame, events, timing, labels, final)

    @classmethod
    def empty(cls, width: int, first_frame: int, backlog_s: float, labels: list[str], final: bool = False) -> Update:
        """No new frame (C = ``width``)."""
        none = np.zeros((0, width), np.float32)
        return cls(none, none.copy(), np.zeros(0), first_frame, [], Timing.of(0.0, 0.0, backlog_s), labels, final)

    @classmethod
    def merge(cls, updates: list[Update]) -> Update:
        """Consecutive updates of one stream as one (timings summed, the last backlog)."""
        if len(updates) == 1:
            return updates[0]
        last = updates[-1]
        timing = Timing.of(sum(u.timing.processing_s for u in updates), sum(u.timing.audio_s for u in updates),
                           last.timing.backlog_s)
        return cls(np.concatenate([u.frame_scores for u in updates]), np.concatenate([u.smoothed for u in updates]),
                   np.concatenate([u.frame_times for u in updates]), updates[0].first_frame,
                   [e for u in updates for e in u.events], timing, last.labels, any(u.final for u in updates))

    @property
    def n_frames(self) -> int:
        return self.frame_scores.shape[0]

    def top(self) -> tuple[str, float] | None:
        """(label, smoothed score) of the best label at the last new frame; None without frames."""
        if not self.n_frames:
            return None
        i = int(self.smoothed[-1].argmax())
        return self.labels[i], float(self.smoothed[-1, i])


class StreamViews:
    """The read-only views of a one-stream session over its ``_state``, whose ``input_rate``,
    ``samples_in`` and ``finished`` are (1,) integer arrays or tensors and ``detector.seen`` too."""

    _state: Any
    _labels: list[str]  # set once by the session from its model

    @property
    def state(self):
        return self._state

    @property
    def labels(self) -> list[str]:
        """The names of the score columns: the classes, or the anomaly score."""
        return self._labels

    @property
    def sample_rate(self) -> int | None:
        """The stream's input rate (None before the first samples)."""
        return int(self._state.input_rate[0]) or None

    @property
    def frames(self) -> int:
        """Frames emitted so far."""
        return int(self._state.detector.seen[0])

    @property
    def seconds(self) -> float:
        """Input received so far, in seconds."""
        rate = self.sample_rate
        return int(self._state.samples_in[0]) / rate if rate else 0.0

    @property
    def finished(self) -> bool:
        return bool(self._state.finished[0])
