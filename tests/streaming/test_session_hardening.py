"""Issue 17 at the session: damaged or forged snapshots are refused (points 5), channels-first chunks
are refused naming both readings (6), and an empty push does not fix the stream's rate (18)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ssm_signal.snapshot import checksum, read_metadata
from ssm_signal.streaming import StreamConfig, StreamingSession
from tests.streaming.conftest import speechlike

EAGER = StreamConfig(compile=False)


def streamed(bundle) -> tuple[StreamingSession, bytes]:
    s = StreamingSession(bundle, config=EAGER)
    s.push(speechlike(0.53, 16000, 3), 16000)
    return s, s.snapshot()


def forged(blob: bytes, edit) -> bytes:
    """The snapshot with its tensors edited and the checksum recomputed (as another program could)."""
    meta, tensors = read_metadata(blob), dict(st_load(blob))
    edit(tensors)
    return st_save(tensors, metadata={**meta, "checksum": checksum({k: v.numpy() for k, v in tensors.items()})})


def test_a_flipped_byte_in_the_state_is_refused(kws_bundle):
    _, blob = streamed(kws_bundle)
    n = int.from_bytes(blob[:8], "little")
    for at in (8 + n + 5, len(blob) - 3):  # in the first and the last tensor's bytes
        bad = bytearray(blob)
        bad[at] ^= 0x40
        with pytest.raises(ValueError, match="does not match its checksum"):
            StreamingSession.restore(kws_bundle, bytes(bad), config=EAGER)


def test_a_snapshot_without_checksum_is_refused(kws_bundle):
    _, blob = streamed(kws_bundle)
    meta = {k: v for k, v in read_metadata(blob).items() if k != "checksum"}
    with pytest.raises(ValueError, match="checksum"):
        StreamingSession.restore(kws_bundle, st_save(dict(st_load(blob)), metadata=meta), config=EAGER)


def _model_key(t: dict) -> str:
    return next(k for k, v in t.items() if k.startswith("model") and v.is_floating_point() and v.numel())


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["n_pending"].fill_(10**6), r"n_pending = \[1000000\] is outside \[0, 159\]"),
    (lambda t: t["n_pending"].fill_(-7), r"n_pending = \[-7\] is outside"),
    (lambda t: t["samples_in"].fill_(-1), "samples_in"),
    (lambda t: t["finished"].fill_(3), "finished"),
    (lambda t: t[_model_key(t)].view(-1).__setitem__(0, float("nan")), "holds NaN or Inf"),
    (lambda t: t.__setitem__(_model_key(t), t[_model_key(t)].double()), "float64, expected float32"),
    (lambda t: t["input_rate"].fill_(3), "input rate 3 Hz is not one this model takes"),
])
def test_forged_state_values_are_refused(kws_bundle, edit, message):
    """Point 5: with a valid checksum, values no stream can have are still refused, each named."""
    _, blob = streamed(kws_bundle)
    with pytest.raises(ValueError, match=message):
        StreamingSession.restore(kws_bundle, forged(blob, edit), config=EAGER)


def test_a_good_snapshot_still_resumes_exactly(kws_bundle):
    a, blob = streamed(kws_bundle)
    b = StreamingSession.restore(kws_bundle, blob, config=EAGER)
    x = speechlike(0.4, 16000, 4)
    assert np.array_equal(a.push(x, 16000).frame_scores, b.push(x, 16000).frame_scores)
    assert json.loads(read_metadata(blob)["session"])["labels"] == a.labels


@pytest.mark.parametrize("shape", [(2, 64), (1, 4000), (8, 16000)])
def test_channels_first_chunk_is_refused_naming_both_readings(kws_bundle, shape):
    """Point 6: a (2, 64) chunk is not 64 channels to downmix; the state is left as it was."""
    s = StreamingSession(kws_bundle, config=EAGER)
    n, c = shape
    with pytest.raises(ValueError, match=rf"{c} channels of {n} samples; more likely {n} channels of {c} samples"):
        s.push(np.zeros(shape, np.float32), 16000)
    assert s.sample_rate is None and s.seconds == 0
    assert s.push(np.zeros((64, 2), np.float32), 16000).n_frames == 0  # time first, stereo: taken
    assert s.push(np.zeros((1, 2), np.float32), 16000).n_frames == 0  # one stereo sample: taken


def test_an_empty_push_does_not_fix_the_rate(kws_bundle):
    """Point 18: an empty chunk at 8 kHz, then the real stream at 48 kHz: no 'rate changed' error."""
    s = StreamingSession(kws_bundle, config=EAGER)
    u = s.push(np.zeros(0, np.float32), 8000)
    assert u.n_frames == 0 and s.sample_rate is None
    x = speechlike(0.5, 48000, 5)
    got = np.concatenate([s.push(x, 48000).frame_scores, s.flush().frame_scores])
    ref = kws_bundle.predict(x, 48000).frame_scores
    assert s.sample_rate == 48000 and got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
    t = StreamingSession(kws_bundle, config=EAGER)
    t.push(x[:100], 48000)
    with pytest.raises(ValueError, match="sample rate changed"):  # samples do fix it
        t.push(x[:100], 8000)
