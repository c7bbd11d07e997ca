"""Replaying a recorded sensor series as a live stream: the logic behind the demo's "Replay a stream" view.

    rec = read_recording("data/sensor_anomaly/table.parquet", engine, "s030")   # a table the scorer reads
    replay = Replay(engine, rec, speed=100)        # one per browser session
    for view in replay.play():                     # paced: stream time runs ``speed`` times wall time
        view.live.values, view.live.log, view.alarms, view.labelled, view.position_s, view.live.rtf
    replay.stop()                                  # from another thread: play() returns at its next chunk
    replay.reset()                                 # back to the start, a fresh stream

The series goes chunk by chunk through a :class:`~ssm_signal.streaming.live.LiveStream`, i.e. the same
:class:`~ssm_signal.streaming.StreamingSession` the microphone view and the scorer use, so what the page shows
for a replayed table is what a live sensor feed at that rate would give. A table has no rate of its own: its
rows are read at the model's rate, as in training and scoring. Tables: the long layout of
:mod:`ssm_signal.data.sensor_tables` (series_id, [split,] time, channel columns, [label, kind]); a table
without ``series_id`` is one series; a ``label`` column (0 normal, 1 anomaly) marks the labelled anomalies.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ssm_signal.events import Event
from ssm_signal.streaming.engine import StreamEngine
from ssm_signal.streaming.live import Limits, LiveStream, LiveView

TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")


@dataclasses.dataclass
class Recording:
    """One series to replay: x (L, C) float32 at ``rate`` Hz, the channel names, label (L,) int64 or None."""

    name: str
    x: np.ndarray
    rate: int
    channels: list[str]
    label: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        return len(self.x) / self.rate

    def labelled(self, upto: int | None = None) -> list[tuple[float, float]]:
        """The labelled anomalies among the first ``upto`` samples, as (start, end) seconds."""
        if self.label is None:
            return []
        lab = np.asarray(self.label[:upto] > 0, np.int8)
        edges = np.diff(np.concatenate([[0], lab, [0]]))
        return [(a / self.rate, b / self.rate) for a, b in
                zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]


def series_choices(path: str | Path, channels: int) -> list[tuple[str, str]]:
    """(label, series id) of every series of a table, those outside the ``train`` split first; ValueError with a
    one-line reason for a table the model cannot replay (wrong channel count, not a table, unreadable)."""
    from ssm_signal.data.sensor_tables import table_series

    p = Path(path)
    if not p.name.lower().endswith(TABLE_SUFFIXES):
        raise ValueError(f"{p.name}: not a sensor table (CSV or Parquet with channel columns)")
    try:
        series = table_series(p, channels)
    except Exception as e:  # DataError, parser errors: one line for the page
        raise ValueError(f"{p.name}: {e}") from None
    series.sort(key=lambda s: s.split == "train")
    return [(f"{s.series_id or p.stem}" + (f" ({s.split})" if s.split else "") + (
        f", {int((np.diff(np.concatenate([[0], s.label > 0, [0]]).astype(np.int8)) == 1).sum())} labelled anomalies"
        if s.label is not None else ""), s.series_id) for s in series]


def read_recording(path: str | Path, engine: StreamEngine, series: str | None = None,
                   limits: Limits | None = None) -> Recording:
    """Series ``series`` (None: the first outside ``train``) of a table, to replay with ``engine``'s model.
    ValueError with a one-line reason when the table cannot be replayed."""
    from ssm_signal.data.sensor_tables import table_series

    limits = limits or Limits()
    p = Path(path)
    if engine.audio:
        raise ValueError("this model listens to audio: replay a sensor table with a sensor model")
    if not p.is_file():
        raise ValueError(f"{p.name}: not a file")
    if p.stat().st_size > limits.max_upload_bytes:
        raise ValueError(f"{p.name}: {p.stat().st_size / 2**20:.1f} MB is over the upload limit of "
                         f"{limits.max_upload_bytes / 2**20:.0f} MB")
    choices = series_choices(p, engine.in_channels)  # the format checks, with their one-line errors
    ids = [sid for _, sid in choices]
    if series is not None and series not in ids:
        raise ValueError(f"{p.name}: no series {series!r} (it has {', '.join(ids[:6])})")
    sid = series if series is not None else ids[0]
    s = next(s for s in table_series(p, engine.in_channels) if s.series_id == sid)
    if len(s.x) > limits.max_replay_samples:
        raise ValueError(f"{p.name}: series {sid!r} has {len(s.x)} rows, over the replay limit of "
                         f"{limits.max_replay_samples}")
    from ssm_signal.data.sensor_tables import channel_columns, read_table

    names = channel_columns(read_table(p).head(1), p.name)
    return Recording(f"{p.name} · {sid}" if sid else p.name, s.x, engine.rate, names, s.label)


def find_recordings(root: str | Path, channels: int, max_depth: int = 3) -> list[tuple[str, str]]:
    """Example series under ``root`` (the data the project sets up) that a model with ``channels`` channels
    can replay: (label, "path::series_id"), outside the ``train`` split only. Tables that do not fit are
    left out silently: they are other models' data."""
    root = Path(root)
    out: list[tuple[str, str]] = []
    if not root.is_dir():
        return out
    tables = sorted({p for depth in range(1, max_depth + 1) for suffix in (".parquet", ".csv")
                     for p in root.glob("*/" * (depth - 1) + f"*{suffix}")})
    for table in tables:
        try:
            choices = series_choices(table, channels)
        except ValueError:
            continue
        out += [(f"{table.parent.name}/{table.name} · {label}", f"{table}::{sid}") for label, sid in choices
                if "(train)" not in label]
    return out


def split_choice(value: str) -> tuple[str, str | None]:
    """"path::series_id" (what :func:`find_recordings` lists) -> (path, series id); a bare path -> (path, None)."""
    path, sep, sid = value.rpartition("::")
    return (path, sid) if sep else (value, None)


@dataclasses.dataclass
class ReplayView:
    """What to show. live: the session's view (smoothed scores over the whole series so far, the detection log,
    latency, real-time factor); times (P,) and x (P, C): the channels so far, thinned to a few thousand points;
    alarms: every event of this replay; labelled: the labelled anomalies so far, (start, end) seconds;
    threshold: the detector's threshold (one number, or label -> threshold); position_s / total_s; speed;
    status: "ready", "playing", "stopped" or "finished"."""

    live: LiveView
    name: str
    channels: list[str]
    times: np.ndarray
    x: np.ndarray
    alarms: list[Event]
    labelled: list[tuple[float, float]]
    threshold: float | dict[str, float]
    kind: str
    position_s: float
    total_s: float
    speed: float
    status: str


class Replay:
    """One replayed series: a LiveStream fed from a :class:`Recording`, paced at ``speed`` x real time.

    tick_s: wall seconds of stream per chunk at speed 1 (a chunk holds tick_s * speed seconds of samples);
    max_points: points per plotted curve (channels and scores are thinned to this many)."""

    def __init__(self, engine: StreamEngine, recording: Recording, limits: Limits | None = None, *,
                 speed: float = 1.0, tick_s: float = 0.2, max_points: int = 3000):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.engine, self.recording, self.speed, self.tick_s, self.max_points = engine, recording, speed, tick_s, max_points
        # the replay's own limits: the whole series, however long it runs at this rate, and a log that holds
        # every event of a chunk (the alarms are read from it)
        limits = dataclasses.replace(limits or Limits(), max_session_seconds=recording.seconds + 1.0, log_size=10_000)
        self.live = LiveStream(engine, limits, plot_labels=engine.width)
        self._lock = threading.Lock()
        self._run = 0  # each play() runs while this is its own number: stop() and reset() move it on
        self.reset()

    @property
    def position(self) -> int:
        return self._pos

    def reset(self) -> ReplayView:
        """Back to the start: a fresh stream (stops a replay that is playing)."""
        with self._lock:
            self._run += 1
            self.live.reset()
            self.live.keep_timeline(self.recording.seconds, self.max_points)
            self._pos, self._alarms, self._status = 0, [], "ready"
            return self._view()

    def stop(self) -> None:
        """Ask a playing replay to stop after its current chunk; it can go on with :meth:`play`."""
        with self._lock:
            self._run += 1

    def view(self) -> ReplayView:
        with self._lock:
            return self._view()

    def play(self, yield_every_s: float = 0.4, clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> Iterator[ReplayView]:
        """Stream the rest of the series chunk by chunk, each chunk when its stream time has come at
        ``speed``; yield a view at most every ``yield_every_s`` wall seconds and a last one when it ends or
        stops. At the end the session is flushed (its final frames) and the status is "finished"."""
        rec = self.recording
        # at a high speed a tick holds many samples: at most what the engine takes in one chunk
        chunk = max(1, min(int(round(self.tick_s * self.speed * rec.rate)),
                           int(self.engine.config.max_chunk_seconds * rec.rate)))
        with self._lock:
            if self._status == "finished":
                view = self._view()
            else:
                self._run += 1  # a replay still playing (another call) stops: one stream, one feeder
                mine, self._status, view = self._run, "playing", None
                start_pos, t0 = self._pos, clock()
        if view is not None:
            yield view
            return
        shown = t0
        while (step := self._step(mine, chunk)) is not None:
            end, refused = step
            if refused is not None:
                yield refused
                return
            due = t0 + (end - start_pos) / rec.rate / self.speed  # when the next chunk's samples have arrived
            if clock() - shown >= yield_every_s:
                yield self.view()
                shown = clock()  # after the consumer took it: a slow page gets fewer views, not a slower replay
            sleep(max(0.0, due - clock()))
        with self._lock:
            if self._status == "playing":
                self._status = "stopped"
            view = self._view()
        yield view

    def _step(self, mine: int, chunk: int) -> tuple[int, ReplayView | None] | None:
        """Push the next chunk for play call ``mine``: (the position after it, a view if the chunk was refused);
        None when this call is to stop (stopped, reset, or the series has ended and was flushed)."""
        rec = self.recording
        with self._lock:
            if self._run != mine:
                return None
            if self._pos >= len(rec.x):
                self._take_alarms(self.live.finish())
                self._status = "finished"
                return None
            end = min(len(rec.x), self._pos + chunk)
            view = self.live.push(rec.x[self._pos:end], rec.rate)
            if view.message:
                self._status = "stopped"
                return end, self._view(view)
            self._pos = end
            self._take_alarms(view)
            return end, None

    # -- internals -----------------------------------------------------------------------------------
    def _take_alarms(self, view: LiveView) -> None:
        """Record the events of ``view``'s log (newest first) that came after the last one recorded."""
        last = self._alarms[-1].frame if self._alarms else -1
        self._alarms += sorted((e for e in view.log if e.frame > last), key=lambda e: e.frame)

    def _view(self, live: LiveView | None = None) -> ReplayView:
        rec, pos = self.recording, self._pos
        every = max(1, int(np.ceil(pos / self.max_points))) if pos else 1
        idx = np.arange(every - 1, pos, every)
        det = self.engine.detector
        return ReplayView(
            live=live or self.live.view(), name=rec.name, channels=rec.channels, times=(idx + 1) / rec.rate,
            x=rec.x[idx], alarms=list(self._alarms), labelled=rec.labelled(pos), threshold=det.threshold,
            kind=self.engine.kind, position_s=pos / rec.rate, total_s=rec.seconds, speed=self.speed,
            status=self._status)
