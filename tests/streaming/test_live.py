"""LiveStream (the demo's logic): bounded display state, limits, files, admission, bundle discovery."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ssm_signal import save_bundle
from ssm_signal.streaming import (
    Admission,
    Limits,
    LiveStream,
    StreamConfig,
    StreamEngine,
    StreamingSession,
    find_bundles,
)
from tests.streaming.conftest import kws_model, speechlike


@pytest.fixture
def engine(kws_bundle):
    return StreamEngine(kws_bundle, config=StreamConfig(compile=False))


def test_push_and_bounded_history(engine):
    live = LiveStream(engine, Limits(history_seconds=2.0, log_size=3), plot_rate=25)
    x = speechlike(6.0, 48000)
    for i in range(0, len(x), 9600):
        v = live.push((x[i:i + 9600] * 32767).astype(np.int16), 48000)
    # the resampler's delay (101 samples from 48 kHz) keeps the last frame pending until more audio (or a flush) comes
    assert v.message is None and v.frames == (6 * 16000 - engine.resampler(48000).delay) // 160 == 599
    assert v.stream_s == pytest.approx(6.0)
    assert v.top_label in engine.labels and 0 < v.top_score <= 1
    assert len(v.times) <= 2.0 * 25 + 1 and v.values.shape == (len(v.times), len(v.curve_labels))
    assert v.times[-1] == pytest.approx(6.0, abs=0.05) and v.times[0] >= 3.9  # the last 2 s only
    assert v.latency_ms > 0 and v.latency_p95_ms > 0 and v.rtf > 0
    assert live.reset().frames == 0


def test_errors_and_limits_become_messages(engine):
    live = LiveStream(engine, Limits(max_session_seconds=1.0))
    assert "NaN" in live.push(np.full(100, np.nan, np.float32), 16000).message
    assert "outside the supported range" in live.push(np.zeros(100, np.float32), 1000).message
    assert live.push(np.zeros(16000, np.float32), 16000).message is None
    v = live.push(np.zeros(160, np.float32), 16000)
    assert "time limit" in v.message and v.frames == 100  # refused: nothing processed
    assert live.reset().message is None and live.push(np.zeros(160, np.float32), 16000).frames == 1


def test_play_file_through_the_stream(engine, tmp_path, kws_bundle):
    x = speechlike(3.0, 22050)
    path = tmp_path / "clip.wav"
    sf.write(path, x, 22050, subtype="FLOAT")
    views = list(LiveStream(engine).play_file(path, chunk_seconds=0.3))
    v = views[-1]
    ref = kws_bundle.predict(x, 22050)
    assert v.message is None and v.frames == ref.frame_scores.shape[0]
    assert v.times[-1] == pytest.approx(v.frames / 100)  # the whole timeline, not the last seconds
    # what the page shows is what a plain session computes for the same file
    session = StreamingSession.from_engine(engine)
    last = np.concatenate([session.push(x, 22050).smoothed, session.flush().smoothed])[-1]
    assert (v.top_label, v.top_score) == (engine.labels[int(last.argmax())], pytest.approx(float(last.max()), abs=1e-5))


def test_play_file_refuses_bad_files(engine, tmp_path):
    live = LiveStream(engine, Limits(max_upload_bytes=200_000, max_upload_seconds=2.0))
    (tmp_path / "notes.txt").write_text("not audio at all")
    sf.write(tmp_path / "long.wav", np.zeros(16000 * 3, np.int16), 16000)
    sf.write(tmp_path / "big.wav", np.zeros(200_000, np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "fast.wav", np.zeros(1000, np.int16), 384000)
    cases = {"notes.txt": "not an audio file", "long.wav": "longer than the limit", "big.wav": "upload limit",
             "fast.wav": "outside the supported range", "missing.wav": "not a file"}
    for name, msg in cases.items():
        views = list(live.play_file(tmp_path / name))
        assert len(views) == 1 and msg in views[0].message, name
    assert msg in next(live.play_file(tmp_path / "missing.wav")).message
    assert "no file" in next(live.play_file(None)).message


def test_admission_limits_live_streams(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("ssm_signal.streaming.live.time.monotonic", lambda: clock[0])
    adm = Admission(2, idle_seconds=5)
    assert adm.admit("a") and adm.admit("b") and not adm.admit("c") and adm.admit("a")
    clock[0] = 4.0
    assert adm.admit("a") and not adm.admit("c")
    clock[0] = 7.0  # b idle for 7 s: its place is free
    assert adm.admit("c") and adm.active == 2
    adm.release("a")
    assert adm.admit("d")


def test_find_bundles(tmp_path):
    save_bundle(kws_model(), tmp_path / "kws_default", name="kws_default", version="3")
    save_bundle(kws_model(), tmp_path / "runs" / "x" / "b", name="deep", version="1")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # no weights: not a bundle
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "something else"}')
    (tmp_path / "other" / "model.safetensors").write_bytes(b"")
    found = find_bundles(tmp_path)
    assert [(b["name"], b["version"]) for b in found] == [("kws_default", "3"), ("deep", "1")]
    assert found[0]["source"] == str(tmp_path / "kws_default")
    assert find_bundles(tmp_path / "nothing") == []


@pytest.mark.parametrize("field,value", [("max_session_seconds", 0.0), ("log_size", 0), ("max_live_sessions", 2.5),
                                         ("max_replay_samples", -1)])
def test_limits_refuse_values_that_would_refuse_everything_or_nothing(field, value):
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})
