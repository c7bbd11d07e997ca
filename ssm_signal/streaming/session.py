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
import hashlib
import json
import math
import threading
import time

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ssm_signal.bundle import Bundle
from ssm_signal.events import Event
from ssm_signal.signal_input import as_samples, check_sample_rate
from ssm_signal.streaming.engine import (
    EngineOutput,
    EngineState,
    StreamConfig,
    StreamEngine,
)
from ssm_signal.validation import check_state

SNAPSHOT_FORMAT = "ssm-signal-stream"
SNAPSHOT_VERSION = 2  # 2: a checksum over the state


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


def model_fingerprint(bundle: Bundle) -> str:
    """The bundle's fingerprint (name, version, config and weights): snapshots check it."""
    return bundle.fingerprint


def state_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: a snapshot with a flipped byte
    anywhere in its state no longer matches (safetensors itself checks only the layout)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class StreamingSession:
    """One live stream of a bundle. Thread-safe (calls are serialised); one stream only."""

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, config: StreamConfig | None = None,
                 *, engine: StreamEngine | None = None):
        if engine is not None and engine.bundle is not bundle:
            raise ValueError("engine was built for another bundle")
        self.engine = engine or StreamEngine(bundle, device, config)
        self.bundle = bundle
        self._lock = threading.Lock()
        self._state = self.engine.init_state(1)
        self._backlog = 0.0

    @classmethod
    def from_engine(cls, engine: StreamEngine) -> StreamingSession:
        """A new stream sharing ``engine`` (its model, compiled step and resampler filters)."""
        return cls(engine.bundle, engine=engine)

    # -- read-only views ------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return self.engine.labels

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def sample_rate(self) -> int | None:
        """The stream's input rate (None before the first chunk)."""
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
    """One stream's state (batch 1), backlog and score labels as snapshot bytes (safetensors tensors +
    JSON metadata)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.state_dict().items()}
    meta = {
        "format": SNAPSHOT_FORMAT, "format_version": str(SNAPSHOT_VERSION),
        "bundle": bundle.name, "bundle_version": bundle.version,
        "fingerprint": model_fingerprint(bundle),
        "checksum": state_checksum(tensors),
        "session": json.dumps({"backlog_s": backlog, "labels": labels}),
    }
    return st_save(tensors, metadata=meta)


def check_snapshot_bundle(bundle: Bundle, blob) -> None:
    """Refuse what is not a stream snapshot of this bundle (format, version, fingerprint), before any
    engine is built for it."""
    if not isinstance(blob, bytes | bytearray):
        raise ValueError(f"snapshot must be bytes, got {type(blob).__name__}")
    meta = _read_metadata(bytes(blob))
    if meta.get("format") != SNAPSHOT_FORMAT:
        raise ValueError("not a stream snapshot (no ssm-signal-stream metadata)")
    if meta.get("format_version") != str(SNAPSHOT_VERSION):
        raise ValueError(f"stream snapshot version {meta.get('format_version')} is not supported "
                         f"(this ssm-signal reads {SNAPSHOT_VERSION})")
    if meta.get("fingerprint") != model_fingerprint(bundle):
        raise ValueError(f"snapshot was taken with model {meta.get('bundle')!r} version "
                         f"{meta.get('bundle_version')!r}, not with {bundle.name!r} version {bundle.version!r} "
                         "(or its configuration differs)")


def decode_snapshot(engine: StreamEngine, blob: bytes) -> tuple[EngineState, float]:
    """Snapshot bytes -> (the stream's EngineState, batch 1, model state on the engine's device; its
    backlog in seconds), after checking them all: the bundle (:func:`check_snapshot_bundle`), the
    checksum, the structure, and the dtypes, finiteness and ranges of every tensor."""
    check_snapshot_bundle(engine.bundle, blob)
    meta = _read_metadata(bytes(blob))
    try:
        tensors = st_load(bytes(blob))
    except Exception as e:  # safetensors raises its own error types for damaged bytes
        raise ValueError(f"damaged stream snapshot: {e}") from e
    if meta.get("checksum") != state_checksum(tensors):
        raise ValueError("damaged stream snapshot: its state does not match its checksum")
    try:
        state = EngineState.from_state_dict(tensors)
        backlog = float(json.loads(meta.get("session", "{}")).get("backlog_s", 0.0))
    except Exception as e:  # a structure this version does not know
        raise ValueError(f"damaged stream snapshot: {e}") from e
    rate = int(state.input_rate[0]) if state.input_rate.numel() == 1 else -1
    if rate < 0:
        raise ValueError("a stream snapshot holds exactly one stream")
    template = engine.init_state(1, rate or None) if rate == 0 or _rate_ok(engine, rate) else None
    if template is None:
        raise ValueError(f"damaged stream snapshot: input rate {rate} Hz is not one this model takes")
    check_state(state, template, "StreamingSession.restore")
    _check_values(state, template, engine)
    if not (math.isfinite(backlog) and backlog >= 0):
        raise ValueError(f"damaged stream snapshot: backlog_s {backlog!r}")
    return dataclasses.replace(state, model=state.model.to(engine.device)), backlog


def _rate_ok(engine: StreamEngine, rate: int) -> bool:
    try:
        check_sample_rate(rate, engine.rate, engine.audio)
        return True
    except ValueError:
        return False


def _check_values(state: EngineState, template: EngineState, engine: StreamEngine) -> None:
    """A snapshot's tensors hold values a stream can have: the dtypes of a fresh state, finite
    floats, counters in range. (A checksum catches damage; this catches a state written by hand or
    by another program with a checksum recomputed, which would otherwise change scores silently.)"""
    got, want = state.state_dict(), template.state_dict()
    for k, t in got.items():
        if t.dtype != want[k].dtype:
            raise ValueError(f"damaged stream snapshot: {k} has dtype {t.dtype}, expected {want[k].dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"damaged stream snapshot: {k} holds NaN or Inf")

    def within(name: str, t: torch.Tensor, lo: int, hi: int) -> None:
        if t.numel() and not (int(t.min()) >= lo and int(t.max()) <= hi):
            raise ValueError(f"damaged stream snapshot: {name} = {t.tolist()} is outside [{lo}, {hi}]")

    within("n_pending", state.n_pending, 0, engine.samples_per_frame - 1)
    within("samples_in", state.samples_in, 0, 2**62)
    within("finished", state.finished, 0, 1)
    within("detector.seen", state.detector.seen, 0, 2**62)
    if state.resampler:
        r = engine.resampler(int(state.input_rate[0]))
        within("resampler.phase", state.resampler[0].phase, 0, r.down - 1)
        within("resampler.primed", state.resampler[0].primed, 0, r.delay)


def _read_metadata(blob: bytes) -> dict:
    """The JSON header's __metadata__ of safetensors bytes (8-byte little-endian length, then JSON)."""
    if len(blob) < 8:
        raise ValueError("stream snapshot is truncated")
    n = int.from_bytes(blob[:8], "little")
    if not 2 <= n <= len(blob) - 8:
        raise ValueError("stream snapshot is damaged (bad header length)")
    try:
        header = json.loads(blob[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"stream snapshot is damaged (header: {e})") from e
    return header.get("__metadata__", {}) if isinstance(header, dict) else {}
