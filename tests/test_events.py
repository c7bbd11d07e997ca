"""EventDetector: moving average, threshold, refractory period, ignored labels, chunk invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm_signal.events import DetectorConfig, EventDetector

LABELS = ["yes", "no", "_silence_", "_unknown_"]


def run(det: EventDetector, scores: torch.Tensor, sizes: list[int]):
    state, sm, ev, t = det.init_state(scores.shape[0]), [], [[] for _ in range(scores.shape[0])], 0
    for n in sizes:
        s, e, state = det(scores[:, t:t + n].numpy(), state)
        sm.append(s)
        for b in range(len(ev)):
            ev[b] += e[b]
        t += n
    return np.concatenate(sm, 1), ev, state


def test_moving_average_by_hand(seed):
    det = EventDetector("keyword", LABELS, 100.0, DetectorConfig(smoothing_frames=4, threshold=2.0))
    x = torch.rand(2, 30, 4)
    sm, ev, state = run(det, x, [30])
    ref = np.stack([[x[b, max(0, t - 3):t + 1].double().mean(0).numpy() for t in range(30)] for b in range(2)])
    assert np.allclose(sm, ref, atol=1e-6)
    assert ev == [[], []] and state.seen.tolist() == [30, 30]  # threshold 2: nothing fires
    # chunked: identical smoothing
    sm2, _, _ = run(det, x, [1, 2, 5, 1, 21])
    assert np.array_equal(sm, sm2)


def test_threshold_refractory_and_ignored_labels():
    det = EventDetector("keyword", LABELS, 100.0, DetectorConfig(smoothing_frames=1, threshold=0.6,
                                                                 refractory_s=0.05))
    x = torch.zeros(1, 60, 4)
    x[0, :, 2] = 0.9          # _silence_ high everywhere: never reported
    x[0, 10:30, 0] = 0.7      # "yes" held from frame 10 to 29: one event, at 10
    x[0, 32, 1] = 0.6         # "no" exactly at the threshold at 32 (after the refractory period)
    x[0, 34, 0] = 0.9         # "yes" rises again at 34: inside the refractory period of "no" (32 + 5)
    x[0, 40:43, 0] = 0.8      # ... and at 40: fires
    x[0, 43:50, 1] = 0.9      # "no" takes over at 43, within the refractory period of 40: no event
    x[0, 50:55, 0] = 0.59     # below the threshold: nothing
    _, ev, state = run(det, x, [60])
    assert [(e.label, e.frame) for e in ev[0]] == [("yes", 10), ("no", 32), ("yes", 40)]
    assert ev[0][0].time_s == pytest.approx(0.11) and ev[0][0].kind == "keyword"
    assert int(state.quiet_until[0]) == 45 and int(state.held[0]) == -1
    for sizes in ([1] * 60, [11, 4, 25, 20], [33, 7, 1, 19], [41, 2, 17]):
        assert run(det, x, sizes)[1] == ev


def test_default_threshold_ignores_onset_blips():
    """The default 0.8: a brief rival posterior (0.65) at a word's onset does not fire; the word does, once."""
    det = EventDetector("keyword", LABELS, 100.0, DetectorConfig(smoothing_frames=1))
    assert det.threshold == 0.8
    x = torch.zeros(1, 200, 4)
    x[0, :, 2] = 0.9
    x[0, 50:55, 1] = 0.65     # the onset blip of another word
    x[0, 55:180, 0] = 0.95    # the word, its posterior held for 1.25 s (longer than the refractory period)
    _, ev, _ = run(det, x, [200])
    assert [(e.label, e.frame) for e in ev[0]] == [("yes", 55)]


def test_anomaly_alarms_above_threshold():
    det = EventDetector("anomaly", ["anomaly"], 50.0, DetectorConfig(refractory_s=0.1), default_threshold=3.0)
    assert det.threshold == 3.0 and det.window == 1
    x = torch.zeros(1, 20, 1)
    x[0, 5] = 3.0   # at the threshold: not an alarm (the bundle labels "anomaly" only above it)
    x[0, 7] = 3.5
    x[0, 9] = 9.0   # inside the refractory period of 7 (5 frames)
    x[0, 12] = 4.0
    _, ev, _ = run(det, x, [20])
    assert [(e.kind, e.label, e.frame, e.score) for e in ev[0]] == [("anomaly", "anomaly", 7, 3.5),
                                                                     ("anomaly", "anomaly", 12, 4.0)]


def test_config_errors():
    with pytest.raises(ValueError, match="smoothing_frames"):
        DetectorConfig(smoothing_frames=0)
    with pytest.raises(ValueError, match="refractory"):
        DetectorConfig(refractory_s=-1)
    with pytest.raises(ValueError, match="threshold"):
        DetectorConfig(threshold=float("nan"))
    with pytest.raises(ValueError, match="does not have"):
        EventDetector("keyword", LABELS, 100.0, DetectorConfig(ignore=("maybe",)))
    with pytest.raises(ValueError, match="every label"):
        EventDetector("keyword", ["_a", "_b"], 100.0)
    with pytest.raises(ValueError, match="kind"):
        EventDetector("speech", LABELS, 100.0)


def test_per_label_thresholds():
    """A mapping gives each keyword its own threshold; labels it leaves out take the default."""
    det = EventDetector("keyword", LABELS, 100.0, DetectorConfig(smoothing_frames=1, threshold={"yes": 0.9},
                                                                 default_threshold=0.5, refractory_s=0.0))
    assert det.threshold == {"yes": 0.9, "no": 0.5}
    x = torch.zeros(1, 40, 4)
    x[0, :, 2] = 0.4
    x[0, 5:10, 0] = 0.8    # "yes" at 0.8 < 0.9: nothing
    x[0, 15:20, 1] = 0.6   # "no" at 0.6 >= 0.5: fires at 15
    x[0, 25:30, 0] = 0.95  # "yes" at 0.95: fires at 25
    _, ev, _ = run(det, x, [40])
    assert [(e.label, e.frame) for e in ev[0]] == [("no", 15), ("yes", 25)]
    assert run(det, x, [3, 1, 17, 19])[1] == ev
    with pytest.raises(ValueError, match="does not report.*_silence_"):
        EventDetector("keyword", LABELS, 100.0, DetectorConfig(threshold={"_silence_": 0.5}))
    with pytest.raises(ValueError, match="finite number"):
        DetectorConfig(threshold={"yes": float("nan")})


def test_config_layers_and_round_trip():
    """The caller's fields win over the bundle's, the bundle's over the defaults; JSON round trip."""
    bundle = DetectorConfig(smoothing_frames=20, threshold={"yes": 0.97})
    caller = DetectorConfig(refractory_s=2.0)
    merged = caller.over(bundle)
    assert (merged.smoothing_frames, merged.threshold, merged.refractory_s) == (20, {"yes": 0.97}, 2.0)
    assert DetectorConfig(threshold=0.3).over(bundle).threshold == 0.3
    assert DetectorConfig.from_dict(merged.to_dict()) == merged
    assert DetectorConfig().to_dict() == {}
    with pytest.raises(ValueError, match="unknown detector config keys"):
        DetectorConfig.from_dict({"treshold": 0.5})
