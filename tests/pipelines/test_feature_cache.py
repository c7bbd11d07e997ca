"""Training on cached frontend features (pipelines/feature_cache.py): the views are the frontend's own output per
clip, each epoch reads one view, a cached step's loss is the uncached step's on the same audio, and what cannot be
cached is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from pipelines.data import KeywordDataModule, pad_batch
from pipelines.feature_cache import FeatureViews, ViewSampler, check_frozen, encode_views
from pipelines.mining import HardNegatives
from pipelines.task import SignalTask
from ssm_signal.models import ModelConfig, SignalModel
from tests.helpers import lively_encoder_

LABELS = ["yes", "no", "_silence_", "_unknown_"]


def embedding_model() -> SignalModel:
    cfg = ModelConfig.from_dict({
        "frontend": {"kind": "speech_embedding", "sample_rate": 16000},
        "backbone": {"d_model": 16, "layers": ["mamba2"], "mixer_kwargs": {"mamba2": {"d_state": 8, "headdim": 8}}},
        "head": {"kind": "classify", "num_classes": 4}, "labels": LABELS})
    torch.manual_seed(0)
    m = SignalModel(cfg).eval()
    lively_encoder_(m.frontend.encoder)
    return m


class Noisy(Dataset):
    """Clips of several lengths (one shorter than a frame); each draw adds fresh noise, as augmentation does, and
    is recorded."""

    lengths = (1000, 2600, 5120, 16000, 12345)

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.clips = [torch.randn(n, generator=g) * 0.1 for n in self.lengths]
        self.draws: list[torch.Tensor] = []

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        x = self.clips[i] + 0.01 * torch.randn(self.clips[i].shape)
        self.draws.append(x)
        return x, i % 4


def alone(m: SignalModel, x: torch.Tensor) -> torch.Tensor:
    """The frontend's features of one clip from a fresh state, the clip padded with silence to a frame if shorter."""
    x = torch.nn.functional.pad(x, (0, max(0, m.samples_per_frame - x.shape[0])))
    with torch.no_grad():
        return m.frontend._forward(x[None, :, None], m.frontend.init_state(1))[0][0]


def test_sampler_reads_one_view_an_epoch():
    s = ViewSampler(5, 3, seed=2)
    seen = [list(s) for _ in range(6)]  # no set_epoch: each pass is the next epoch
    for e, idx in enumerate(seen):
        assert sorted(idx) == list(range((e % 3) * 5, (e % 3) * 5 + 5))
    assert seen[0] != seen[3]  # view 0 again, in another order
    s2 = ViewSampler(5, 3, seed=2)
    s2.set_epoch(4)
    assert list(s2) == seen[4]  # what Lightning's set_epoch asks for


def test_views_are_the_frontends_output_per_clip():
    m = embedding_model()
    ds = Noisy()
    spf = m.samples_per_frame
    views = encode_views(ds, m.frontend, 2, spf, batch_size=3)
    assert len(views) == 2 and all(len(v) == len(ds) for v in views)
    assert len(ds.draws) == 2 * len(ds)  # every clip drawn (augmented) anew for each view
    for v in range(2):
        for i, n in enumerate(ds.lengths):
            f, y = views[v][i]
            assert int(y) == i % 4 and f.shape == (max(1, n // spf), 96)
            torch.testing.assert_close(f, alone(m, ds.draws[v * len(ds) + i])[: f.shape[0]], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(views[0][3][0], views[1][3][0])  # two draws, two sets of features


def test_cached_step_loss_is_the_uncached_loss():
    m = embedding_model()
    task = SignalTask(ModelConfig.from_dict(m.config.to_dict()), frame_loss_frames=2, negatives_every_frame=True,
                      cached_views=1)
    task.model = m
    clips = [(c, i % 4) for i, c in enumerate(Noisy().clips[1:])]  # at least one frame each
    x, y, lengths = pad_batch(clips)
    with torch.no_grad():
        parts, before = task._parts(x, None)
        uncached = task._loss(parts, y, task._frames(lengths), before)[0]
        views = encode_views(clips, m.frontend, 1, m.samples_per_frame, batch_size=4)
        feats, y2, frames = pad_batch(views[0])
        cached = task._cached_step(feats, y2, frames)
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-6)


def test_what_cannot_be_cached_is_refused(tmp_path):
    cfg = ModelConfig.from_dict(embedding_model().config.to_dict())
    with pytest.raises(ValueError, match="fresh state"):
        SignalTask(cfg, cached_views=2, clips_in_sequence=2)
    with pytest.raises(ValueError, match="fresh state"):
        SignalTask(cfg, cached_views=2, tbptt_samples=16000)
    with pytest.raises(ValueError, match=">= 0"):
        SignalTask(cfg, cached_views=-1)
    trainable = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="the frontend trains"):
        check_frozen(trainable)
    check_frozen(embedding_model().frontend)  # the speech encoder is frozen
    dm = KeywordDataModule(root=str(tmp_path), generate=False, hard_negatives=HardNegatives())
    with pytest.raises(ValueError, match="hard_negatives"):
        dm.use_feature_cache(embedding_model().frontend, 2, 1280)
    with pytest.raises(ValueError, match="same clips"):
        FeatureViews([[(torch.zeros(1, 2), 0)], []])


def test_a_fit_trains_on_cached_views(tmp_path, caplog, local_speech_encoder):
    """The default job with cached views on a tiny generated set: two views encoded once, three epochs read them,
    and the bundle streams as any other."""
    import logging
    from pathlib import Path

    from pipelines.train import run_fit
    from ssm_signal import load_bundle
    from ssm_signal.data.keywords import KeywordSetConfig, generate_keyword_set
    from tests.helpers import require_tool

    require_tool("espeak-ng")
    root = generate_keyword_set(tmp_path / "kw", seed=5, workers=1, config=KeywordSetConfig(
        n_speakers=6, other_per_speaker=1, validation_percent=30, testing_percent=30))
    config = Path(__file__).resolve().parents[2] / "configs" / "kws_default.yaml"
    with caplog.at_level(logging.INFO, logger="ssm_signal.pipelines"):
        run_fit(["--config", str(config), "--trainer.logger", "false", "--trainer.max_epochs", "3",
                 "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", "--output.test", "false", "--model.cached_views", "2",
                 "--data.init_args.root", str(root), "--data.init_args.generate", "false",
                 "--data.init_args.batch_size", "8", "--output.bundle_dir", str(tmp_path / "bundle"),
                 "--trainer.default_root_dir", str(tmp_path / "runs")])
    encoded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cached features")]
    assert [m.split(",")[0] for m in encoded] == ["cached features: view 1/2", "cached features: view 2/2"]
    b = load_bundle(tmp_path / "bundle")
    p = b.predict(np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32), 16000)
    assert p.label in b.labels and p.frame_scores.shape == (16000 // b.model.samples_per_frame, 22)
