"""What a live demo shows, computed without any UI toolkit: the logic behind ``app/``.

    live = LiveStream(engine)                     # one per browser session
    view = live.push(chunk, 48000)                # never raises: errors become view.message
    view.top_label, view.top_score, view.curves, view.log, view.latency_ms, view.rtf
    for view in live.play_file("clip.wav"): ...   # an uploaded file, through the same streaming path

A :class:`LiveStream` wraps one session (a torch :class:`StreamingSession`, or the torch-free
``OnnxSession`` of an exported model: whatever its engine's ``new_session`` makes) and keeps bounded histories for
display: the smoothed scores of the last ``history_seconds`` (decimated for plotting), the
last ``log_size`` events and the last chunk latencies. Memory stays constant however long
the stream runs; ``Limits`` caps a session's duration, uploads' size and duration, and
(:class:`Admission`) the number of live streams served at once.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.bundle import CONFIG_FILE, FORMAT, WEIGHTS_FILE
from ssm_signal.events import Event
from ssm_signal.signal_input import check_sample_rate
from ssm_signal.streaming.engine import StreamEngine

if TYPE_CHECKING:
    from ssm_signal.runtime import OnnxModel
from ssm_signal.streaming.session import Update


@dataclasses.dataclass
class Limits:
    """max_session_seconds: audio one live session may stream before it must be reset;
    max_upload_bytes / max_upload_seconds: the largest file accepted; max_live_sessions: live
    streams served at once (others are told to wait); history_seconds: the rolling plot's span;
    log_size: events kept in the log; idle_seconds: a live stream silent this long frees its place;
    max_replay_samples: the longest sensor series a replay takes (rows of a table)."""

    max_session_seconds: float = bounded(600.0, gt=0)
    max_upload_bytes: int = bounded(50 * 2**20, ge=1)
    max_upload_seconds: float = bounded(600.0, gt=0)
    max_live_sessions: int = bounded(8, ge=1)
    history_seconds: float = bounded(10.0, gt=0)
    log_size: int = bounded(50, ge=1)
    idle_seconds: float = bounded(10.0, gt=0)
    max_replay_samples: int = bounded(500_000, ge=1)

    def __post_init__(self):
        check_bounds(self)  # a zero or negative limit would refuse everything, or nothing, without a word


@dataclasses.dataclass
class LiveView:
    """A snapshot of what to show.

    top_label/top_score: the best label at the latest frame (smoothed scores; anomaly: the score);
    curves: times (T,) seconds and values (T, K) for ``curve_labels`` (K labels); log: recent
    events, newest first; latency_ms / latency_p95_ms: processing time per chunk; rtf: real-time
    factor of the last chunk; backlog_s; stream_s: seconds streamed; frames; message: an error
    or limit notice for the user (None when all is well). rtf is the stream's mean so far (total
    processing time / total audio), latency_ms the last chunk's."""

    top_label: str | None = None
    top_score: float = 0.0
    curve_labels: list[str] = dataclasses.field(default_factory=list)
    times: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    log: list[Event] = dataclasses.field(default_factory=list)
    latency_ms: float = 0.0
    latency_p95_ms: float = 0.0
    rtf: float = 0.0
    backlog_s: float = 0.0
    stream_s: float = 0.0
    frames: int = 0
    message: str | None = None


class LiveStream:
    """One displayed stream: a StreamingSession plus bounded display histories.

    plot_labels: at most this many labels are drawn (the highest over the plotted span;
    classification only); plot_rate: points per second in the plot.
    """

    def __init__(self, engine: StreamEngine | OnnxModel, limits: Limits | None = None, *, plot_labels: int = 5,
                 plot_rate: float = 25.0):
        self.engine = engine
        self.limits = limits or Limits()
        self.plot_labels, self.plot_rate = plot_labels, plot_rate
        self._lock = threading.Lock()
        self._new_session()

    def _new_session(self) -> None:
        self.session = self.engine.new_session()
        fr = self.engine.frame_rate
        self._every = max(1, int(round(fr / self.plot_rate)))  # plot every k-th frame
        n = int(self.limits.history_seconds * fr / self._every) + 1
        self._times: collections.deque = collections.deque(maxlen=n)
        self._values: collections.deque = collections.deque(maxlen=n)
        self._log: collections.deque = collections.deque(maxlen=self.limits.log_size)
        self._lat: collections.deque = collections.deque(maxlen=200)
        self._last: Update | None = None
        self._top: tuple[str | None, float] = (None, 0.0)
        self._work = self._audio = 0.0  # processing seconds and audio seconds, for the mean RTF

    def keep_timeline(self, seconds: float, max_points: int | None = None) -> None:
        """Keep the plotted history of a whole recording of ``seconds`` (a replayed table), at most ``max_points``
        points (None: at the plot rate). Clears the history: call it before streaming."""
        with self._lock:
            self._widen(seconds, max_points)

    def finish(self) -> LiveView:
        """End the stream: flush the session (its last frames and events) and return the final view."""
        with self._lock:
            self._record(self.session.flush())
            return self._view(None)

    def _widen(self, seconds: float, max_points: int | None = None) -> None:
        frames = seconds * self.engine.frame_rate
        if max_points is not None:
            self._every = max(1, int(np.ceil(frames / max_points)))
        n = int(frames / self._every) + 2
        self._times = collections.deque(maxlen=n)
        self._values = collections.deque(maxlen=n)

    # -- live -------------------------------------------------------------------------------------
    def push(self, samples, sample_rate) -> LiveView:
        """Process a chunk; a bad chunk or a reached limit gives a view with ``message`` set."""
        with self._lock:
            if self.session.seconds >= self.limits.max_session_seconds:
                return self._view(f"session time limit ({self.limits.max_session_seconds:g} s) reached: "
                                  "press Reset to start again")
            try:
                update = self.session.push(samples, sample_rate)
            except ValueError as e:
                return self._view(f"chunk refused: {e}")
            self._record(update)
            return self._view(None)

    def reset(self) -> LiveView:
        with self._lock:
            self._new_session()
            return self._view(None)

    def view(self) -> LiveView:
        with self._lock:
            return self._view(None)

    # -- files ------------------------------------------------------------------------------------
    def play_file(self, path: str | Path, chunk_seconds: float = 1.0, yield_every_s: float = 0.5
                  ) -> Iterator[LiveView]:
        """Stream a file through a fresh session in ``chunk_seconds`` chunks (as fast as it goes).

        Yields progress views now and then and a final view whose curves hold the whole file's
        timeline. Non-audio, empty, too large or too long files give one view with ``message``.
        """
        try:
            samples, rate = self._read_upload(path)
        except ValueError as e:
            yield LiveView(message=str(e))
            return
        with self._lock:
            self._new_session()
            self._widen(len(samples) / rate)
        step = max(1, int(chunk_seconds * rate))
        t_yield = time.perf_counter()
        for start in range(0, len(samples), step):
            with self._lock:
                self._record(self.session.push(samples[start:start + step], rate))
            if time.perf_counter() - t_yield >= yield_every_s:
                t_yield = time.perf_counter()
                yield self.view()
        yield self.finish()

    def _read_upload(self, path) -> tuple[np.ndarray, int]:
        if path is None:
            raise ValueError("no file given")
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"{p.name}: not a file")
        size = p.stat().st_size
        if size > self.limits.max_upload_bytes:
            raise ValueError(f"{p.name}: {size / 2**20:.1f} MB is over the upload limit of "
                             f"{self.limits.max_upload_bytes / 2**20:.0f} MB")
        # soundfile only here: the streaming package itself runs where it is not installed (GPU hosts)
        from ssm_signal.data.audio_io import audio_info, read_audio_with_rate

        try:
            info = audio_info(p)
        except ValueError:
            raise ValueError(f"{p.name}: not an audio file this demo can read (WAV, FLAC, OGG, MP3)") from None
        if info.duration > self.limits.max_upload_seconds:
            raise ValueError(f"{p.name}: {info.duration:.0f} s is longer than the limit of "
                             f"{self.limits.max_upload_seconds:g} s")
        wave, rate = read_audio_with_rate(p)
        check_sample_rate(rate, self.engine.rate, self.engine.audio)
        return wave.numpy(), rate

    # -- display state ------------------------------------------------------------------------------
    def _record(self, u: Update) -> None:
        if u.timing.audio_s > 0:
            self._lat.append(u.timing.processing_s)
        self._work += u.timing.processing_s
        self._audio += u.timing.audio_s
        self._last = u
        for e in u.events:
            self._log.appendleft(e)
        if u.n_frames:
            keep = (np.arange(u.first_frame, u.first_frame + u.n_frames) % self._every) == self._every - 1
            for t, v in zip(u.frame_times[keep], u.smoothed[keep], strict=True):
                self._times.append(float(t))
                self._values.append(v)
            top = u.top()
            if self.engine.kind != "keyword":
                top = (self.engine.labels[0], float(u.smoothed[-1, 0]))
            self._top = top

    def _view(self, message: str | None) -> LiveView:
        labels = self.engine.labels
        values = np.array(self._values, dtype=np.float32).reshape(-1, len(labels))
        idx = list(range(len(labels)))
        if len(idx) > self.plot_labels:  # the labels that matter over the plotted span
            order = np.argsort(-values.max(0)) if len(values) else np.arange(len(labels))
            idx = sorted(order[:self.plot_labels].tolist())
        lat = np.array(self._lat) * 1e3
        last = self._last
        return LiveView(
            top_label=self._top[0], top_score=self._top[1],
            curve_labels=[labels[i] for i in idx], times=np.array(self._times), values=values[:, idx],
            log=list(self._log),
            latency_ms=float(lat[-1]) if len(lat) else 0.0,
            latency_p95_ms=float(np.percentile(lat, 95)) if len(lat) else 0.0,
            rtf=self._work / self._audio if self._audio else 0.0, backlog_s=last.timing.backlog_s if last else 0.0,
            stream_s=self.session.seconds, frames=self.session.frames, message=message,
        )


class Admission:
    """At most ``limit`` live streams at once; a stream silent for ``idle_seconds`` frees its place."""

    def __init__(self, limit: int, idle_seconds: float = 10.0):
        self.limit, self.idle_seconds = limit, idle_seconds
        self._seen: dict[object, float] = {}
        self._lock = threading.Lock()

    def admit(self, key) -> bool:
        now = time.monotonic()
        with self._lock:
            for k in [k for k, t in self._seen.items() if now - t > self.idle_seconds]:
                del self._seen[k]
            if key in self._seen or len(self._seen) < self.limit:
                self._seen[key] = now
                return True
            return False

    def release(self, key) -> None:
        with self._lock:
            self._seen.pop(key, None)

    @property
    def active(self) -> int:
        return len(self._seen)


def find_bundles(root: str | Path = "artifacts", max_depth: int = 3) -> list[dict]:
    """Bundle directories under ``root`` (a config.json and a model.safetensors): name, version, source."""
    root = Path(root)
    found = []
    if not root.is_dir():
        return found
    configs = sorted({p for depth in range(1, max_depth + 1) for p in root.glob("*/" * depth + CONFIG_FILE)})
    for cfg in configs:
        d = cfg.parent
        if not (d / WEIGHTS_FILE).is_file():
            continue
        try:
            meta = json.loads(cfg.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            continue
        found.append({"name": str(meta.get("name", d.name)), "version": str(meta.get("version", "")),
                      "source": str(d)})
    return found
