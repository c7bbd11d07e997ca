"""OnnxSession: one live stream of an exported model, with numpy and onnxruntime only.

    session = OnnxSession("artifacts/kws_default/onnx")      # or OnnxSession(OnnxModel(...))
    for chunk in microphone:                                 # int16 or float, (n,) or (n, channels)
        update = session.push(chunk, 48000)                  # any rate in 8-192 kHz (resampled causally)
        update.frame_scores, update.events, update.timing.rtf
    last = session.flush()                                   # the end of the stream: the final frames
    blob = session.snapshot()                                # bytes, the format of StreamingSession's
    later = OnnxSession.restore(model, blob)                 # resumes exactly where the snapshot was taken

The same stream as the torch ``StreamingSession`` (``ssm_signal.streaming``), stage for stage: the
input rules (:mod:`ssm_signal.signal_input`), the causal polyphase resampler (its numpy twin,
:mod:`ssm_signal.polyphase`), framing with a pending partial frame, the model (the exported graphs),
the scores and the event detector (:mod:`ssm_signal.events`, the same code). Snapshots are
interchangeable with the torch session's (:mod:`ssm_signal.snapshot`: the same keys, checks and
fingerprint, the bundle's). A bad chunk raises ValueError and leaves the session as it was; after
``flush`` the session refuses samples until ``reset``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ssm_signal import snapshot
from ssm_signal.events import DetectorArrays
from ssm_signal.polyphase import PolyphaseResampler, ResamplerArrays
from ssm_signal.runtime.model import OnnxModel, RuntimeConfig
from ssm_signal.signal_input import admit, as_array, takes_rate
from ssm_signal.updates import StreamViews, Timing, Update

WINDOW_SECONDS = 10.0  # long pushes are resampled and run in windows of this much input (bounded memory)


@dataclasses.dataclass(frozen=True)
class StreamArrays:
    """Everything one stream remembers (the numpy twin of ``EngineState``, batch 1): the resampler's state
    (None until the first samples fix the rate), the pending samples of the unfinished frame (the first
    ``n_pending`` of ``pending`` (1, hop, C)), the model's state tensors, the detector's; and (1,) int64:
    the input rate (0: not yet known), the input samples received, 1 once flushed."""

    resampler: ResamplerArrays | None
    pending: np.ndarray
    n_pending: int
    model: Mapping[str, np.ndarray]  # the latest a FrameLoop returned is its buffers, read-only
    detector: DetectorArrays
    input_rate: np.ndarray
    samples_in: np.ndarray
    finished: np.ndarray


class OnnxSession(StreamViews):
    """One live stream of an exported model. Thread-safe (calls are serialised); one stream only."""

    def __init__(self, model: OnnxModel | str | Path, config: RuntimeConfig | None = None):
        if not isinstance(model, OnnxModel):
            model = OnnxModel(model, config)
        elif config is not None:
            raise ValueError("pass a RuntimeConfig when loading the model, not with a loaded one")
        self.model = model
        self._labels = model.labels
        self._lock = threading.Lock()
        self._resamplers: dict[int, PolyphaseResampler] = {}
        self._state = self._fresh(0)
        self._backlog = 0.0
        self._loop = model.frame_loop()  # one-frame pushes step through it (its state: see FrameLoop)

    # -- the stream -------------------------------------------------------------------------------
    def push(self, samples, sample_rate: int) -> Update:
        """Process a chunk: (n,) or (n, channels), int PCM or float, at ``sample_rate`` Hz."""
        x = as_array(samples, self.model.in_channels)  # validate before touching the state
        with self._lock:
            t0 = time.perf_counter()
            st = self._state
            m = self.model
            known = int(st.input_rate[0])
            rate = admit(x.shape[0], x.shape[1], sample_rate, in_channels=m.in_channels, model_rate=m.rate,
                         audio=m.audio, input_rate=known, finished=self.finished,
                         max_chunk_seconds=m.config.max_chunk_seconds)
            if known == 0 and x.shape[0] == 0:  # no samples say nothing of the rate
                return Update.empty(m.width, self.frames, self._backlog, self.labels)
            if known == 0:
                st = dataclasses.replace(st, resampler=self._resampler(rate).init_state(1), input_rate=_i64(rate))
            r, parts = self._resampler(rate), []
            window = max(1, int(WINDOW_SECONDS * rate))
            for start in range(0, max(x.shape[0], 1), window):
                y, rs = r(x[None, start:start + window], st.resampler)
                out, st = self._frames(y, dataclasses.replace(st, resampler=rs))
                parts.append(out)
            self._state = dataclasses.replace(st, samples_in=st.samples_in + x.shape[0])
            return self._update(parts, time.perf_counter() - t0, x.shape[0] / rate, final=False)

    def flush(self) -> Update:
        """End the stream: the resampler's last samples and the frames they complete (a final partial
        frame is dropped, as in ``Bundle.predict``). Then ``reset`` to reuse the session."""
        with self._lock:
            t0 = time.perf_counter()
            st = self._state
            if self.finished:
                raise ValueError("the stream was already flushed; reset it to start a new one")
            parts = []
            if st.resampler is not None:
                tail, rs = self._resampler(int(st.input_rate[0])).flush(st.resampler)
                out, st = self._frames(tail, dataclasses.replace(st, resampler=rs))
                parts.append(out)
            self._state = dataclasses.replace(st, finished=_i64(1))
            return self._update(parts, time.perf_counter() - t0, 0.0, final=True)

    def reset(self) -> None:
        """Forget everything: the next chunk starts a new stream (at any rate)."""
        with self._lock:
            self._state, self._backlog = self._fresh(0), 0.0

    def _frames(self, y: np.ndarray, st: StreamArrays) -> tuple[tuple, StreamArrays]:
        """Model-rate samples y (1, m, C) -> (scores, smoothed, events, first frame) of the whole frames they
        complete with the pending ones, and the new state (the rest pending)."""
        m, hop = self.model, self.model.samples_per_frame
        buf = np.concatenate([st.pending[:, :st.n_pending], y], axis=1) if st.n_pending else y
        F = buf.shape[1] // hop
        pending = np.zeros_like(st.pending)
        rest = buf.shape[1] - F * hop
        pending[:, :rest] = buf[:, F * hop:]
        st = dataclasses.replace(st, pending=pending, n_pending=rest)
        if F == 0:
            return None, st
        first = int(st.detector.seen[0])
        out, model_state = m.run(buf[:, :F * hop], st.model, self._loop)
        scores = m.scores(out)
        smoothed, events, det = m.detector(scores, st.detector)
        return (scores[0], smoothed[0], events[0], first), dataclasses.replace(st, model=model_state, detector=det)

    def _update(self, parts: list, elapsed: float, audio_s: float, final: bool) -> Update:
        self._backlog = max(0.0, self._backlog + elapsed - audio_s)
        parts = [p for p in parts if p is not None]
        timing = Timing.of(elapsed, audio_s, self._backlog)
        if not parts:
            return dataclasses.replace(Update.empty(self.model.width, self.frames, self._backlog, self.labels, final),
                                       timing=timing)
        return Update.of_frames(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                parts[0][3], self.model.frame_rate, [e for p in parts for e in p[2]], timing,
                                self.labels, final)

    def _resampler(self, rate: int) -> PolyphaseResampler:
        if rate not in self._resamplers:
            self._resamplers[rate] = PolyphaseResampler(rate, self.model.rate, self.model.in_channels)
        return self._resamplers[rate]

    def _fresh(self, rate: int) -> StreamArrays:
        m = self.model
        return StreamArrays(
            resampler=self._resampler(rate).init_state(1) if rate else None,
            pending=np.zeros((1, m.samples_per_frame, m.in_channels), np.float32), n_pending=0,
            model=m.init_model_state(1), detector=m.detector.init_state(1), input_rate=_i64(rate),
            samples_in=_i64(0), finished=_i64(0))

    # -- snapshots ---------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The stream's state as bytes (:mod:`ssm_signal.snapshot`), which this class's and the torch
        ``StreamingSession``'s ``restore`` both read (the same bundle's)."""
        with self._lock:
            b = self.model.sidecar.bundle
            return snapshot.make(to_flat(self._state, self.model), bundle=b["name"], version=b["version"],
                                 fingerprint=b["fingerprint"], backlog_s=self._backlog, labels=self.labels)

    @classmethod
    def restore(cls, model: OnnxModel | str | Path, blob: bytes, config: RuntimeConfig | None = None) -> OnnxSession:
        """A session resuming the stream captured by a snapshot of the same bundle (this class's, or a torch
        ``StreamingSession``'s or ``StreamPool``'s), after checking all of it."""
        session = cls(model, config)
        m = session.model
        b = m.sidecar.bundle
        arrays, backlog = snapshot.open_snapshot(blob, bundle=b["name"], version=b["version"],
                                                 fingerprint=b["fingerprint"])
        snapshot.check_stream(arrays, rate_ok=lambda r: takes_rate(r, m.rate, m.audio),
                              template_for=lambda r: to_flat(session._fresh(r), m),
                              samples_per_frame=m.samples_per_frame, design_for=lambda r: session._resampler(r).design)
        session._state, session._backlog = from_flat(arrays, m), backlog
        return session


_MODEL, _RESAMPLER, _DETECTOR = snapshot.MODEL_KEYS, snapshot.RESAMPLER_KEYS, snapshot.DETECTOR_KEYS


def to_flat(st: StreamArrays, model: OnnxModel) -> dict[str, np.ndarray]:
    """A stream's state as the flat arrays of a snapshot, keyed as the torch ``EngineState.state_dict()``."""
    out: dict[str, np.ndarray] = {}
    if st.resampler is not None:
        for f in ("history", "phase", "primed"):
            out[_RESAMPLER + f] = getattr(st.resampler, f)
    out["resampler.__len__"] = np.array(0 if st.resampler is None else 1, np.int64)
    out["pending"], out["n_pending"] = st.pending, _i64(st.n_pending)
    out |= {_MODEL + k: v for k, v in st.model.items()}
    out |= {_MODEL + k: np.array(v, np.int64) for k, v in model.sidecar.state_markers.items()}
    for f in ("recent", "seen", "quiet_until", "held"):
        out[_DETECTOR + f] = getattr(st.detector, f)
    out["input_rate"], out["samples_in"], out["finished"] = st.input_rate, st.samples_in, st.finished
    return out


def from_flat(a: dict[str, np.ndarray], model: OnnxModel) -> StreamArrays:
    """:func:`to_flat`'s inverse (the arrays checked already)."""
    rs = ResamplerArrays(*(a[_RESAMPLER + f].copy() for f in ("history", "phase", "primed"))) \
        if int(a["resampler.__len__"]) else None
    return StreamArrays(
        resampler=rs, pending=a["pending"].copy(), n_pending=int(a["n_pending"][0]),
        model={s.name: a[_MODEL + s.name].copy() for s in model.sidecar.state},
        detector=DetectorArrays(*(a[_DETECTOR + f].copy() for f in ("recent", "seen", "quiet_until", "held"))),
        input_rate=a["input_rate"].copy(), samples_in=a["samples_in"].copy(), finished=a["finished"].copy())


def _i64(v: int) -> np.ndarray:
    return np.array([v], np.int64)
