"""The scorer's forward as CUDA graphs (pipelines/batch_graphs.py) and the sync-free forward under it.

On the CPU: the bucket grid; padding a batch as the graphs do leaves every file's scores and
frames as they were, for every layer kind and both frontends; the forward with a known phase
and no value scan equals the checked one. On a GPU (marker ``gpu``): graph replay equals its
eager twin in whole scoring jobs of mixed lengths, error rows and frames, and a function that
cannot be captured falls back to eager with a warning.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import ssm_signal.bundle as bundle_mod
from pipelines.batch_graphs import BatchGraphs, _Shape, bucket
from pipelines.score import ScoreConfig, score
from pipelines.score.predict import Scorer
from ssm_signal import Bundle, save_bundle
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel
from tests.test_bundle import small_model


def test_bucket_grid():
    values = [bucket(n) for n in range(1, 5000)]
    assert values[:31] == list(range(1, 32))  # exact below 2 * STEPS
    for n, b in enumerate(values, start=1):
        assert n <= b <= n + n // 16  # at most 1/16 of padding
        assert bucket(b) == b  # grid values are their own bucket
    assert len({b for b in values[2047:4095] if b < 4096}) == 16  # 16 steps in the octave [2048, 4096)
    assert bucket(100) == 100 and bucket(1023) == bucket(1000) == 1024 and bucket(1025) == 1088
    with pytest.raises(ValueError, match="n >= 1"):
        bucket(0)


def test_padded_shape_rows_capped_at_the_batch_size():
    g = BatchGraphs(lambda x, f: (x,), batch_size=1000, samples_per_frame=160)
    assert g.padded(1000, 16000) == (1000, 16000)  # a full batch of 1-s clips: no padding
    assert g.padded(999, 16000) == (1000, 16000)  # one error row in the batch: the same shape
    assert g.padded(7, 16001) == (7, 16640)  # 101 frames begun: 104 on the grid
    assert g.padded(40, 100) == (40, 160)  # whole frames


def test_off_cuda_the_eager_twin_runs_on_the_batch_as_given():
    seen = []
    g = BatchGraphs(lambda x, f: (seen.append(tuple(x.shape)) or x.sum(1),), batch_size=8, samples_per_frame=4)
    (out,) = g(torch.ones(3, 10, 1), torch.ones(3, dtype=torch.int64))
    assert seen == [(3, 10, 1)] and torch.equal(out, torch.full((3, 1), 10.0)) and g.counts == {"eager": 1}


def bundle_of(model: SignalModel) -> Bundle:
    return Bundle(model, model.config, "m", "1", {})


def models():
    audio = FrontendConfig(n_mels=8, n_fft=64, hop_length=32, sample_rate=8000, f_max=4000)
    sensor = FrontendConfig(kind="sensor", in_channels=2, sample_rate=50, decimate=3)
    kw = {"mamba": {"d_state": 4}, "mamba2": {"headdim": 4, "d_state": 4, "chunk_size": 8}, "s4d": {"d_state": 4},
          "attention": {"n_heads": 2, "window": 5}}
    layers = ["mamba", "mamba2", "s4d", "attention"]
    for name, fc, head in [("audio-classify", audio, HeadConfig("classify", num_classes=3)),
                           ("sensor-anomaly", sensor, HeadConfig("anomaly"))]:
        cfg = ModelConfig(fc, BackboneConfig(d_model=8, layers=layers, mixer_kwargs=kw), head,
                          labels=["a", "b", "c"] if head.kind == "classify" else [])
        torch.manual_seed(0)
        yield name, SignalModel(cfg).eval()


@pytest.mark.parametrize("name", ["audio-classify", "sensor-anomaly"])
@pytest.mark.parametrize("frames", [False, True])
def test_padding_as_the_graphs_do_changes_no_result(name, frames):
    """Rows and samples added around a batch (BatchGraphs._fill) leave the real rows' clip scores and
    valid frames as they were: causal layers, independent rows (every layer kind, both frontends)."""
    model = dict(models())[name]
    scorer = Scorer(bundle_of(model), frames=frames, batch_size=8)
    spf, C = model.samples_per_frame, model.in_channels
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([40 * spf + 1, 31 * spf, 7 * spf + 2, 40 * spf])
    x = torch.randn(4, int(lengths.max()), C, generator=gen)
    for i, n in enumerate(lengths):
        x[i, n:] = 0  # a padded batch, as Collate makes it
    n_frames = lengths // spf
    eager = scorer.forward_batch(x, n_frames)
    g = BatchGraphs(scorer.forward_batch, 8, spf)
    rows, samples = g.padded(4, x.shape[1])
    assert (rows, samples) != (4, x.shape[1])
    shape = _Shape(torch.full((rows, samples, C), 7.0), torch.zeros(rows, dtype=torch.int64))  # stale contents
    g._fill(shape, x, n_frames)
    padded = scorer.forward_batch(shape.x, shape.frames)
    torch.testing.assert_close(padded[0][:4], eager[0], atol=1e-5, rtol=1e-5)
    if frames:
        for i, f in enumerate(n_frames.tolist()):
            torch.testing.assert_close(padded[1][i, :f], eager[1][i, :f], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["audio-classify", "sensor-anomaly"])
def test_unchecked_frame_outputs_equal_the_checked_forward(name, monkeypatch):
    """frame_outputs(check_values=False) passes phase 0 per window instead of reading it: the same
    frames as the model's checked forward over the whole signal, with windows that are not whole
    frames of the signal's rate (sensor: 0.5 s at 50 Hz = 25 samples, decimate 3: 24 taken)."""
    model = dict(models())[name]
    b = bundle_of(model)
    monkeypatch.setattr(bundle_mod, "PREDICT_WINDOW_SECONDS", 0.5)
    x = torch.randn(3, 1000 if name == "sensor-anomaly" else 9000, model.in_channels)
    with torch.inference_mode():
        whole, _ = model(x)
        torch.testing.assert_close(b.frame_outputs(x, check_values=False), whole, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.frame_outputs(x), whole, atol=1e-5, rtol=1e-5)
    x[1, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        b.frame_outputs(x)


@pytest.mark.parametrize("name", ["audio-classify", "sensor-anomaly"])
def test_a_known_phase_equals_the_phase_read_from_the_state(name):
    model = dict(models())[name]
    x = torch.randn(2, 500, model.in_channels)
    with torch.inference_mode():
        _, state = model(x[:, :77])  # a chunk that ends mid-frame
        p = int(state.frontend.phase[0])
        assert p != 0
        read, _ = model._forward(x[:, 77:], state)
        known, _ = model._forward(x[:, 77:], state, phase=p)
    assert torch.equal(read, known)


# ---------------------------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------------------------
def mixed_files(root, n: int = 60) -> list:
    """WAV files of several lengths (several graph shapes), some at another rate (the float path)
    and a few broken (error rows: batches with fewer decoded files)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        p = root / f"c{i % 3}" / f"f{i:03d}.wav"
        rate = 16000 if i % 5 == 0 else 8000
        seconds = [0.3, 0.45, 0.8, 1.3][i % 4]
        sf.write(p, (0.2 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate, subtype="PCM_16")
        paths.append(p)
    (root / "c0" / "broken.wav").write_bytes(b"RIFF....nothing")
    sf.write(root / "c1" / "short.wav", np.zeros(3, np.float32), 8000)
    return paths


@pytest.mark.gpu
@pytest.mark.parametrize("frames", [False, True])
def test_gpu_graph_replay_equals_the_eager_twin_and_the_cpu(tmp_path, frames):
    bundle_dir = save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="1")
    mixed_files(tmp_path / "data")
    common = dict(model=str(bundle_dir), input=str(tmp_path / "data"), batch_size=4, num_workers=2, mlflow=False,
                  frames=frames)
    graph = score(ScoreConfig(output=str(tmp_path / "graph.parquet"), accelerator="gpu", **common))
    eager = score(ScoreConfig(output=str(tmp_path / "eager.parquet"), accelerator="gpu", cuda_graphs=False, **common))
    cpu = score(ScoreConfig(output=str(tmp_path / "cpu.parquet"), accelerator="cpu", **common))
    counts = graph["cuda_graph_batches"]
    assert counts["replayed"] >= 4 and counts["captured"] >= 3, counts
    assert "cuda_graph_batches" not in eager
    assert graph["ok"] == eager["ok"] == cpu["ok"] == 60 and graph["errors"] == 2
    a, b, c = (pd.read_parquet(tmp_path / f"{k}.parquet").set_index("path").sort_index()
               for k in ("graph", "eager", "cpu"))
    assert (a.index == b.index).all() and (a["status"] == b["status"]).all()
    ok = a["status"] == "ok"
    assert (a.loc[ok, "label"] == c.loc[ok, "label"]).all()
    diff = np.abs(np.stack(a.loc[ok, "scores"]) - np.stack(b.loc[ok, "scores"])).max()
    assert diff <= 1e-5, diff
    assert np.abs(np.stack(a.loc[ok, "scores"]) - np.stack(c.loc[ok, "scores"])).max() <= 1e-4
    if frames:
        fa = pd.read_parquet(tmp_path / "graph_frames").sort_values(["path", "frame"])
        fb = pd.read_parquet(tmp_path / "eager_frames").sort_values(["path", "frame"])
        assert len(fa) == len(fb) and (fa["path"].to_numpy() == fb["path"].to_numpy()).all()
        assert np.abs(fa[["yes", "no", "up"]].to_numpy() - fb[["yes", "no", "up"]].to_numpy()).max() <= 1e-5


@pytest.mark.gpu
def test_gpu_a_function_that_synchronises_runs_eagerly(caplog):
    """.item() inside the function cannot be captured: a warning, the shape refused, every call still right."""
    def fn(x, frames):
        return (x.sum(dim=(1, 2)) * (1 + 0 * x.abs().max().item()),)

    g = BatchGraphs(fn, batch_size=4, samples_per_frame=2)
    x = torch.randn(3, 10, 1, device="cuda")
    frames = torch.ones(3, dtype=torch.int64, device="cuda")
    with caplog.at_level(logging.WARNING, logger="ssm_signal.pipelines"):
        outs = [g(x * k, frames)[0].clone() for k in (1, 2, 3)]
    assert "could not capture" in caplog.text and not g.shapes and len(g.refused) == 1
    assert g.counts == {"eager": 3}  # the first on the padded buffers (then the failed capture), then the twin
    for k, out in zip((1, 2, 3), outs, strict=True):
        torch.testing.assert_close(out, (x * k).sum(dim=(1, 2)))
    # CUDA still usable, random numbers too (a failed capture leaves the generator mid-capture: closed)
    assert float(torch.ones(1, device="cuda").sum()) == 1.0
    assert torch.randn(4, device="cuda").isfinite().all()


@pytest.mark.gpu
def test_gpu_graphs_of_every_layer_kind_equal_eager():
    for name, model in models():
        model = model.cuda()
        scorer = Scorer(bundle_of(model), frames=True, batch_size=8)
        g = BatchGraphs(scorer.forward_batch, 8, model.samples_per_frame)
        spf = model.samples_per_frame
        # shapes: (5, 40 frames) captured, replayed for 39 frames + 1 sample, (8, 40) captured, both replayed
        for n, length in [(5, 40 * spf), (5, 39 * spf + 1), (8, 40 * spf), (5, 40 * spf), (8, 40 * spf - 1)]:
            x = torch.randn(n, length, model.in_channels, device="cuda")
            n_frames = torch.full((n,), length // spf, device="cuda")
            got = [o.clone() for o in g(x, n_frames)]
            want = scorer.forward_batch(x, n_frames)
            torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5, msg=name)
            f = length // spf
            torch.testing.assert_close(got[1][:, :f], want[1][:, :f], atol=1e-5, rtol=1e-5, msg=name)
        assert g.counts == {"captured": 2, "replayed": 3}, (name, g.counts)
