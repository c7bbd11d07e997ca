"""The training batches: variable lengths padded at the end, clip or per-step labels."""

from __future__ import annotations

import torch

from pipelines.data import IGNORE, pad_batch


def test_pad_batch_pads_at_the_end_and_keeps_lengths():
    a, b = torch.arange(6.0).reshape(3, 2), torch.ones(1, 2)
    x, y, lengths = pad_batch([(a, 1), (b, 0)])
    assert x.shape == (2, 3, 2) and y.tolist() == [1, 0] and lengths.tolist() == [3, 1]
    torch.testing.assert_close(x[1], torch.tensor([[1.0, 1], [0, 0], [0, 0]]))
    # a causal model's output at each item's last valid step never sees the padding after it
    last = x.cumsum(1)[torch.arange(2), lengths - 1]
    torch.testing.assert_close(last, torch.stack([a.sum(0), b[0]]))
    _, ys, _ = pad_batch([(a, torch.tensor([0, 1, 1])), (b, torch.tensor([1]))])
    assert ys.tolist() == [[0, 1, 1], [1, IGNORE, IGNORE]]


def test_pad_batch_reads_one_dimensional_signals_as_one_channel():
    x, _, lengths = pad_batch([(torch.ones(4), 0), (torch.ones(2), 1)])
    assert x.shape == (2, 4, 1) and lengths.tolist() == [4, 2] and x[1, 2:].abs().sum() == 0
