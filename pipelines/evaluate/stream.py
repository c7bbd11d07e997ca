"""Many streams through the streaming core at once, each exactly as one live session would see it.

Every stream is pushed in chunks of ``chunk_s`` seconds (the last one shorter) and then flushed,
the schedule of a :class:`~ssm_signal.streaming.StreamingSession` fed by a microphone. Streams of one
rate are stacked along the batch dimension of :class:`~ssm_signal.streaming.StreamEngine` (the
state is batched, typed, and streams are independent), so one model call advances up to ``batch``
streams; a stream whose audio ends leaves the batch (its state selected out) for its last, shorter
chunk and its flush. The scores and events of each stream equal one session's (a test checks).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from ssm_signal.events import Event
from ssm_signal.streaming import StreamEngine

if TYPE_CHECKING:
    from ssm_signal.runtime import OnnxModel

log = logging.getLogger("ssm_signal.evaluate")
PROGRESS_EVERY_S = 30.0


@dataclasses.dataclass
class Streamed:
    """One stream's result: scores (F, C) float32 per frame (classification: posteriors), the
    events the engine's detector fired, and the stream's length in seconds."""

    scores: np.ndarray
    events: list[Event]
    seconds: float


def stream_many(engine: StreamEngine | OnnxModel, signals: list[np.ndarray], rate: int, chunk_s: float = 0.1,
                batch: int = 64) -> list[Streamed]:
    """signals: (n_i,) float32 mono (or (n_i, C)) at ``rate`` Hz -> one :class:`Streamed` per signal.

    An exported model (``OnnxModel``, the torch-free runtime's) streams each signal through its own
    session, one after another (``batch`` does not apply)."""
    if not chunk_s > 0:
        raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
    chunk = max(1, int(round(chunk_s * rate)))
    sigs = [s[:, None] if s.ndim == 1 else s for s in signals]
    if not isinstance(engine, StreamEngine):
        progress = _Progress(sum(len(s) for s in sigs) / rate)
        out = [_stream_session(engine.new_session(), s, rate, chunk, progress) for s in sigs]
        progress.done()
        return out
    order = sorted(range(len(sigs)), key=lambda i: -len(sigs[i]))  # longest first: batches stay full longer
    results: list[Streamed | None] = [None] * len(sigs)
    progress = _Progress(sum(len(s) for s in sigs) / rate)
    for start in range(0, len(order), batch):
        ids = order[start:start + batch]
        for i, r in zip(ids, _stream_batch(engine, [sigs[i] for i in ids], rate, chunk, progress), strict=True):
            results[i] = r
    progress.done()
    return results  # type: ignore[return-value]


class _Progress:
    """A log line every PROGRESS_EVERY_S seconds: audio streamed so far, and how fast."""

    def __init__(self, total_s: float):
        self.total_s, self.done_s, self.t0 = total_s, 0.0, time.perf_counter()
        self.next = self.t0 + PROGRESS_EVERY_S

    def add(self, seconds: float) -> None:
        self.done_s += seconds
        now = time.perf_counter()
        if now >= self.next:
            self.next = now + PROGRESS_EVERY_S
            log.info("streamed %.2f of %.2f h of audio (%.0fx real time)", self.done_s / 3600, self.total_s / 3600,
                     self.done_s / (now - self.t0))

    def done(self) -> None:
        dt = time.perf_counter() - self.t0
        if dt >= PROGRESS_EVERY_S:
            log.info("streamed %.2f h of audio in %.0f s (%.0fx real time)", self.total_s / 3600, dt, self.total_s / dt)


def _stream_session(session, sig: np.ndarray, rate: int, chunk: int, progress: _Progress) -> Streamed:
    """One signal through one session (an ``OnnxSession``) in chunks, then flushed."""
    ups = [session.push(sig[pos:pos + chunk], rate) for pos in range(0, len(sig), chunk)] + [session.flush()]
    progress.add(len(sig) / rate)
    return Streamed(np.concatenate([u.frame_scores for u in ups]), [e for u in ups for e in u.events],
                    len(sig) / rate)


def _stream_batch(engine: StreamEngine, sigs: list[np.ndarray], rate: int, chunk: int, progress: _Progress
                  ) -> list[Streamed]:
    """Streams sorted by decreasing length, advanced together chunk by chunk."""
    n = len(sigs)
    scores: list[list[np.ndarray]] = [[] for _ in range(n)]
    events: list[list[Event]] = [[] for _ in range(n)]
    active = list(range(n))  # stream indices in the state's batch order
    state = engine.init_state(n)

    def collect(idx: list[int], out) -> None:
        for b, i in enumerate(idx):
            scores[i].append(out.scores[b].numpy())
            events[i] += out.events[b]

    pos = 0
    while active:
        full = [i for i in active if len(sigs[i]) >= pos + chunk]
        ending = [i for i in active if len(sigs[i]) < pos + chunk]
        if ending:  # the last, shorter chunk and the flush of each stream that ends here, one by one
            for i in ending:
                sub = state.select([active.index(i)])
                rest = sigs[i][pos:]
                if len(rest):
                    out, sub = engine.process(torch.from_numpy(np.ascontiguousarray(rest[None])), rate, sub)
                    collect([i], out)
                out, _ = engine.flush(sub)
                collect([i], out)
            if full:
                state = state.select([active.index(i) for i in full])
            active = full
        if not active:
            break
        x = torch.from_numpy(np.stack([sigs[i][pos:pos + chunk] for i in active]))
        out, state = engine.process(x, rate, state)
        collect(active, out)
        progress.add(len(active) * chunk / rate)
        pos += chunk
    width = engine.width
    return [Streamed(np.concatenate(s) if s else np.zeros((0, width), np.float32), e, len(sig) / rate)
            for s, e, sig in zip(scores, events, sigs, strict=True)]
