"""StreamingSession: one live stream, the stateful shell around :class:`StreamEngine`.

    session = StreamingSession(bundle)
    for chunk in microphone:                        # int16 or float, (n,) or (n, channels), any size
        update = session.push(chunk, 48000)         # any rate in 8-192 kHz (resampled causally)
        update.frame_scores, update.events, update.timing.rtf
    last = session.flush()                          # end of stream: the final frames
    blob = session.snapshot()                       # bytes (safetensors: state tensors + JSON metadata)
    later = StreamingSession.restore(bundle, blob)  # resumes exactly where the snapshot was taken

A bad chunk (NaN, wrong dtype or channel count, an absurd rate, longer than
``max_chunk_seconds``) raises ValueError and leaves the session as it was; an empty chunk
is a no-op. Nothing is reset behind the caller's back: after ``flush`` the session refuses
more samples until ``reset``, and a change of sample rate mid-stream is an error too.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import torch

from ssm_signal import snapshot
from ssm_signal.bundle import Bundle
from ssm_signal.signal_input import as_samples, takes_rate
from ssm_signal.streaming.engine import (
    EngineOutput,
    EngineState,
    StreamConfig,
    StreamEngine,
)
from ssm_signal.updates import StreamViews, Timing, Update


def model_fingerprint(bundle: Bundle) -> str:
    """The bundle's fingerprint (name, version, config and weights): snapshots check it."""
    return bundle.fingerprint


class StreamingSession(StreamViews):
    """One live stream of a bundle. Thread-safe (calls are serialised); one stream only."""

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, config: StreamConfig | None = None,
                 *, engine: StreamEngine | None = None):
        if engine is not None and engine.bundle is not bundle:
            raise ValueError("engine was built for another bundle")
        self.engine = engine or StreamEngine(bundle, device, config)
        self.bundle = bundle
        self._lock = threading.Lock()
        self._labels = self.engine.labels
        self._state = self.engine.init_state(1)
        self._backlog = 0.0

    @classmethod
    def from_engine(cls, engine: StreamEngine) -> StreamingSession:
        """A new stream sharing ``engine`` (its model, compiled step and resampler filters)."""
        return cls(engine.bundle, engine=engine)

    # -- the stream -------------------------------------------------------------------------------
    def push(self, samples, sample_rate: int) -> Update:
        """Process a chunk: (n,) or (n, channels), int PCM or float, at ``sample_rate`` Hz."""
        x = as_samples(samples, self.engine.in_channels)  # validate before touching the state
        with self._lock:
            t0 = time.perf_counter()
            out, state = self.engine.process(x.unsqueeze(0), sample_rate, self._state)
            elapsed = time.perf_counter() - t0
            self._state = state
            return self._update(out, elapsed, x.shape[0] / int(sample_rate), final=False)

    def flush(self) -> Update:
        """End the stream and return the final update (the resampler's tail). Then reset to reuse."""
        with self._lock:
            t0 = time.perf_counter()
            out, state = self.engine.flush(self._state)
            elapsed = time.perf_counter() - t0
            self._state = state
            return self._update(out, elapsed, 0.0, final=True)

    def reset(self) -> None:
        """Forget everything: the next chunk starts a new stream (at any rate)."""
        with self._lock:
            self._state = self.engine.init_state(1)
            self._backlog = 0.0

    def _update(self, out: EngineOutput, elapsed: float, audio_s: float, final: bool) -> Update:
        self._backlog = max(0.0, self._backlog + elapsed - audio_s)
        return Update.of_frames(out.scores[0].numpy(), out.smoothed[0].numpy(), out.first_frame, self.engine.frame_rate,
                                out.events[0], Timing.of(elapsed, audio_s, self._backlog), self.labels, final)

    # -- snapshots ---------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The stream's state as safetensors bytes (tensors + JSON metadata; no pickling)."""
        with self._lock:
            return encode_snapshot(self.bundle, self._state, self._backlog, self.labels)

    @classmethod
    def restore(cls, bundle: Bundle, blob: bytes, device: torch.device | str | None = None,
                config: StreamConfig | None = None, *, engine: StreamEngine | None = None) -> StreamingSession:
        """A session resuming the stream captured by :meth:`snapshot` (same bundle required); a
        StreamPool's ``snapshot`` of one stream restores here too."""
        check_snapshot_bundle(bundle, blob)
        session = cls(bundle, device, config, engine=engine)
        session._state, session._backlog = decode_snapshot(session.engine, blob)
        return session


def encode_snapshot(bundle: Bundle, state: EngineState, backlog: float, labels: list[str]) -> bytes:
    """One stream's state (batch 1), backlog and score labels as snapshot bytes (:mod:`ssm_signal.snapshot`)."""
    arrays = {k: v.detach().cpu().contiguous().numpy().copy() for k, v in state.state_dict().items()}
    return snapshot.make(arrays, bundle=bundle.name, version=bundle.version, fingerprint=model_fingerprint(bundle),
                         backlog_s=backlog, labels=labels)


def check_snapshot_bundle(bundle: Bundle, blob) -> None:
    """Refuse what is not a stream snapshot of this bundle (format, version, fingerprint), before any
    engine is built for it."""
    snapshot.check_header(blob, bundle=bundle.name, version=bundle.version, fingerprint=model_fingerprint(bundle))


def decode_snapshot(engine: StreamEngine, blob: bytes) -> tuple[EngineState, float]:
    """Snapshot bytes -> (the stream's EngineState, batch 1, model state on the engine's device; its
    backlog in seconds), after checking them all: the bundle, the checksum, the structure, and the
    dtypes, finiteness and ranges of every tensor (:mod:`ssm_signal.snapshot`)."""
    b = engine.bundle
    arrays, backlog = snapshot.open_snapshot(blob, bundle=b.name, version=b.version, fingerprint=model_fingerprint(b))

    def template(rate: int) -> dict:
        return {k: v.numpy() for k, v in engine.init_state(1, rate or None).state_dict().items()}

    snapshot.check_stream(arrays, rate_ok=lambda r: takes_rate(r, engine.rate, engine.audio), template_for=template,
                          samples_per_frame=engine.samples_per_frame, design_for=lambda r: engine.resampler(r).design)
    state = EngineState.from_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    return dataclasses.replace(state, model=state.model.to(engine.device)), backlog

