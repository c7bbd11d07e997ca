"""Hard-negative mining (pipelines/mining.py): peaks and windows by hand, scores that do not depend on the
batch, mined windows that are the pool's own samples at its highest keyword posteriors, a loader that draws
from the split and the windows without growing the epoch, and a fit that mines."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.data import KeywordDataModule
from pipelines.mining import HardNegativeMiner, HardNegatives, keyword_scores, mine, peaks, window_at
from pipelines.train import run_fit
from ssm_signal.data import keywords as kw
from ssm_signal.data import training_speech as kn
from ssm_signal.data.audio_io import read_audio, write_audio
from ssm_signal.models import ModelConfig, SignalModel
from tests.helpers import require_tool

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LABELS = ["yes", "left", "_silence_", "_unknown_"]


def tiny_model() -> SignalModel:
    cfg = ModelConfig.from_dict({
        "frontend": {"kind": "logmel", "sample_rate": 16000, "n_mels": 16, "n_fft": 400, "hop_length": 160},
        "backbone": {"d_model": 16, "layers": ["mamba2"], "mixer_kwargs": {"mamba2": {"d_state": 8, "headdim": 8}}},
        "head": {"kind": "classify", "num_classes": 4}, "labels": LABELS})
    return SignalModel(cfg)


def test_peaks_by_hand():
    s = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.7, 0.3, 0.95, 0.0])
    assert peaks(s, 8, 3, spacing=2) == [(6, pytest.approx(0.95)), (1, pytest.approx(0.9)), (4, pytest.approx(0.7))]
    assert [f for f, _ in peaks(s, 8, 5, spacing=3)] == [6, 1]  # frames within 2 of a peak are taken
    assert [f for f, _ in peaks(s, 4, 2, spacing=1)] == [1, 2]  # only the first 4 frames
    assert peaks(s, 0, 2, spacing=1) == []


def test_window_at_by_hand():
    # frame 99 ends at sample 16000; 0.2 s after it is 19200; one second back is 3200
    assert window_at(99, 40000, 160, 16000, 3200) == (3200, 19200)
    assert window_at(5, 40000, 160, 16000, 3200) == (0, 16000)  # near the start: the first second
    assert window_at(240, 40000, 160, 16000, 3200) == (24000, 40000)  # near the end: the last second
    assert window_at(10, 9000, 160, 16000, 3200) == (0, 9000)  # shorter than a window: all of it


def test_scores_do_not_depend_on_the_batch(seed):
    m = tiny_model().eval()
    sigs = [torch.randn(n) * 0.1 for n in (8000, 16000, 11111)]
    together = keyword_scores(m, sigs, [0, 1])
    for s, t in zip(sigs, together, strict=True):
        alone = keyword_scores(m, [s], [0, 1])[0]
        assert t.shape == (s.shape[0] // 160,)
        torch.testing.assert_close(t, alone, rtol=1e-5, atol=1e-6)
        # the largest of the keywords' posteriors, frame by frame, as the model's own forward gives them
        y, _ = m(s[None, :, None])
        torch.testing.assert_close(alone, y.softmax(-1)[0, :, :2].amax(-1), rtol=1e-5, atol=1e-6)


def test_mine_keeps_the_highest_windows_of_the_pool(tmp_path, seed):
    rng = np.random.default_rng(seed)
    files = [write_audio(tmp_path / f"s{i}.wav", rng.normal(scale=0.1, size=n).astype(np.float32), 16000)
             for i, n in enumerate((30000, 52000, 12000, 40000))]
    m = tiny_model().train()
    cfg = HardNegatives(keep=5, per_sentence=2)
    clips, kept = mine(m, files, [0, 1], cfg, 16000)
    assert m.training  # back in the mode it was in
    assert len(clips) == len(kept) == 5
    assert [w.score for w in kept] == sorted((w.score for w in kept), reverse=True)
    m.eval()
    every = []
    for i, f in enumerate(files):
        sig = read_audio(f, 16000)
        sc = keyword_scores(m, [sig], [0, 1])[0]
        every += [(s, i) for _, s in peaks(sc, len(sc), 2, 100)]
    # the kept ones are the five highest peaks over the pool
    assert [w.score for w in kept] == pytest.approx(sorted((s for s, _ in every), reverse=True)[:5], rel=1e-5)
    for clip, w in zip(clips, kept, strict=True):
        sig = read_audio(files[w.source], 16000)
        assert torch.equal(clip, sig[w.start: w.end])
        assert w.end - w.start == min(16000, sig.shape[0])


def test_bad_settings():
    with pytest.raises(ValueError, match="epochs"):
        HardNegatives(epochs=(0,))
    with pytest.raises(ValueError, match="after_s"):
        HardNegatives(window_s=0.5, after_s=0.5)
    with pytest.raises(ValueError, match="keep"):
        HardNegatives(keep=0)


TINY = kw.KeywordSetConfig(n_speakers=8, words=("yes", "left"), other_words=("bed",), other_per_speaker=1,
                           validation_percent=25, testing_percent=25,
                           training_speech=kn.TrainingSpeech(sentences_per_speaker=1, pool_sentences_per_speaker=2))


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    require_tool("espeak-ng")
    return kw.generate_keyword_set(tmp_path_factory.mktemp("mine") / "kw", seed=3, workers=1, config=TINY)


def test_the_loader_draws_from_the_split_and_the_windows(pooled):
    dm = KeywordDataModule(root=str(pooled), words="yes,left", generate=False, batch_size=4, num_workers=0,
                           hard_negatives=HardNegatives())
    dm.setup()
    n = len(dm.train_set)
    assert len(dm.pool_files()) == 2 * sum(s.split == "training" for s in kw.plan_speakers(TINY, 3))
    assert len(dm.train_dataloader().dataset) == n  # nothing mined yet
    windows = [torch.full((16000,), 0.5), torch.full((12000,), 0.25)]
    dm.set_hard_negatives(windows)
    loader = dm.train_dataloader()
    assert len(loader.dataset) == n + 2 and loader.sampler.num_samples == n
    unknown = dm.labels.index("_unknown_")
    for i in (n, n + 1):
        x, y = loader.dataset[i]
        assert y == unknown and x.shape[0] > 0


def test_a_fit_mines_after_its_epochs(pooled, tmp_path, caplog, local_speech_encoder):
    fast = ["--trainer.logger", "false", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", "--trainer.reload_dataloaders_every_n_epochs", "1"]
    args = ["--config", str(CONFIGS / "kws_default.yaml"), *fast, "--data.init_args.root", str(pooled),
            "--data.init_args.generate", "false", "--data.init_args.words", "yes,left",
            "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0",
            "--data.init_args.hard_negatives", '{"epochs": [1], "keep": 3}', "--model.cached_views", "0",
            "--output.bundle_dir", str(tmp_path / "bundle"), "--trainer.default_root_dir", str(tmp_path / "runs")]
    with caplog.at_level(logging.INFO, logger="ssm_signal.pipelines"):
        run_fit(args)
    mined = [r.getMessage() for r in caplog.records if "mined" in r.getMessage()]
    assert len(mined) == 1 and mined[0].startswith("epoch 1: mined 3 windows from")
    # without the loader reload the windows would never be read: refused before training
    i = args.index("--trainer.reload_dataloaders_every_n_epochs")
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs"):
        run_fit(args[:i] + args[i + 2:] + ["--output.bundle_dir", str(tmp_path / "b2")])


def test_mining_needs_a_pool(tmp_path):
    dm = KeywordDataModule(root=str(tmp_path), generate=False, hard_negatives=HardNegatives())
    assert dm.pool_files() == []
    trainer = types.SimpleNamespace(reload_dataloaders_every_n_epochs=1, datamodule=dm)
    with pytest.raises(ValueError, match="no mining pool"):
        HardNegativeMiner(HardNegatives()).on_fit_start(trainer, None)
