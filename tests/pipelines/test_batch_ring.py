"""The scorer's fast path: 16-bit PCM read as int16, batches through a shared BatchRing written
by DataLoader workers, results equal to the ordinary path and to bundle.predict."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import pipelines.score.batching as batching
from pipelines.batch_ring import BatchRing, RingOverrun
from pipelines.score import ScoreConfig, score
from pipelines.score.batching import BatchFiles, Collate, ReadBatch
from pipelines.score.readers import read_pcm16
from ssm_signal import load_bundle, save_bundle
from ssm_signal.bundle import pcm_to_float
from tests.pipelines.test_score import make_files
from tests.test_bundle import small_model


def test_ring_pads_each_batch_and_detects_a_slot_rewritten_too_early():
    ring = BatchRing(slots=3, capacity=40)
    long = [np.full((7, 2), 5, dtype=np.int16), np.full((4, 2), 6, dtype=np.int16)]
    slot, shape = ring.write(0, long)
    assert (slot, shape) == (0, (2, 7, 2))
    # a later batch in the same slot, shorter: the rest of each row is zero, not the old samples
    short = [np.arange(6, dtype=np.int16).reshape(3, 2), np.ones((1, 2), dtype=np.int16)]
    slot, shape = ring.write(3, short)
    got = ring.view(slot, shape)
    assert slot == 0 and shape == (2, 3, 2)
    assert np.array_equal(got[0], short[0]) and np.array_equal(got[1, :1], short[1]) and not got[1, 1:].any()
    ring.check(0, 3)
    with pytest.raises(RingOverrun, match="slot 0 was rewritten"):
        ring.check(0, 0)  # batch 0's slot already belongs to batch 3
    assert ring.fits(2, 10, 2) and not ring.fits(3, 10, 2)
    with pytest.raises(TypeError, match="fork only"):
        pickle.dumps(ring)  # a copy in another process would not share the slots


def test_collate_routes_int16_batches_to_the_ring_when_they_fit():
    ring = BatchRing(slots=4, capacity=100)

    def read(batch_no, *lengths, dtype=np.int16, failed=0):
        """A ReadBatch of files with these lengths (and ``failed`` files that did not decode)."""
        signals = [np.full((n, 1), i + 1, dtype) if dtype == np.int16 else torch.ones(n, 1)
                   for i, n in enumerate(lengths)]
        n = len(lengths) + failed
        files = BatchFiles([f"f{i}" for i in range(n)], [None] * n, [None] * len(lengths) + ["ValueError: bad"] * failed,
                           [k / 8000 for k in lengths] + [0.0] * failed, [True] * len(lengths) + [False] * failed)
        return ReadBatch(batch_no, files, signals)

    fits = Collate(ring)(read(5, 40, 50))
    assert fits["x"] is None and fits["ring"] == (1, 5, (2, 50, 1)) and list(fits["lengths"]) == [40, 50]
    assert torch.equal(ring.view(1, (2, 50, 1))[0, 40:], torch.zeros(10, 1, dtype=torch.int16))
    big = Collate(ring)(read(6, 60, 50))  # 2 x 60 samples > 100: the ordinary path, still int16
    assert big["ring"] is None and big["x"].dtype == torch.int16 and big["x"].shape == (2, 60, 1)
    mixed = read(7, 10, 20)
    mixed.signals[1] = torch.ones(20, 1)  # a float file: a float batch
    mixed = Collate(ring)(mixed)
    assert mixed["ring"] is None and mixed["x"].dtype == torch.float32
    assert torch.equal(mixed["x"][0, :10, 0], torch.full((10,), 1 / 32768))  # pcm_to_float of the int16 one
    failed = Collate(ring)(read(8, failed=1))  # no file decoded
    assert failed["x"] is None and failed["ring"] is None and failed["files"].ok == [False]


def test_read_pcm16_only_for_pcm16_at_the_model_rate_and_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(400)).astype(np.float32)
    cases = {"pcm16.wav": (8000, "PCM_16", x), "float.wav": (8000, "FLOAT", x), "rate.wav": (16000, "PCM_16", x),
             "stereo.wav": (8000, "PCM_16", np.stack([x, x], 1)), "short.wav": (8000, "PCM_16", x[:10]),
             "pcm16.flac": (8000, "PCM_16", x)}
    for name, (rate, subtype, data) in cases.items():
        sf.write(tmp_path / name, data, rate, subtype=subtype)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    sf.write(tmp_path / "cut.wav", np.stack([x, x], 1), 8000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "cut.wav").read_bytes()[:-3])  # ends mid-frame
    got = {p.name: read_pcm16(str(p), 8000, 1, 32) for p in tmp_path.iterdir()}
    assert {k for k, v in got.items() if v is not None} == {"pcm16.wav", "pcm16.flac"}
    cut = read_pcm16(str(tmp_path / "cut.wav"), 8000, 2, 32)  # the whole frames, as soundfile reads them
    ref, _ = sf.read(tmp_path / "cut.wav", dtype="int16", always_2d=True)
    assert cut.shape == (399, 2) and np.array_equal(cut, ref)
    for name in ("pcm16.wav", "pcm16.flac"):
        pcm = got[name]
        assert pcm.dtype == np.int16 and pcm.shape == (400, 1)
        ref, _ = sf.read(tmp_path / name, dtype="float32", always_2d=True)
        assert torch.equal(pcm_to_float(torch.from_numpy(pcm)), torch.from_numpy(ref))  # bit for bit


def test_ring_path_rows_equal_the_ordinary_path_and_predict(tmp_path, monkeypatch):
    """Two workers, batches of 2 through a ring of 10 slots: 24 PCM files at the model's rate fill 12
    batches (slots reused; the longest batches do not fit a slot and take the ordinary int16 path),
    float and resampled files take the ordinary float path, broken and too short files get error
    rows; every row equals the ring-less run and bundle.predict."""
    bundle_dir = save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="1")
    rng = np.random.default_rng(1)
    (tmp_path / "data").mkdir()
    files = make_files(tmp_path / "data" / "other", 4, seconds=0.3, rate=11025)
    for i in range(27):
        p = tmp_path / "data" / f"{i:02d}.wav"
        x = (0.3 * rng.standard_normal(int(rng.integers(1600, 3200)))).astype(np.float32)
        sf.write(p, x, 8000, subtype="PCM_16" if i < 24 else "FLOAT")
        files.append(p)
    (tmp_path / "data" / "broken.wav").write_bytes(b"RIFF....not a wav")
    sf.write(tmp_path / "data" / "short.wav", np.zeros(10, np.float32), 8000, subtype="PCM_16")
    rings = []
    make_ring = batching.make_ring
    monkeypatch.setattr(batching, "make_ring", lambda *a: rings.append(make_ring(*a)) or rings[-1])
    # slots of 2 x 3000 samples: batches of two files longer than 3000 samples bypass the ring
    common = dict(model=str(bundle_dir), input=str(tmp_path / "data"), batch_size=2, num_workers=2,
                  accelerator="cpu", mlflow=False, ring_bytes=10 * 2 * 6000)
    with_ring = score(ScoreConfig(output=str(tmp_path / "ring.parquet"), ring=True, **common))
    without = score(ScoreConfig(output=str(tmp_path / "plain.parquet"), ring=False, **common))
    assert len(rings) == 1 and rings[0].slots == 10 and rings[0].capacity == 6000
    used = rings[0].owner[rings[0].owner >= 0]
    assert len(used) == 10 and used.max() >= 10  # every slot written, some twice
    assert with_ring["ok"] == without["ok"] == 31 and with_ring["errors"] == without["errors"] == 2
    a = pd.read_parquet(tmp_path / "ring.parquet").set_index("path")
    b = pd.read_parquet(tmp_path / "plain.parquet").set_index("path")
    bundle = load_bundle(bundle_dir)
    assert a.loc[str(tmp_path / "data" / "short.wav"), "error"].startswith("ValueError: too short")
    for p in files:
        assert np.array_equal(a.loc[str(p), "scores"], b.loc[str(p), "scores"])
        x, rate = sf.read(p, dtype="float32")
        assert np.allclose(a.loc[str(p), "scores"], bundle.predict(x, rate).scores, atol=1e-5)


@pytest.mark.gpu
def test_gpu_scoring_through_the_ring_equals_the_cpu(tmp_path):
    """On a GPU: page-locked ring, copy stream, int16 converted on the device, scores copied back
    asynchronously and written one batch behind: the rows equal a CPU run's."""
    bundle_dir = save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="1")
    files = make_files(tmp_path / "data", 60, seconds=0.4)
    rings = []
    make_ring = batching.make_ring
    common = dict(model=str(bundle_dir), input=str(tmp_path / "data"), batch_size=4, num_workers=2, mlflow=False)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(batching, "make_ring", lambda *a: rings.append(make_ring(*a)) or rings[-1])
        gpu = score(ScoreConfig(output=str(tmp_path / "gpu.parquet"), accelerator="gpu", ring=True, **common))
    cpu = score(ScoreConfig(output=str(tmp_path / "cpu.parquet"), accelerator="cpu", **common))
    assert len(rings) == 1 and (rings[0].owner >= rings[0].slots).any()  # the ring was used, slots reused
    assert gpu["ok"] == cpu["ok"] == 60
    a = pd.read_parquet(tmp_path / "gpu.parquet").set_index("path")
    b = pd.read_parquet(tmp_path / "cpu.parquet").set_index("path")
    for p in files:
        assert a.loc[str(p), "label"] == b.loc[str(p), "label"]
        assert np.allclose(a.loc[str(p), "scores"], b.loc[str(p), "scores"], atol=1e-4)


def test_auto_ring_only_for_jobs_that_reuse_it():
    """Auto mode: a ring of 10 slots x the largest batch is made only when the job moves twice its bytes."""
    cfg = ScoreConfig(model="m", input="i", output="o", num_workers=2, batch_size=2)
    batches = [[0, 1], [2, 3]]
    ring = batching.make_ring([32_000] * 4, batches, cfg)  # 128 KB of files, a 640 KB ring
    assert ring is None
    big = batching.make_ring([32_000] * 40, [[i, i + 1] for i in range(0, 40, 2)], cfg)  # 1.28 MB: twice
    forced = batching.make_ring([32_000] * 4, batches, dataclasses.replace(cfg, ring=True))
    assert forced is not None and forced.slots == 10 and forced.capacity == 32_000
    assert big is not None and big.capacity == 32_000
    capped = batching.make_ring([32_000] * 4, batches, dataclasses.replace(cfg, ring=True, ring_bytes=100_000))
    assert capped.capacity == 5_000  # 100 kB over 10 slots of int16
    big_batches = [[i, i + 1] for i in range(0, 40, 2)]
    assert batching.make_ring([32_000] * 40, big_batches, cfg, pcm16_share=0.4) is None  # mostly other formats
    for strategy in ("ddp_spawn", "ddp_fork"):  # ranks that would share or inherit one ring
        assert batching.make_ring([32_000] * 40, big_batches, dataclasses.replace(cfg, strategy=strategy)) is None
