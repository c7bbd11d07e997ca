"""StreamingSession: the stream equals Bundle.predict, whatever the chunking and input rate;
snapshots, resets, bad input, independence of sessions, flat memory over long streams."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load

from ssm_signal import load_bundle, save_bundle
from ssm_signal.streaming import DetectorConfig, StreamConfig, StreamEngine, StreamingSession
from tests.streaming.conftest import SENSOR_THRESHOLD, kws_model, speechlike

EAGER = StreamConfig(compile=False)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def push_all(session: StreamingSession, x: np.ndarray, rate: int, sizes: list[int]) -> np.ndarray:
    """Push x in chunks of ``sizes`` then flush; the concatenated frame scores (and check the frame bookkeeping)."""
    out, t, start = [], 0, session.frames
    for n in sizes:
        u = session.push(x[t:t + n], rate)
        assert u.first_frame == start + sum(len(o) for o in out)
        out.append(u.frame_scores)
        t += n
    out.append(session.flush().frame_scores)
    return np.concatenate(out)


def same_snapshot(a: bytes, b: bytes) -> bool:
    """Equal state tensors (the header's key order is not stable, so compare contents)."""
    da, db = st_load(a), st_load(b)
    return da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)


def chunk_sizes(n: int, rng: random.Random, max_chunk: int) -> list[int]:
    sizes = [1, 1, 2]
    while sum(sizes) < n:
        sizes.append(rng.choice([1, 7, 160, 441, rng.randint(1, max_chunk)]))
    sizes[-1] -= sum(sizes) - n
    return [s for s in sizes if s > 0]


@pytest.mark.parametrize("rate", [44100, 48000, 8000, 16000])
def test_random_chunks_equal_predict(kws_bundle, rate, seed):
    """The guarantee: stereo int16 at another rate, random chunk sizes (1 sample included) == predict."""
    x = speechlike(2.5, rate, seed % 1000)
    stereo = np.stack([to_int16(x), to_int16(0.5 * x)], axis=1)
    ref = kws_bundle.predict(stereo, rate).frame_scores
    got = push_all(StreamingSession(kws_bundle, config=EAGER), stereo, rate,
                   chunk_sizes(len(x), random.Random(seed), 5000))
    assert got.shape == ref.shape == (int(len(x) * 16000 / rate + 0.999) // 160, 4)
    assert np.abs(got - ref).max() <= 1e-4


def test_frame_times_events_and_top(tmp_path, seed):
    """A model that always says "yes": one event (the posterior never falls), at the right stream time."""
    m = kws_model()
    with torch.no_grad():
        m.head.proj.weight.zero_()
        m.head.proj.bias.copy_(torch.tensor([8.0, 0.0, 0.0, 0.0]))
    b = load_bundle(save_bundle(m, tmp_path / "yes"))
    cfg = StreamConfig(compile=False, detector=DetectorConfig(smoothing_frames=5, threshold=0.9, refractory_s=0.5))
    s = StreamingSession(b, config=cfg)
    x = speechlike(2.0, 16000)
    ups = [s.push(x[i:i + 800], 16000) for i in range(0, len(x), 800)]
    times = np.concatenate([u.frame_times for u in ups])
    assert np.allclose(times, (np.arange(200) + 1) * 0.01)
    events = [e for u in ups for e in u.events]
    assert [e.frame for e in events] == [0]
    assert all(e.label == "yes" and e.kind == "keyword" and e.score > 0.99 for e in events)
    assert [e.time_s for e in events] == pytest.approx([0.01])
    assert ups[-1].top()[0] == "yes"


def test_events_do_not_depend_on_chunking(kws_bundle, seed):
    x = speechlike(4.0, 22050, seed % 1000)
    post = kws_bundle.predict(x, 22050).frame_scores
    # a threshold the reportable labels cross now and then, whatever the random weights
    top = np.sort(post[:, :2].max(1))
    i = int(0.7 * len(top))
    thr = float(top[i] + top[i + 1]) / 2  # halfway between two frames: no near-tie with rounding
    cfg = StreamConfig(compile=False, detector=DetectorConfig(smoothing_frames=1, threshold=thr, refractory_s=0.2))

    def events(sizes):
        s = StreamingSession(kws_bundle, config=cfg)
        out, t = [], 0
        for n in sizes:
            out += s.push(x[t:t + n], 22050).events
            t += n
        return out + s.flush().events

    whole = events([len(x)])
    chunked = events(chunk_sizes(len(x), random.Random(seed), 3000))
    assert [(e.label, e.frame, e.time_s) for e in whole] == [(e.label, e.frame, e.time_s) for e in chunked]
    assert [e.score for e in whole] == pytest.approx([e.score for e in chunked], abs=1e-5)
    assert len(whole) >= 2 and all(e.label in ("yes", "no") for e in whole)  # never _silence_/_unknown_
    assert all(b.frame - a.frame >= 20 for a, b in zip(whole[:-1], whole[1:], strict=True))  # refractory


def test_snapshot_restore_resumes_exactly(kws_bundle, seed):
    x = to_int16(speechlike(2.0, 48000))
    a = StreamingSession(kws_bundle, config=EAGER)
    first = a.push(x[:30001], 48000).frame_scores
    blob = a.snapshot()
    assert isinstance(blob, bytes) and blob[8:9] == b"{"  # safetensors: a JSON header, no pickle
    b = StreamingSession.restore(kws_bundle, blob, config=EAGER)
    assert (b.frames, b.sample_rate, b.seconds) == (a.frames, 48000, 30001 / 48000)
    n = len(x) - 30001
    rest_a = push_all(a, x[30001:], 48000, [17000, 1, n - 17001])
    rest_b = push_all(b, x[30001:], 48000, [5, n - 5])
    assert np.abs(rest_a - rest_b).max() <= 1e-5
    whole = kws_bundle.predict(x, 48000).frame_scores
    assert np.abs(np.concatenate([first, rest_b]) - whole).max() <= 1e-4
    # a snapshot before any input restores too
    fresh = StreamingSession.restore(kws_bundle, StreamingSession(kws_bundle, config=EAGER).snapshot(), config=EAGER)
    assert fresh.sample_rate is None and fresh.frames == 0


def test_restore_refuses_other_models_and_garbage(kws_bundle, tmp_path):
    blob = StreamingSession(kws_bundle, config=EAGER).snapshot()
    other = load_bundle(save_bundle(kws_model(), tmp_path / "other", name="other", version="2"))
    with pytest.raises(ValueError, match="taken with model 'kws_test'"):
        StreamingSession.restore(other, blob, config=EAGER)
    for bad in (b"", b"garbage!", b"\x10" + b"\x00" * 7 + b"not json at all", blob[:len(blob) // 2]):
        with pytest.raises(ValueError):
            StreamingSession.restore(kws_bundle, bad, config=EAGER)
    with pytest.raises(ValueError, match="bytes"):
        StreamingSession.restore(kws_bundle, "a string")


def test_reset_flush_and_lifecycle(kws_bundle):
    x = speechlike(1.0, 16000)
    s = StreamingSession(kws_bundle, config=EAGER)
    a = push_all(s, x, 16000, [len(x)])
    assert s.finished
    with pytest.raises(ValueError, match="flushed"):
        s.push(x, 16000)
    with pytest.raises(ValueError, match="flushed"):
        s.flush()
    s.reset()
    assert not s.finished and s.frames == 0 and s.sample_rate is None
    b = push_all(s, x, 16000, [3000, 13000])
    assert np.abs(a - b).max() <= 1e-5
    # a rate change needs a reset; after it any rate is fine
    s.reset()
    s.push(x[:100], 16000)
    with pytest.raises(ValueError, match="changed from 16000 to 8000"):
        s.push(x[:100], 8000)
    s.reset()
    assert s.push(x[:8000], 8000).n_frames > 0


def test_sessions_are_independent(kws_bundle, seed):
    """Interleaved pushes to two sessions sharing an engine equal separate runs."""
    engine = StreamEngine(kws_bundle, config=EAGER)
    xa, xb = speechlike(1.5, 16000, 1), speechlike(1.5, 44100, 2)
    alone_a = push_all(StreamingSession.from_engine(engine), xa, 16000, [4000] * 6)
    alone_b = push_all(StreamingSession.from_engine(engine), xb, 44100, [11025] * 6)
    sa, sb = StreamingSession.from_engine(engine), StreamingSession.from_engine(engine)
    got_a, got_b = [], []
    for i in range(6):
        got_a.append(sa.push(xa[i * 4000:(i + 1) * 4000], 16000).frame_scores)
        with pytest.raises(ValueError):
            sb.push(np.full(100, np.nan, np.float32), 44100)  # a bad chunk on b touches nothing
        got_b.append(sb.push(xb[i * 11025:(i + 1) * 11025], 44100).frame_scores)
    got_a.append(sa.flush().frame_scores)
    got_b.append(sb.flush().frame_scores)
    assert np.abs(np.concatenate(got_a) - alone_a).max() <= 1e-6
    assert np.abs(np.concatenate(got_b) - alone_b).max() <= 1e-6


def test_bad_input_is_refused_and_changes_nothing(kws_bundle):
    x = speechlike(1.0, 16000)
    s = StreamingSession(kws_bundle, config=StreamConfig(compile=False, max_chunk_seconds=5))
    ref = StreamingSession(kws_bundle, config=EAGER)
    s.push(x[:5000], 16000)
    ref.push(x[:5000], 16000)
    before = s.snapshot()
    bad = [
        (np.array([0.1, np.nan, 0.2], np.float32), 16000, "NaN"),
        (np.array([np.inf] * 10), 16000, "NaN or Inf"),
        (np.zeros(10, np.complex64), 16000, "complex"),
        (np.zeros(10, bool), 16000, "booleans"),
        (np.zeros(10, np.uint16), 16000, "PCM"),
        (np.array(["a", "b"]), 16000, "numeric"),
        (np.zeros((10, 2, 2), np.float32), 16000, "shape"),
        (np.zeros((2, 16000), np.float32), 16000, "time first"),
        (np.zeros(10, np.float32), 0, "sample_rate"),
        (np.zeros(10, np.float32), -16000, "sample_rate"),
        (np.zeros(10, np.float32), 10**9, "outside the supported range"),
        (np.zeros(10, np.float32), 100, "outside the supported range"),
        (np.zeros(10, np.float32), 44100.5, "whole number"),
        (np.zeros(10, np.float32), float("nan"), "whole number"),
        (np.zeros(10, np.float32), "16000", "number of Hz"),
        (np.zeros(10, np.float32), True, "number of Hz"),
        (np.zeros(10, np.float32), 8000, "changed from 16000"),
        (np.zeros(16000 * 6, np.float32), 16000, "max_chunk_seconds"),
        ([[1, 2], [3]], 16000, "samples"),
    ]
    for samples, rate, msg in bad:
        with pytest.raises(ValueError, match=msg):
            s.push(samples, rate)
    assert same_snapshot(s.snapshot(), before)
    # empty chunks are no-ops; then the stream goes on as if nothing had happened
    for empty in (np.zeros(0, np.int16), np.zeros((0, 2), np.float32), []):
        u = s.push(empty, 16000)
        assert u.n_frames == 0 and u.events == [] and u.timing.rtf == 0.0
    a = push_all(s, x[5000:], 16000, [11000])
    b = push_all(ref, x[5000:], 16000, [11000])
    assert np.array_equal(a, b)


def test_wrong_channel_count(sensor_bundle):
    s = StreamingSession(sensor_bundle, config=EAGER)
    with pytest.raises(ValueError, match="3 channels, the model expects 2"):
        s.push(np.zeros((10, 3), np.float32), 100)
    with pytest.raises(ValueError, match="1 channels, the model expects 2"):
        s.push(np.zeros(10, np.float32), 100)


def test_anomaly_stream_equals_predict_and_alarms(sensor_bundle, seed):
    rng = np.random.default_rng(seed % 1000)
    x = rng.standard_normal((3000, 2)).astype(np.float32)
    x[2000:2010] += 50.0  # a burst the forecaster cannot predict
    ref = sensor_bundle.predict(x, 100).frame_scores
    s = StreamingSession(sensor_bundle, config=EAGER)
    got, events = [], []
    for i in range(0, 3000, 37):
        u = s.push(x[i:i + 37], 100)
        got.append(u.frame_scores)
        events += u.events
    got.append(s.flush().frame_scores)
    got = np.concatenate(got)
    assert got.shape == ref.shape == (1500, 1) and np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    above = np.flatnonzero(ref[:, 0] > SENSOR_THRESHOLD)
    assert events and all(e.kind == "anomaly" and e.score > SENSOR_THRESHOLD for e in events)
    assert events[0].frame == above[0] and events[0].time_s == pytest.approx((above[0] + 1) * 2 / 100)


def test_long_chunk_in_windows_and_timing(kws_bundle):
    """A long chunk runs in windows (memory bounded by the window) with the same result; timing adds up."""
    x = speechlike(12.0, 16000)
    small = StreamingSession(kws_bundle, config=StreamConfig(compile=False, window_seconds=0.37))
    big = StreamingSession(kws_bundle, config=EAGER)
    u = small.push(x, 16000)
    a = np.concatenate([u.frame_scores, small.flush().frame_scores])
    b = push_all(big, x, 16000, [len(x)])
    assert np.abs(a - b).max() <= 1e-5
    t = u.timing
    assert t.audio_s == 12.0 and t.processing_s > 0 and t.rtf == pytest.approx(t.processing_s / 12.0)
    assert t.backlog_s == 0.0  # much faster than real time


@pytest.mark.parametrize("mode", ["aot", "jit"])
def test_compiled_step_equals_eager(mode, seed, tmp_path, monkeypatch):
    """The compiled per-frame latency paths (CPU) against the eager twin, through whole sessions:
    short chunks (the step), a long one (the chunked forward) and short ones again."""
    monkeypatch.setenv("SSM_SIGNAL_CACHE_DIR", str(tmp_path))
    kws_bundle = load_bundle(save_bundle(kws_model(("mamba2", "mamba2")), tmp_path / "b"))
    x = to_int16(speechlike(2.0, 48000))
    sizes = [960] * 30 + [48000] + [960] * 19
    eager = push_all(StreamingSession(kws_bundle, config=EAGER), x, 48000, sizes)
    comp = StreamingSession(kws_bundle, config=StreamConfig(compile=True if mode == "aot" else mode))
    assert comp.engine.mode == mode and comp.engine.step_max_frames >= 2
    got = push_all(comp, x, 48000, sizes)
    assert np.abs(got - eager).max() <= 1e-5
    if mode == "aot":  # compiled once, then loaded from the cache by the next engine of these weights
        assert len(list((tmp_path / "aoti").glob("step_*.pt2"))) == 1 == len(list((tmp_path / "aoti").glob("*.ok")))
        again = StreamingSession(kws_bundle, config=StreamConfig(compile="aot"))
        t0 = time.perf_counter()
        again.push(x[:960], 48000)
        assert time.perf_counter() - t0 < 5.0


def test_aot_failure_falls_back_to_torch_compile(kws_bundle, monkeypatch, caplog):
    """A model AOTInductor cannot lower still streams (through the torch.compile path), same result."""
    import ssm_signal.streaming.engine as engine_mod

    def refuse(model, batch_size=1):
        raise RuntimeError("cannot lower this op")

    monkeypatch.setattr(engine_mod, "aot_step", refuse)
    monkeypatch.setattr(engine_mod, "compiled", lambda model, kind="frame": model._step)
    # (the eager step stands in for torch.compile, tested above, to stay fast)
    x = speechlike(0.5, 16000)
    s = StreamingSession(kws_bundle, config=StreamConfig(compile="aot"))
    got = push_all(s, x, 16000, [320] * 25)
    assert s.engine.mode == "jit" and "ahead-of-time compilation failed" in caplog.text
    assert np.abs(got - push_all(StreamingSession(kws_bundle, config=EAGER), x, 16000, [8000])).max() <= 1e-5


def hour_like(minutes: float, rate: int) -> np.ndarray:
    """A long int16 test signal built from a 10 s segment with a varying gain (cheap to make)."""
    seg = speechlike(10.0, rate)
    reps = int(np.ceil(minutes * 6))
    x = np.concatenate([seg * (0.3 + 0.7 * ((i * 7) % 10) / 10) for i in range(reps)])
    return to_int16(x[:int(minutes * 60 * rate)])


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def run_long(bundle, minutes: float, seed: int) -> None:
    rate = 8000
    x = hour_like(minutes, rate)
    ref = bundle.predict(x, rate).frame_scores
    s = StreamingSession(bundle, config=StreamConfig(compile=False, window_seconds=10))
    rng = random.Random(seed)
    got, t, rss = [], 0, []
    while t < len(x):
        n = rng.choice([1, 160, 8000, rng.randint(1, 60 * rate), rng.randint(1, 240 * rate)])
        got.append(s.push(x[t:t + n], rate).frame_scores)
        t += n
        rss.append(rss_mb())
    got.append(s.flush().frame_scores)
    got = np.concatenate(got)
    assert got.shape == ref.shape == (len(x) * 2 // 160, 4)
    assert np.abs(got - ref).max() <= 1e-4
    half = len(rss) // 2
    assert max(rss[half:]) - max(rss[:half]) < 64  # flat: no growth with stream length
    assert s.state.nbytes() == StreamingSession(bundle, config=EAGER).engine.init_state(1, rate).nbytes()


def test_hour_stream_equals_predict(tmp_path, seed):
    """An hour at 8 kHz in random chunks (1 sample to 4 minutes) == predict on the whole file; memory flat.

    A one-layer S4D model keeps it to seconds; the streaming path is the same for every mixer.
    """
    b = load_bundle(save_bundle(kws_model(("s4d",)), tmp_path / "b"))
    run_long(b, 60, seed)
