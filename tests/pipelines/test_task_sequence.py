"""Clips in sequence: a training batch read as streams of clips joined end to end, each clip scored at its
own end from whatever state the clips before it left."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from pipelines.task import SignalTask
from ssm_signal.models import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig, SignalModel

HOP = 160
CFG = ModelConfig(FrontendConfig(n_mels=16), BackboneConfig(d_model=8, layers=["mamba2"],
                                                            mixer_kwargs={"mamba2": {"d_state": 4, "headdim": 8,
                                                                                     "chunk_size": 8}}),
                  HeadConfig("classify", num_classes=3), labels=["a", "b", "c"])


def task(n: int, frame_loss_frames: int = 3) -> SignalTask:
    t = SignalTask(CFG, clips_in_sequence=n, frame_loss_frames=frame_loss_frames)
    t.model = SignalModel(CFG)
    return t.double()


def loss(t: SignalTask, x, y, lengths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        return t.training_step((x, y, lengths), 0)


def test_each_clip_is_scored_at_its_end_of_the_joined_stream(seed):
    t = task(2)
    x = torch.randn(4, 12 * HOP, 1, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    lengths = torch.tensor([12, 9, 12, 12]) * HOP
    got = loss(t, x, y, lengths)
    # by hand: streams (clip 0, clip 1) and (clip 2, clip 3) through the model, each clip's frames its own
    out = t.model(torch.cat([x[0::2], x[1::2]], dim=1))[0]  # (2, 24, 3)
    per_clip = out.reshape(2, 2, 12, 3).flatten(0, 1)  # clip b = stream b // 2, half b % 2
    frames = lengths // HOP
    last = per_clip[torch.arange(4), frames - 1]
    whole = F.cross_entropy(last, y)
    tail = (torch.arange(12)[None] < frames[:, None]) & (torch.arange(12)[None] >= frames[:, None] - 3)
    framewise = F.cross_entropy(per_clip.transpose(1, 2), y[:, None].expand(4, 12), reduction="none")[tail].mean()
    torch.testing.assert_close(got, 0.5 * whole + 0.5 * framewise)


def test_a_clip_reads_the_state_its_predecessor_left(seed):
    # clips of 4 frames: the second clip's last frame reads the first through the conv's 4 frames (and its
    # first frames through the 25 ms window), whatever the SSM's random decay, which may forget in 10 frames
    t = task(2, frame_loss_frames=0)
    x = torch.randn(2, 4 * HOP, 1, dtype=torch.float64)
    y, lengths = torch.tensor([0, 1]), torch.full((2,), 4 * HOP)
    other = x.clone()
    other[0] = torch.randn(4 * HOP, 1, dtype=torch.float64)  # only the first clip differs

    def second_clip_logits(xx, joined: bool):
        stream = xx.reshape(1, 8 * HOP, 1) if joined else xx[1:]
        return t.model(stream)[0][:, -1]

    # alone, the second clip's logits do not see the first; joined, they do, and so does the training loss
    assert torch.equal(second_clip_logits(x, False), second_clip_logits(other, False))
    assert (second_clip_logits(x, True) - second_clip_logits(other, True)).abs().max() > 1e-8  # exactly equal alone
    assert (loss(t, x, y, lengths) - loss(t, other, y, lengths)).abs() > 1e-8


def test_an_odd_batch_leaves_the_last_clip_out_and_a_small_one_trains_alone(seed):
    t = task(2)
    x = torch.randn(3, 8 * HOP, 1, dtype=torch.float64)
    y, lengths = torch.tensor([0, 1, 2]), torch.full((3,), 8 * HOP)
    torch.testing.assert_close(loss(t, x, y, lengths), loss(t, x[:2], y[:2], lengths[:2]))
    alone = task(1)
    alone.model.load_state_dict(t.model.state_dict())
    torch.testing.assert_close(loss(t, x[:1], y[:1], lengths[:1]), loss(alone, x[:1], y[:1], lengths[:1]))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="clips_in_sequence must be >= 1"):
        SignalTask(CFG, clips_in_sequence=0)
    with pytest.raises(ValueError, match="needs a classify head and no tbptt_samples"):
        SignalTask(CFG, clips_in_sequence=2, tbptt_samples=1600)
    sensor = ModelConfig(FrontendConfig(kind="sensor", in_channels=2), BackboneConfig(d_model=8, layers=["s4d"]),
                         HeadConfig("forecast"))
    with pytest.raises(ValueError, match="needs a classify head"):
        SignalTask(sensor, clips_in_sequence=2)


NEG_CFG = ModelConfig(FrontendConfig(n_mels=16), CFG.backbone, HeadConfig("classify", num_classes=3),
                      labels=["go", "_silence_", "_unknown_"])


def test_non_keyword_clips_are_scored_at_every_frame(seed):
    t = SignalTask(NEG_CFG, frame_loss_frames=3, negatives_every_frame=True)
    t.model = SignalModel(NEG_CFG)
    t = t.double()
    x = torch.randn(3, 10 * HOP, 1, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])  # a keyword, _unknown_, _silence_
    lengths = torch.tensor([10, 10, 7]) * HOP
    got = loss(t, x, y, lengths)
    out = t.model(x)[0]  # (3, 10, 3)
    frames = lengths // HOP
    whole = F.cross_entropy(out[torch.arange(3), frames - 1], y)
    per = F.cross_entropy(out.transpose(1, 2), y[:, None].expand(3, 10), reduction="none")  # (3, 10)
    by_clip = torch.stack([per[0, 7:10].mean(), per[1, :10].mean(), per[2, :7].mean()])  # the keyword: its last 3
    torch.testing.assert_close(got, 0.5 * whole + 0.5 * by_clip.mean())


def test_hardest_frame_and_weight_of_non_keyword_clips(seed):
    """negatives_hardest_frame: a non-keyword clip is scored at its worst frame; negative_weight: it weighs that
    much against a keyword clip in the mean over clips."""
    t = SignalTask(NEG_CFG, frame_loss_frames=3, negatives_every_frame=True, negatives_hardest_frame=True,
                   negative_weight=3.0)
    t.model = SignalModel(NEG_CFG)
    t = t.double()
    x = torch.randn(3, 10 * HOP, 1, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    lengths = torch.tensor([10, 10, 7]) * HOP
    got = loss(t, x, y, lengths)
    out = t.model(x)[0]
    frames = lengths // HOP
    whole = F.cross_entropy(out[torch.arange(3), frames - 1], y)
    per = F.cross_entropy(out.transpose(1, 2), y[:, None].expand(3, 10), reduction="none")
    by_clip = torch.stack([per[0, 7:10].mean(), per[1, :10].max(), per[2, :7].max()])  # frame 7-9 of clip 2: padding
    torch.testing.assert_close(got, 0.5 * whole + 0.5 * (by_clip * torch.tensor([1.0, 3.0, 3.0])).sum() / 7.0)


def test_every_frame_needs_non_keyword_labels_and_a_frame_loss():
    with pytest.raises(ValueError, match="frame_loss_frames >= 1"):
        SignalTask(NEG_CFG, negatives_every_frame=True)
    for kwargs in ({"negatives_hardest_frame": True}, {"negative_weight": 2.0}):
        with pytest.raises(ValueError, match="need negatives_every_frame"):
            SignalTask(NEG_CFG, frame_loss_frames=3, **kwargs)
    with pytest.raises(ValueError, match="negative_weight must be > 0"):
        SignalTask(NEG_CFG, frame_loss_frames=3, negatives_every_frame=True, negative_weight=0.0)
    t = SignalTask(CFG, frame_loss_frames=3, negatives_every_frame=True)  # labels a, b, c: none starts with _
    t.model = SignalModel(CFG)
    with pytest.raises(ValueError, match="no label starts with '_'"):
        loss(t.double(), torch.randn(2, 5 * HOP, 1, dtype=torch.float64), torch.tensor([0, 1]), torch.full((2,), 5 * HOP))
