"""The exported graphs streamed by the torch-free session equal the torch StreamingSession: over ten
minutes of audio (or sensor data) in random chunk sizes, for every layer kind and every frontend, and
for the real default keyword bundle; events identical; snapshots interchangeable between the two."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ssm_signal.events import DetectorConfig
from ssm_signal.runtime import OnnxSession, RuntimeConfig
from ssm_signal.streaming import StreamConfig, StreamEngine, StreamingSession
from tests.exports import INT8, KINDS
from tests.streaming.conftest import speechlike

TOL = 1e-4
TEN_MINUTES = 600.0


def chunks(n: int, rate: int, seed: int) -> list[int]:
    """Random chunk sizes covering n samples: single samples, odd sizes, 20 ms to 30 s."""
    rng = random.Random(seed)
    sizes = [1, 1, 7]
    while sum(sizes) < n:
        sizes.append(rng.choice([1, 7, 441, rng.randint(1, rate // 5), rng.randint(1, 3 * rate),
                                 rng.randint(1, 30 * rate)]))
    sizes[-1] -= sum(sizes) - n
    return [s for s in sizes if s > 0]


def stream(session, x: np.ndarray, rate: int, sizes: list[int]):
    """(frame scores (F, C), smoothed (F, C), events) of x pushed in ``sizes`` and flushed."""
    ups, t = [], 0
    for n in sizes:
        ups.append(session.push(x[t:t + n], rate))
        t += n
    ups.append(session.flush())
    return (np.concatenate([u.frame_scores for u in ups]), np.concatenate([u.smoothed for u in ups]),
            [e for u in ups for e in u.events])


def firing_threshold(bundle, x: np.ndarray, rate: int) -> float:
    """A threshold the reported scores cross now and then over the whole of x, in the widest gap between
    neighbouring smoothed values of their upper tail, so that float differences between the runtimes
    (1e-5) cannot flip a crossing: the smoothed scores of ``bundle.predict`` (the same function as a stream)
    under the detector a session of the bundle uses (its window)."""
    det = StreamEngine(bundle, config=StreamConfig(compile=False)).detector
    smoothed, _ = det.smooth(bundle.predict(x, rate).frame_scores[None], det.init_state(1))
    best = np.sort(det.best(smoothed[0])[0])
    lo, hi = int(0.05 * len(best)), int(0.95 * len(best))
    i = lo + int(np.argmax(np.diff(best[lo:hi + 1])))
    # the runtimes' smoothed scores differ by ~1e-5 at most: a gap ten times that cannot be crossed by it
    assert best[i + 1] - best[i] > 1e-4, "no clear gap to put a threshold in"
    return float(best[i] + best[i + 1]) / 2


def gated_speech(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Speech-like sound in bursts of 0.5-3 s between silences of 0.5-3 s: the scores of a random model then
    swing between two regimes, so a threshold between them has room (a steady sound keeps them within
    a few thousandths, where float rounding would decide the crossings)."""
    x = speechlike(seconds, rate, seed)
    rng, gate, t = np.random.default_rng(seed), np.zeros(len(x), np.float32), 0
    while t < len(x):
        on, off = (int(rng.uniform(0.5, 3.0) * rate) for _ in range(2))
        gate[t:t + on] = 1.0
        t += on + off
    return x * gate


def compare(bundle, export_dir, x: np.ndarray, rate: int, seed: int, detector=None, precision="float32"):
    """Both sessions over x in the same random chunks: (torch scores, onnx scores, torch events, onnx events)."""
    sizes = chunks(len(x), rate, seed)
    cfg = StreamConfig(compile=False, detector=detector or DetectorConfig())
    ref = stream(StreamingSession(bundle, config=cfg), x, rate, sizes)
    got = stream(OnnxSession(export_dir, RuntimeConfig(precision=precision, detector=detector or DetectorConfig())),
                 x, rate, sizes)
    return ref, got


def assert_same_stream(ref, got, n_frames: int, min_events: int = 2) -> None:
    (s_ref, sm_ref, ev_ref), (s_got, sm_got, ev_got) = ref, got
    assert s_ref.shape == s_got.shape and s_ref.shape[0] == n_frames
    assert np.abs(s_ref - s_got).max() <= TOL
    assert np.abs(sm_ref - sm_got).max() <= TOL
    assert len(ev_ref) >= min_events
    assert [(e.kind, e.label, e.frame, e.time_s) for e in ev_got] == [(e.kind, e.label, e.frame, e.time_s)
                                                                       for e in ev_ref]
    assert [e.score for e in ev_got] == pytest.approx([e.score for e in ev_ref], abs=TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_ten_minutes_of_audio_equal_torch(exported, kind, seed):
    """One layer of each kind behind the log-mel frontend: 10 minutes at 16 kHz in random chunks."""
    bundle, out = exported(kind)
    x = gated_speech(TEN_MINUTES, 16000, seed % 1000)
    det = DetectorConfig(threshold=firing_threshold(bundle, x, 16000), refractory_s=0.5)
    ref, got = compare(bundle, out, x, 16000, seed, det)
    assert_same_stream(ref, got, len(x) // 160)


def test_pcen_frontend_equals_torch(exported, seed):
    """PCEN's smoother is state too: two minutes at 16 kHz in random chunks, the same in both runtimes."""
    bundle, out = exported("pcen")
    x = gated_speech(120.0, 16000, seed % 1000)
    det = DetectorConfig(threshold=firing_threshold(bundle, x, 16000), refractory_s=0.5)
    ref, got = compare(bundle, out, x, 16000, seed, det)
    assert_same_stream(ref, got, len(x) // 160)


def test_speech_embedding_frontend_equals_torch(exported, seed):
    """The speech encoder's frontend (75 mel frames and a block phase of state, one frame per 1280 samples): two
    minutes at 16 kHz in random chunks, the same in both runtimes."""
    bundle, out = exported("speech_embedding")
    x = gated_speech(120.0, 16000, seed % 1000)
    det = DetectorConfig(threshold=firing_threshold(bundle, x, 16000), refractory_s=0.5)
    ref, got = compare(bundle, out, x, 16000, seed, det)
    assert_same_stream(ref, got, len(x) // 1280)


def test_ten_minutes_of_sensor_data_equal_torch(exported, seed):
    """The sensor frontend (2 channels, blocks of 2) with Mamba-2 and attention, the anomaly head and its
    alarms: 10 minutes at 250 Hz, resampled to the model's 100 Hz by both sessions."""
    bundle, out = exported("sensor")
    rng = np.random.default_rng(seed)
    t = np.arange(int(TEN_MINUTES * 250)) / 250
    x = np.stack([np.sin(2 * np.pi * 1.3 * t), np.cos(2 * np.pi * 0.2 * t)], 1) + 0.3 * rng.standard_normal((len(t), 2))
    x = x.astype(np.float32)
    det = DetectorConfig(threshold=firing_threshold(bundle, x, 250), refractory_s=2.0)
    ref, got = compare(bundle, out, x, 250, seed, det)
    assert_same_stream(ref, got, int(TEN_MINUTES * 100) // 2)


def test_default_bundle_at_44k1_equals_torch(exported, seed):
    """The real kws_default bundle (4 Mamba-2 layers, d_model 64): a minute of 44.1 kHz stereo int16 in
    random chunks, resampled by the numpy and the torch resampler (ten minutes of it take a minute of
    CPU; the tiny models above cover the length)."""
    bundle, out = exported("kws_default")
    x = gated_speech(60.0, 44100, seed % 1000)
    pcm = np.clip(np.round(np.stack([x, 0.7 * x], 1) * 32767), -32768, 32767).astype(np.int16)
    det = DetectorConfig(threshold=firing_threshold(bundle, pcm, 44100), refractory_s=0.5)
    ref, got = compare(bundle, out, pcm, 44100, seed, det)
    assert_same_stream(ref, got, int(len(x) * 16000 / 44100 + 0.999) // 160)


# (largest, mean) |posterior difference| allowed between int8 and float32 over a minute of audio. The tiny
# speech-encoder model runs 20 convolutions of random weights at the trained network's scale, each weight rounded
# to int8 per output channel, and its 4 classes sit close together, so it moves more than the trained encoder does
# (the default bundle: mean 0.003 on the same kind of audio; its task figures in docs/performance.md). Over 38
# seeds it reached 0.46 / 0.046; every encoder weight scaled by 1.1 by mistake gives a mean of 0.24.
INT8_BOUNDS = {"kws_default": (0.1, 0.1), "speech_embedding": (0.8, 0.08)}


@pytest.mark.parametrize("name", INT8)
def test_keyword_models_int8_stays_close(exported, name, seed):
    """The int8 graphs of the keyword models (log-mel; the speech encoder, whose convolutions are stored int8
    too): posteriors close to float32's on a minute of audio (their accuracy on the keyword test voices is
    measured in benchmarks/bench_onnx_quality.py)."""
    bundle, out = exported(name)
    x = speechlike(60.0, 16000, seed % 1000)
    sizes = chunks(len(x), 16000, seed)
    f32 = stream(OnnxSession(out), x, 16000, sizes)[0]
    int8 = stream(OnnxSession(out, RuntimeConfig(precision="int8")), x, 16000, sizes)[0]
    assert f32.shape == int8.shape
    diff = np.abs(f32 - int8)
    largest, mean = INT8_BOUNDS[name]
    assert 0 < diff.max() <= largest and diff.mean() <= mean  # quantized (not the same graph), and close


@pytest.mark.parametrize("first", ["torch", "onnx"])
def test_snapshots_move_between_runtimes(exported, first, seed):
    """A stream snapshotted by one runtime resumes in the other, exactly where it was."""
    bundle, out = exported("kws_default")
    x = speechlike(6.0, 48000, seed % 1000)
    cut = 48000 * 2 + 77
    cfg = StreamConfig(compile=False)
    whole = stream(StreamingSession(bundle, config=cfg), x, 48000, [cut, len(x) - cut])[0]
    a = StreamingSession(bundle, config=cfg) if first == "torch" else OnnxSession(out)
    head = a.push(x[:cut], 48000).frame_scores
    blob = a.snapshot()
    b = OnnxSession.restore(out, blob) if first == "torch" else StreamingSession.restore(bundle, blob, config=cfg)
    assert (b.frames, b.sample_rate, b.seconds) == (a.frames, 48000, cut / 48000)
    tail = stream(b, x[cut:], 48000, [len(x) - cut])[0]
    assert np.abs(np.concatenate([head, tail]) - whole).max() <= TOL
    # and the snapshot of a fresh session too
    fresh = OnnxSession(out).snapshot() if first == "onnx" else StreamingSession(bundle, config=cfg).snapshot()
    c = StreamingSession.restore(bundle, fresh, config=cfg) if first == "onnx" else OnnxSession.restore(out, fresh)
    assert c.sample_rate is None and c.frames == 0
