"""Training on a frozen frontend's features, computed once over a few augmented passes of the training set.

A frontend with nothing to train (the pre-trained speech encoder, the log-mel) computes the same features from
the same audio in every epoch, and on a CPU it costs most of the epoch: the speech encoder and the acoustic-channel
augmentation took 46 s and 28 s of a 75 s epoch of the default job, the SSM's forward and backward 6 s. With
``model.cached_views: K`` the training set is augmented and encoded K times before the first epoch (K *views*),
and epoch e trains on view e mod K, shuffled. This is openWakeWord's recipe (a fixed number of augmented copies,
encoded once), here with the frontend that the bundle streams: the cached features of a clip are the frontend's
output over that clip from a fresh state, which is what a stream computes (the frontend's chunk-invariance tests).

What changes against encoding every epoch: K different augmentations of each clip instead of one per epoch.
The validation and test splits are not cached; they run through the whole model as before.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger("ssm_signal.pipelines")


def check_frozen(frontend: torch.nn.Module) -> None:
    """Refuse a frontend with trainable parameters: its features change as it trains."""
    trainable = [n for n, p in frontend.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"model.cached_views caches the frontend's features, but the frontend trains "
                         f"({', '.join(trainable[:3])}...): set cached_views to 0")


@torch.no_grad()
def encode_views(dataset: Dataset, frontend, views: int, samples_per_frame: int, *, batch_size: int = 64,
                 num_workers: int = 0) -> list[list[tuple[Tensor, object]]]:
    """``views`` passes over ``dataset`` (each item drawn again, so an augmenting dataset augments anew) through
    ``frontend`` -> views[v][i] = (features (F_i, D) on the CPU, label).

    F_i = :func:`pipelines.data.clip_frames` of the clip's L_i samples, the frames the task scores in it, computed
    over the clip padded with silence as in an uncached batch.
    """
    from pipelines.data import clip_frames, pad_batch  # pipelines.data imports this module when it caches

    device = frontend.mean.device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=pad_batch)
    out: list[list[tuple[Tensor, object]]] = []
    for v in range(views):
        t0, items = time.perf_counter(), []
        for x, y, lengths in loader:
            # at least one frame of samples, so a batch of clips shorter than a frame still gives the one frame
            # that the task reads from each clip
            x = torch.nn.functional.pad(x, (0, 0, 0, max(0, samples_per_frame - x.shape[1])))
            feats, _ = frontend._forward(x.to(device), frontend.init_state(x.shape[0], device=device))
            frames = clip_frames(lengths, samples_per_frame)
            for i in range(x.shape[0]):
                items.append((feats[i, : int(frames[i])].cpu(), y[i]))
        out.append(items)
        log.info("cached features: view %d/%d, %d clips, %.0f s", v + 1, views, len(items), time.perf_counter() - t0)
    return out


class FeatureViews(Dataset):
    """The cached views as one dataset: index v * n + i is clip i of view v -> (features (F_i, D), label)."""

    def __init__(self, views: list[list[tuple[Tensor, object]]]):
        if not views or len({len(v) for v in views}) != 1:
            raise ValueError("FeatureViews needs one or more views of the same clips")
        self.views, self.n = views, len(views[0])

    def __len__(self) -> int:
        return len(self.views) * self.n

    def __getitem__(self, j: int):
        return self.views[j // self.n][j % self.n]


class ViewSampler(Sampler[int]):
    """Epoch e: every clip of view e mod K once, in an order drawn from (seed, e).

    Lightning calls ``set_epoch`` before each epoch; without it (a wrapping distributed sampler), each pass
    over the sampler moves to the next epoch.
    """

    def __init__(self, n: int, views: int, seed: int = 0):
        self.n, self.views, self.seed, self.epoch = n, views, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        base = (epoch % self.views) * self.n
        return iter((base + torch.randperm(self.n, generator=g)).tolist())
