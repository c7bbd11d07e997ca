"""ssm-signal evaluate: exact hits/misses/false accepts, chunk and batch invariance, calibration, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.cli import main as cli
from pipelines.evaluate import EvaluateConfig, evaluate
from pipelines.evaluate.anomaly_metrics import (
    alarm_outcome,
    best_f1_threshold,
    intervals,
    point_metrics,
    quality,
    roc_auc_by_kind,
    ucr_rule,
)
from pipelines.evaluate.inputs import read_negatives, read_positives, speech_end
from pipelines.evaluate.keywords import StreamSettings, calibrate, stream_negatives, stream_positives
from pipelines.evaluate.metrics import Laid, Positives, outcome
from pipelines.evaluate.stream import stream_many
from ssm_signal import load_bundle, save_bundle
from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.events import DetectorConfig, EventDetector
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from ssm_signal.streaming import StreamConfig, StreamEngine, StreamingSession

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kws_default"
LABELS = ["yes", "no", "_silence_", "_unknown_"]


pytestmark = pytest.mark.usefixtures("one_thread")


def say(path: Path, text: str, voice: str = "en-us") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """Clips in a folder per label (2 voices x yes/no, one _unknown_ word) and two negative sources."""
    root = tmp_path_factory.mktemp("eval_audio")
    for word in ("yes", "no"):
        for i, voice in enumerate(("en-us", "en-gb+m3")):
            say(root / "pos" / word / f"{i}.wav", word, voice)
    say(root / "pos" / "_unknown_" / "0.wav", "bird")
    for src in ("a", "b"):
        for i in range(2):
            say(root / "neg" / src / f"{i}.wav", "the cat sat by the warm fire and slept through the long afternoon")
    return root


# -- exact counts at known times (synthetic posteriors through the live detector's functions) -----------
def scripted(frames: int, spans: list[tuple[int, int, int]], width: int = 4) -> np.ndarray:
    """(frames, width) posteriors: _silence_ (column 2) everywhere except label c over [a, b)."""
    s = np.zeros((frames, width), np.float32)
    s[:, 2] = 1.0
    for c, a, b in spans:
        s[a:b] = 0.0
        s[a:b, c] = 1.0
    return s


def test_exact_hits_misses_and_false_accepts():
    det = EventDetector("keyword", LABELS, 100.0, DetectorConfig(smoothing_frames=1, threshold=0.5, refractory_s=0.2))
    # four positive streams of 3 s (lead 0.5 s, speech ends at 1.2 s, hit window 1 s: hits up to 2.2 s)
    pos_scores = [
        scripted(300, [(0, 100, 130)]),                      # yes at frame 100 (t = 1.01 s): a hit
        scripted(300, [(1, 240, 260)]),                      # no at frame 240 (2.41 s): too late, a miss + an FA
        scripted(300, [(0, 110, 120), (1, 140, 150)]),       # no: a wrong-label "yes" (FA), then the hit at 1.41 s
        scripted(300, [(0, 100, 120)]),                      # a non-keyword clip that fires "yes": an FA
    ]
    truth = Positives(np.array([0, 1, 1, -1]), np.full(4, 0.5), np.full(4, 1.2), 1.0)
    # a negative source of 0.1 h (two 180 s segments) with "yes" once and "no" twice
    neg = [scripted(18000, [(0, 500, 510)]), scripted(18000, [(1, 100, 110), (1, 9000, 9010)])]
    o = outcome(det, det.thresholds, Laid.of(det, pos_scores), truth, [Laid.of(det, neg)], np.array([0.1]))
    assert o.clips.tolist() == [1, 2] and o.detected.tolist() == [1, 1]
    assert o.frr.tolist() == [0.0, 0.5] and o.frr_pooled == pytest.approx(1 / 3)
    assert np.allclose(o.delay, [1.01 - 1.2, np.nan, 1.41 - 1.2], equal_nan=True)
    assert o.fa_positive.tolist() == [1, 1]  # the late "no", the wrong-label "yes"
    assert (o.nonkeyword_clips, o.nonkeyword_fired, o.fa_nonkeyword.tolist()) == (1, 1, [1, 0])
    assert o.fa_negative.tolist() == [[1, 2]] and o.fa_per_hour.tolist() == pytest.approx([10.0, 20.0])
    assert o.fa_per_hour_pooled == pytest.approx(30.0)
    # a second hit of the same keyword inside the window is a duplicate detection: a false accept
    twice = [scripted(300, [(0, 60, 70), (0, 180, 190)])]
    o2 = outcome(det, det.thresholds, Laid.of(det, twice), Positives(np.array([0]), np.array([0.5]),
                                                                     np.array([1.2]), 1.0), [], np.zeros(0))
    assert o2.detected.tolist() == [1, 0] and o2.fa_positive.tolist() == [1, 0]


def test_laid_streams_start_fresh():
    """Streams laid end to end fire exactly as each alone: no held label or refractory period leaks across."""
    det = EventDetector("keyword", LABELS, 100.0, DetectorConfig(smoothing_frames=3, threshold=0.6, refractory_s=0.5))
    rng = np.random.default_rng(0)
    streams = [rng.dirichlet(np.ones(4) * 0.3, size=n).astype(np.float32) for n in (40, 7, 120, 1, 60)]
    laid = Laid.of(det, streams)
    stream, k, t = laid.events(det, det.thresholds)
    for i, s in enumerate(streams):
        _, ev, _ = det(s[None], det.init_state(1))
        assert [(det.reportable_labels.index(e.label), e.time_s) for e in ev[0]] == \
            [(int(kk), pytest.approx(tt)) for kk, tt in zip(k[stream == i], t[stream == i], strict=True)]


def test_speech_end_finds_the_word():
    rate = 16000
    x = np.random.default_rng(0).normal(0, 1e-3, rate).astype(np.float32)
    x[4000:9000] += 0.3 * np.sin(np.arange(5000) * 0.2).astype(np.float32)
    assert speech_end(x, rate) == pytest.approx(9000 / rate, abs=0.011)


# -- the streaming path ------------------------------------------------------------------------------------
def test_chunk_size_does_not_change_results(audio):
    bundle = load_bundle(FIXTURE)
    engine = StreamEngine(bundle, config=StreamConfig(compile=False))
    wave, rate = sf.read(audio / "pos" / "yes" / "0.wav", dtype="float32")
    sig = np.concatenate([np.zeros(rate // 2, np.float32), wave, np.zeros(rate, np.float32)])
    runs = [stream_many(engine, [sig], rate, chunk_s=c)[0] for c in (0.1, 0.37, 0.013, 5.0)]
    assert runs[0].events and runs[0].events[0].label == "yes"
    for r in runs[1:]:
        assert [(e.label, e.frame) for e in r.events] == [(e.label, e.frame) for e in runs[0].events]
        assert np.abs(r.scores - runs[0].scores).max() < 1e-4


def test_batched_equals_one_session_per_stream(audio):
    bundle = load_bundle(FIXTURE)
    engine = StreamEngine(bundle, config=StreamConfig(compile=False))
    files = sorted((audio / "pos").rglob("*.wav")) + sorted((audio / "neg").rglob("*.wav"))
    sigs, rate = [], None
    for f in files:
        w, rate = sf.read(f, dtype="float32")
        sigs.append(w)
    batched = stream_many(engine, sigs, rate, chunk_s=0.1, batch=3)  # ragged lengths, several batches
    chunk = int(0.1 * rate)
    for sig, b in zip(sigs, batched, strict=True):
        s = StreamingSession(bundle, config=StreamConfig(compile=False))
        ups = [s.push(sig[i:i + chunk], rate) for i in range(0, len(sig), chunk)] + [s.flush()]
        assert [(e.label, e.frame) for u in ups for e in u.events] == [(e.label, e.frame) for e in b.events]
        assert np.abs(np.concatenate([u.frame_scores for u in ups]) - b.scores).max() < 1e-4


def test_evaluate_end_to_end_and_calibration_round_trip(audio, tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "bundle")
    cfg = EvaluateConfig(model=str(tmp_path / "bundle"), positives=[str(audio / "pos")],
                         negatives=[str(audio / "neg")], out=str(tmp_path / "out"), calibrate=50.0,
                         calibration_positives=[str(audio / "pos")], calibration_negatives=[str(audio / "neg")],
                         windows=[5, 10], stream=StreamSettings(segment_s=3.0))
    s = evaluate(cfg)
    for f in ("summary.json", "det.parquet", "det.png"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["model"]["version"] == s["model"]["version"]
    df = pd.read_parquet(tmp_path / "out" / "det.parquet")
    assert set(df["window"]) == {5, 10} and {"all", "yes", "no"} <= set(df["keyword"])
    # the calibrated bundle: a new version carrying per-keyword thresholds, used by default by sessions
    cal = load_bundle(tmp_path / "bundle")
    assert cal.version == s["model"]["version"] != "20261125062943"
    assert isinstance(cal.detector.threshold, dict) and set(cal.detector.threshold) == set(cal.labels[:20])
    assert cal.metrics["calibration"]["target_fa_per_hour"] == 50.0
    session = StreamingSession(cal, config=StreamConfig(compile=False))
    assert session.engine.detector.threshold == cal.detector.threshold
    assert session.engine.detector.window == cal.detector.smoothing_frames
    # the evaluation measured the calibrated thresholds; calibration kept its own data within the target
    assert s["detector"]["threshold"] == cal.detector.threshold
    assert s["calibration"]["chosen"]["fa_per_hour"] <= 50.0
    from ssm_signal.streaming import StreamPool

    assert StreamPool(cal, slots=2, runner="eager").engine.detector.threshold == cal.detector.threshold
    # an explicit setting still wins over the bundle's
    forced = StreamingSession(cal, config=StreamConfig(compile=False, detector=DetectorConfig(threshold=0.3)))
    assert forced.engine.detector.threshold == 0.3
    sets = s["sets"][str(audio / "pos")]["at_bundle_thresholds"]
    assert sets["clips"] == 4 and sets["nonkeyword_clips"]["clips"] == 1
    assert s["negatives"]["at_bundle_thresholds"]["hours"] == pytest.approx(
        sum(sf.info(str(f)).duration for f in (audio / "neg").rglob("*.wav")) / 3600, rel=1e-6)


def test_calibration_meets_its_target_on_its_data(audio):
    bundle = load_bundle(FIXTURE)
    engine = StreamEngine(bundle, config=StreamConfig(compile=False))
    skips = SkipLog()
    cfg = StreamSettings(segment_s=5.0)
    pos = [stream_positives(engine, "p", read_positives(audio / "pos", bundle.labels, skips), cfg, skips)]
    neg = stream_negatives(engine, [("n", read_negatives(audio / "neg"))], cfg, skips)
    for target in (1000.0, 1e-6):
        det_cfg, rec = calibrate(engine.detector, pos, neg, target, [5, 10])
        det = EventDetector("keyword", bundle.labels, engine.frame_rate, det_cfg)
        laid = [Laid.of(det, [s.scores for s in segs]) for segs in neg.streams]
        fa = sum(len(la.events(det, det.thresholds)[0]) for la in laid) / neg.hours.sum()
        assert fa <= target + 1e-9 or all(v == 1.0 for v in det_cfg.threshold.values())
        assert rec["chosen"]["fa_per_hour"] == pytest.approx(fa)
        assert min(det_cfg.threshold.values()) >= 0.5 and rec["floor"] == 0.5
    # a generous target on its own data would go below even odds: the floor holds it there, and lower floors
    # give lower thresholds
    low, _ = calibrate(engine.detector, pos, neg, 1000.0, [5], floor=0.0)
    high, _ = calibrate(engine.detector, pos, neg, 1000.0, [5], floor=0.95)
    assert min(low.threshold.values()) < 0.5 and min(high.threshold.values()) >= 0.95
    # a companion rate gives what a calibration at that rate would (same data, same window), beside the target's
    strict, rec = calibrate(engine.detector, pos, neg, 1e-6, [5], floor=0.0, companions=(1e7,))
    loose, loose_rec = calibrate(engine.detector, pos, neg, 1e7, [5], floor=0.0, companions=())
    (comp,) = rec["chosen"]["companions"]
    assert comp["target_fa_per_hour"] == 1e7 and loose_rec["chosen"]["companions"] == []
    assert comp["frr"] == loose_rec["chosen"]["frr"] and comp["fa_per_hour"] == loose_rec["chosen"]["fa_per_hour"]
    assert strict.threshold != loose.threshold and comp["fa_per_hour"] > rec["chosen"]["fa_per_hour"]


def test_old_bundles_load_with_default_detector(tmp_path):
    cfg = json.loads((FIXTURE / "config.json").read_text())
    assert "detector" not in cfg
    b = load_bundle(FIXTURE)
    assert b.detector == DetectorConfig()
    assert StreamEngine(b, config=StreamConfig(compile=False)).detector.threshold == 0.8


def test_bad_detector_config_in_a_bundle_is_a_clear_error(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "b")
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    cfg["detector"] = {"threshold": {"yes": "high"}}
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="invalid detector config.*threshold"):
        load_bundle(tmp_path / "b")


# -- bad input ------------------------------------------------------------------------------------------------
def test_bad_inputs_are_counted_or_refused(audio, tmp_path, capsys):
    labels = load_bundle(FIXTURE).labels
    pos = tmp_path / "pos"
    shutil.copytree(audio / "pos", pos)
    (pos / "yes" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    say(pos / "hello" / "0.wav", "hello")  # another word: _unknown_, as Speech Commands' setups read it
    skips = SkipLog()
    clips = read_positives(pos, labels, skips)
    assert [c.label for c in clips if c.path.endswith("hello/0.wav")] == ["_unknown_"] and not skips
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"path,label\n{pos / 'yes' / '0.wav'},yes\n{pos / 'hello' / '0.wav'},hello\n")
    assert len(read_positives(manifest, labels, skips)) == 1 and skips.counts() == {"label not in the model": 1}
    skips = SkipLog()
    clips = [c for c in clips if not c.path.endswith("hello/0.wav")]
    engine = StreamEngine(load_bundle(FIXTURE), config=StreamConfig(compile=False))
    p = stream_positives(engine, "p", clips, StreamSettings(), skips)
    assert len(p.clips) == 5 and len(skips) == 1 and "unreadable audio" in skips.items[-1][1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        read_negatives(tmp_path / "empty")
    with pytest.raises(DataError, match="no clips"):
        read_positives(tmp_path / "empty", labels, SkipLog())
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\nx.wav,yes\n")
    with pytest.raises(DataError, match="lacks the column"):
        read_positives(manifest, labels, SkipLog())
    capsys.readouterr()  # the skips' log lines so far
    rc = cli(["evaluate", "--model", str(FIXTURE), "--positives", str(tmp_path / "empty"),
              "--negatives", str(audio / "neg"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no clips found" in err[0]
    assert cli(["evaluate", "--model", str(FIXTURE), "--calibrate", "-1"]) == 2


# -- anomaly bundles ------------------------------------------------------------------------------------------------
def test_anomaly_intervals_and_alarm_counts():
    assert intervals(np.array([0, 0, 1, 1, 0, 1, 0, 0]), 2, 4) == [(1, 3)]
    assert intervals(np.array([1, 0, 0, 1]), 1, 4) == [(0, 1), (3, 4)]
    det = EventDetector("anomaly", ["anomaly"], 1.0, DetectorConfig(threshold=2.0, refractory_s=5.0))
    score = np.zeros((100, 1), np.float32)
    score[[10, 30, 31, 70], 0] = 5.0  # alarms at 10 (false), 30 (true), 31 (refractory), 70 (true: tolerance)
    o = alarm_outcome(det, Laid.of(det, [score]), [[(28, 40), (60, 68)]], [100], 2.0, tolerance=3)
    assert (o.alarms, o.true_alarms, o.false_alarms, o.intervals, o.detected) == (3, 2, 1, 2, 2)
    assert o.delays == [2.0, 10.0]
    assert o.normal_hours == pytest.approx((100 - 15 - 11) / 3600)


def test_point_metrics_and_the_ucr_rule():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 0], bool)
    assert point_metrics([np.arange(8.0)], [y])["roc_auc"] == pytest.approx(5 / 6)  # 5 and 6 outrank 5 of the 6
    perfect = point_metrics([np.where(y, 2.0, 1.0)], [y])
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == 1.0 and perfect["anomalous_frames"] == 2
    assert point_metrics([np.ones(3)], [np.zeros(3, bool)])["roc_auc"] is None  # one class only
    # scores far above 1 keep their order (a sigmoid would tie everything above ~37 at exactly 1)
    for scale in (1e3, 1e5):
        big = point_metrics([scale * (1 + np.arange(8.0))], [y])
        assert big["roc_auc"] == pytest.approx(5 / 6) and big["pr_auc"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    labels = np.zeros(1000, np.int64)
    labels[500:510] = 1
    score = np.zeros(250)  # frames of 4 samples
    score[100] = 1.0  # samples 400-403: 97 samples before the range (within 100)
    assert ucr_rule(score, labels, hop=4) == {"hit": True, "top_sample": 400, "labelled": [500, 509]}
    score[100], score[98] = 0.0, 1.0  # samples 392-395: 105 before
    assert not ucr_rule(score, labels, hop=4)["hit"]
    assert ucr_rule(score, np.zeros(1000), hop=4) is None
    det = EventDetector("anomaly", ["anomaly"], 1.0, DetectorConfig(threshold=2.0, refractory_s=5.0, smoothing_frames=2))
    sc = np.zeros((250, 1), np.float32)
    sc[125:128] = 8.0  # samples 500-511: the labelled range
    kinds = np.where(labels > 0, "spike", "")
    q = quality(det, [sc], [labels], 4, 3.0, tolerance=0, kinds=[kinds])
    assert q["ucr_rule"]["solved"] == 1 and q["roc_auc"] > 0.99
    assert q["recall_by_kind"] == {"spike": {"intervals": 1, "detected": 1, "recall": 1.0}}
    assert q["at_threshold"]["alarms"] == 1 and q["at_threshold"]["false_alarms"] == 0


def test_roc_auc_by_kind_ranks_each_kind_against_the_normal_frames_only():
    """Each kind's frames against every normal frame (never against the other kinds' frames), pooled over series;
    a frame is of the first kind named among its samples."""
    labels = [np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0]), np.array([0, 1, 1, 0, 0, 0])]
    kinds = [np.array(["", "", "spike", "spike", "", "", "frozen", "frozen", "", ""], object),
             np.array(["", "", "frozen", "", "", ""], object)]
    # frames of 2 samples: series 0: normal, spike, normal, frozen, normal; series 1: anomalous but unnamed (in
    # neither class), frozen, normal
    scores = [np.array([0.1, 0.9, 0.2, 0.15, 0.3]), np.array([0.95, 0.05, 0.12])]
    by = roc_auc_by_kind(scores, labels, kinds, 2)
    # normal scores 0.1, 0.2, 0.3, 0.12; spike 0.9 outranks all 4; frozen 0.15 outranks 2 of them, 0.05 none
    assert by == {"frozen": pytest.approx(2 / 8), "spike": 1.0}
    det = EventDetector("anomaly", ["anomaly"], 1.0, DetectorConfig(smoothing_frames=1))
    q = quality(det, [s[:, None].astype(np.float32) for s in scores], labels, 2, 1.0, tolerance=0, kinds=kinds)
    assert q["roc_auc_by_kind"] == by
    assert "roc_auc_by_kind" not in quality(det, [s[:, None].astype(np.float32) for s in scores], labels, 2, 1.0, 0)


def test_the_best_f1_threshold_separates_the_anomalies_from_the_rest():
    det = EventDetector("anomaly", ["anomaly"], 1.0, DetectorConfig(refractory_s=3.0))
    labels = np.zeros(200, np.int64)
    labels[50:60] = labels[150:160] = 1
    score = np.ones((200, 1), np.float32)
    score[50:60], score[150:160], score[100:110] = 5.0, 4.0, 3.0  # anomalies at 5 and 4; normal frames at 3
    theta, f1 = best_f1_threshold(det, [score], [labels], 1, tolerance=0)
    assert f1 == 1.0 and 3.0 <= theta < 4.0  # both detected, the normal peak left out
    assert best_f1_threshold(det, [np.ones((200, 1), np.float32)], [labels], 1, 0)[1] == 0.0  # nothing to find


def test_anomaly_bundle_end_to_end(tmp_path):
    from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table

    table = make_sensor_anomaly_table(tmp_path / "t.parquet", n_train=3, n_val=2, n_test=3, length=300, channels=2,
                                      anomalies_per_series=1)
    model = SignalModel(ModelConfig(FrontendConfig(kind="sensor", in_channels=2, sample_rate=1),
                                    BackboneConfig(d_model=8, layers=["mamba2"],
                                                   mixer_kwargs={"mamba2": {"headdim": 4, "d_state": 4}}),
                                    HeadConfig("anomaly", threshold=1.0))).eval()
    save_bundle(model, tmp_path / "b", name="anom", version="1")
    s = evaluate(EvaluateConfig(model=str(tmp_path / "b"), positives=[str(table)], out=str(tmp_path / "o"),
                                calibrate=60.0))
    at = s["sets"]["t.parquet"]["at_bundle_thresholds"]
    t = pd.read_parquet(table)
    runs = sum(int((np.diff(np.concatenate([[0], g["label"].to_numpy(), [0]])) == 1).sum())
               for _, g in t[t["split"] == "test"].groupby("series_id"))
    assert s["kind"] == "anomaly" and at["intervals"] == runs >= 3  # the labelled runs of the test series
    assert at["alarms"] == at["true_alarms"] + at["false_alarms"]
    st = s["sets"]["t.parquet"]
    assert 0 <= st["roc_auc"] <= 1 and 0 <= st["pr_auc"] <= 1 and st["ucr_rule"]["series"] == 3
    assert sum(v["intervals"] for v in st["recall_by_kind"].values()) == runs
    b = load_bundle(tmp_path / "b")
    assert b.detector.threshold == s["calibration"]["threshold"] and b.version != "1"
    # calibrated on the val series (outside their labelled anomalies), never on what is reported
    assert s["calibration"]["split"] == "val" and s["calibration"]["series"] == 2
    assert (tmp_path / "o" / "det.png").stat().st_size > 0
    assert cli(["evaluate", "--model", str(tmp_path / "b"), "--positives", str(table), "--calibrate", "30",
                "--out", str(tmp_path / "o2")]) == 0


def test_score_marks_detections_with_the_bundles_thresholds(tmp_path):
    """score's `detected` column: the clip's keyword at or above the bundle's (calibrated) threshold."""
    from pipelines.score.rows import detections

    shutil.copytree(FIXTURE, tmp_path / "b")
    b = load_bundle(tmp_path / "b")
    s = np.zeros((3, len(b.labels)))
    s[0, 0], s[0, 20] = 0.85, 0.15   # "yes" at 0.85: over the default 0.8
    s[1, 1], s[1, 21] = 0.7, 0.3     # "no" at 0.7: under it
    s[2, 21] = 1.0                   # _unknown_: never a detection
    assert detections(s, b).tolist() == [True, False, False]
    save_bundle(b.model, tmp_path / "b", name=b.name, version="2",
                detector=DetectorConfig(threshold={"yes": 0.9, "no": 0.6}))
    assert detections(s, load_bundle(tmp_path / "b")).tolist() == [False, True, False]


def test_evaluate_on_the_onnx_runtime_matches_torch(audio, tmp_path, exported):
    """--runtime onnx streams the same positives and negatives through the export (float32: the same
    detections as torch; int8: measured the same way); its options are checked."""
    bundle, out = exported("kws_default")
    common = dict(model=str(FIXTURE), positives=[str(audio / "pos")], negatives=[str(audio / "neg")], windows=[5])
    ref = evaluate(EvaluateConfig(out=str(tmp_path / "torch"), **common))
    got = evaluate(EvaluateConfig(out=str(tmp_path / "onnx"), runtime="onnx", onnx=str(out), **common))
    int8 = evaluate(EvaluateConfig(out=str(tmp_path / "int8"), runtime="onnx", onnx=str(out), precision="int8",
                                   **common))
    assert (ref["model"]["runtime"], got["model"]["runtime"], int8["model"]["runtime"]) == (
        "torch", "onnx float32", "onnx int8")
    key = str(audio / "pos")
    assert got["sets"][key]["at_bundle_thresholds"] == ref["sets"][key]["at_bundle_thresholds"]
    assert got["negatives"]["at_bundle_thresholds"] == ref["negatives"]["at_bundle_thresholds"]
    assert int8["sets"][key]["at_bundle_thresholds"]["clips"] == 4
    with pytest.raises(ValueError, match="calibrate runs on the torch runtime"):
        EvaluateConfig(runtime="onnx", calibrate=0.5)
    with pytest.raises(ValueError, match="options of --runtime onnx"):
        EvaluateConfig(precision="int8")


def test_positive_sets_get_distinct_names(tmp_path):
    """A folder's manifest.csv is named by the folder, another manifest by its own stem; two sets that would share a
    name are refused (the report keys its results by name: the second would overwrite the first)."""
    from pipelines.evaluate.job import _set_names

    a, b = str(tmp_path / "v" / "manifest.csv"), str(tmp_path / "v" / "manifest_spk1.csv")
    assert _set_names([a, b]) == [str(tmp_path / "v"), str(tmp_path / "v" / "manifest_spk1")]
    with pytest.raises(DataError, match="would all be reported as"):
        _set_names([a, str(tmp_path / "v")])  # the folder itself and its manifest
