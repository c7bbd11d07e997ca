"""Replaying a recorded table as a live stream: the same alarms as a session fed the same chunks, paced at the
chosen speed, stopped and resumed without losing a sample, reset to a fresh stream; tables it cannot replay are
refused with a one-line reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssm_signal.data.sensor_tables import write_table
from ssm_signal.streaming import Limits, StreamConfig, StreamEngine, StreamingSession
from ssm_signal.streaming.replay import Replay, find_recordings, read_recording, series_choices, split_choice

EAGER = StreamConfig(compile=False)


class FakeClock:
    """A clock that moves only when the replay sleeps: pacing checked without waiting."""

    def __init__(self):
        self.t, self.slept = 0.0, 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self.slept += s


def table(tmp_path, n=600, channels=2, name="t.parquet"):
    rng = np.random.default_rng(0)
    rows = []
    for sid, split in (("a", "train"), ("b", "test"), ("c", "test")):
        x = rng.normal(0, 0.3, (n, channels))
        label = np.zeros(n, int)
        if split == "test":
            x[300:340] += 6.0  # a level shift the untrained model's forecasts miss by far
            label[300:340] = 1
        df = pd.DataFrame(x, columns=[f"ch{i}" for i in range(channels)])
        df.insert(0, "time", np.arange(n))
        df.insert(0, "split", split)
        df.insert(0, "series_id", sid)
        df["label"] = label
        rows.append(df)
    return write_table(pd.concat(rows), tmp_path / name)


@pytest.fixture
def engine(sensor_bundle):
    return StreamEngine(sensor_bundle, config=EAGER)


def test_replay_gives_the_sessions_alarms_at_the_labelled_anomaly(engine, tmp_path):
    rec = read_recording(table(tmp_path), engine, "b")
    assert rec.rate == 100 and rec.channels == ["ch0", "ch1"] and rec.labelled() == [(3.0, 3.4)]
    clock = FakeClock()
    replay = Replay(engine, rec, speed=10, tick_s=0.2)
    views = list(replay.play(yield_every_s=0.0, clock=clock, sleep=clock.sleep))
    last = views[-1]
    assert last.status == "finished" and last.position_s == rec.seconds == 6.0
    assert clock.slept == pytest.approx(rec.seconds / 10, abs=0.05)  # paced at 10x real time
    # the same chunks (200 samples: 2 s of stream per 0.2 s of wall time at 10x) through a plain session
    session = StreamingSession.from_engine(engine)
    events = [e for i in range(0, 600, 200) for e in session.push(rec.x[i:i + 200], 100).events]
    events += session.flush().events
    assert [(e.frame, e.score) for e in last.alarms] == [(e.frame, e.score) for e in events]
    assert any(3.0 <= e.time_s <= 3.4 + 0.02 for e in last.alarms)  # the shift, as it starts
    assert last.live.frames == 300 and last.x.shape[1] == 2 and last.labelled == [(3.0, 3.4)]
    assert last.live.rtf > 0 and last.live.latency_ms > 0


def test_stop_then_play_goes_on_where_it_stopped(engine, tmp_path):
    rec = read_recording(table(tmp_path), engine, "b")
    whole = list(Replay(engine, rec, speed=5).play(sleep=lambda s: None))[-1]  # chunks of 1 s
    clock = FakeClock()
    replay = Replay(engine, rec, speed=5)
    for view in replay.play(yield_every_s=0.0, clock=clock, sleep=clock.sleep):
        if view.status == "playing" and view.position_s >= 1.0:
            replay.stop()
    assert view.status == "stopped" and 1.0 <= view.position_s < rec.seconds
    final = list(replay.play(yield_every_s=0.0, clock=clock, sleep=clock.sleep))[-1]
    assert final.status == "finished" and final.live.frames == whole.live.frames
    assert [(e.frame, e.score) for e in final.alarms] == [(e.frame, e.score) for e in whole.alarms]
    assert list(replay.play())[-1].status == "finished"  # a finished replay stays finished until reset
    fresh = replay.reset()
    assert (fresh.status, fresh.position_s, fresh.alarms, fresh.live.frames) == ("ready", 0.0, [], 0)
    again = list(replay.play(sleep=lambda s: None))[-1]
    assert [(e.frame, e.score) for e in again.alarms] == [(e.frame, e.score) for e in whole.alarms]


def test_tables_that_cannot_be_replayed_say_why(engine, kws_bundle, tmp_path):
    good = table(tmp_path)
    with pytest.raises(ValueError, match="3 channel columns"):
        read_recording(table(tmp_path, channels=3, name="three.parquet"), engine)
    with pytest.raises(ValueError, match="no series 'z'"):
        read_recording(good, engine, "z")
    with pytest.raises(ValueError, match="listens to audio"):
        read_recording(good, StreamEngine(kws_bundle, config=EAGER))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a table")
    with pytest.raises(ValueError, match="not a sensor table"):
        read_recording(notes, engine)
    with pytest.raises(ValueError, match="over the replay limit of 100"):
        read_recording(good, engine, "b", Limits(max_replay_samples=100))
    assert read_recording(good, engine).name.endswith("· b")  # the first series outside train


def test_examples_are_the_tables_that_fit_the_model(engine, tmp_path):
    table(tmp_path / "data" / "two")
    table(tmp_path / "data" / "three", channels=3)
    found = find_recordings(tmp_path / "data", engine.in_channels)
    assert [split_choice(v) for _, v in found] == [(str(tmp_path / "data/two/t.parquet"), s) for s in ("b", "c")]
    assert "1 labelled anomalies" in found[0][0]
    assert [sid for _, sid in series_choices(tmp_path / "data/two/t.parquet", 2)] == ["b", "c", "a"]
    assert split_choice("x.csv") == ("x.csv", None) and find_recordings(tmp_path / "nothing", 2) == []
