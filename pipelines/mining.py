"""Hard-negative mining from training speech (``data.hard_negatives``).

A spotter's false-accept rate on a stream is set by the few places in it where the model comes closest to
believing a keyword was said, and random 1 s windows of running speech rarely land on them. So after chosen
epochs the model reads the *mining pool* as streams: whole sentences that the training speakers read
(``<root>/_pool_/``, written with the keyword set when ``training_speech.pool_sentences_per_speaker`` or
``pool_foreign_per_speaker`` is set; :mod:`ssm_signal.data.training_speech`). Around each sentence's highest
keyword posteriors it cuts 1 s windows, keeps the ``keep`` highest-scoring over the pool, and they join the
``_unknown_`` clips of the epochs that follow, each mining replacing the last one's windows. The epoch keeps
its size (the loader draws as many clips as the training split holds, from the split and the windows
together), so the learning-rate schedule and the training time stay those of the recipe without mining.

This is the bootstrapping of hard negatives that detectors have used since Sung and Poggio (1998), and
what wake-word trainers do with hours of negative speech (openWakeWord's false-positive validation, the
"hard negatives" of Google's streaming KWS). Only training speakers read the pool: the validation voices
and the calibration negatives that choose thresholds, and every real recording, stay out of it.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data.audio_io import read_audio
from ssm_signal.events import is_keyword

log = logging.getLogger("ssm_signal.pipelines")


@dataclasses.dataclass(frozen=True)
class HardNegatives:
    """When and how much to mine.

    epochs: mine after each of these epochs (counted from 1); the windows serve every later epoch, until the
        next mining replaces them.
    keep: windows kept, the highest-scoring over the whole pool.
    per_sentence: peaks a sentence may give at most, each at least ``window_s`` from the others.
    window_s: window length in seconds (the length of a training clip).
    after_s: the window ends this long after its peak frame, so the peak lies among the clip's last
        frames, where a live stream would have read it, with what led up to it before.
    batch: sentences scored at once.

    The windows live in the datamodule's memory, not in checkpoints: a run resumed between two minings
    trains without them until the next one.
    """

    epochs: tuple[int, ...] = (8, 14)
    keep: int = bounded(1500, ge=1)
    per_sentence: int = bounded(2, ge=1)
    window_s: float = bounded(1.0, gt=0)
    after_s: float = bounded(0.2, ge=0)
    batch: int = bounded(16, ge=1)

    def __post_init__(self):
        object.__setattr__(self, "epochs", tuple(int(e) for e in self.epochs))
        if not self.epochs or min(self.epochs) < 1:
            raise ValueError(f"hard_negatives.epochs must be epoch counts >= 1, got {list(self.epochs)}")
        if self.after_s >= self.window_s:
            raise ValueError(f"hard_negatives.after_s must be shorter than window_s, got {self.after_s} >= "
                             f"{self.window_s}")
        check_bounds(self)


@dataclasses.dataclass(frozen=True)
class Window:
    """A mined window: samples [start, end) of pool file ``source``, whose highest keyword posterior was
    ``score`` (at the frame that ends at sample ``end - after``)."""

    source: int
    start: int
    end: int
    score: float


def peaks(score: Tensor, frames: int, count: int, spacing: int) -> list[tuple[int, float]]:
    """Up to ``count`` (frame, score) of ``score`` (F,) among its first ``frames`` frames, highest first, each
    at least ``spacing`` frames from those before it."""
    s = score[:frames].clone()
    out = []
    for _ in range(count):
        if not len(s):
            break
        f = int(s.argmax())
        if s[f] == float("-inf"):
            break
        out.append((f, float(s[f])))
        s[max(0, f - spacing + 1): f + spacing] = float("-inf")
    return out


def window_at(frame: int, length: int, hop: int, window: int, after: int) -> tuple[int, int]:
    """Samples [start, end) of a window of ``window`` samples (the whole signal if it is shorter) that ends
    ``after`` samples past the end of ``frame`` (frame f ends at sample (f + 1) * hop), inside [0, length)."""
    end = min(length, (frame + 1) * hop + after)
    start = max(0, end - window)
    end = min(length, start + window)
    return start, end


@torch.no_grad()
def keyword_scores(model, signals: Sequence[Tensor], keyword_ids: Sequence[int]) -> list[Tensor]:
    """Each signal (L_i,) streamed through ``model`` from a fresh state: its frames' highest keyword
    posterior (F_i,) (the softmax over every label, the largest of the keywords' probabilities).

    One padded batch; the padding lies after each signal's end, and a causal model's frame reads nothing
    after itself, so every kept frame is the one the signal alone gives."""
    hop = model.samples_per_frame
    lengths = [int(s.shape[0]) for s in signals]
    device = next(model.parameters()).device
    x = torch.zeros(len(signals), max(lengths), 1, device=device)
    for i, s in enumerate(signals):
        x[i, : lengths[i], 0] = s.to(device)
    out = model.forward_parts(x).out  # (B, F, K)
    p = out.float().softmax(-1)[..., list(keyword_ids)].amax(-1)  # (B, F)
    return [p[i, : n // hop].cpu() for i, n in enumerate(lengths)]


def mine(model, files: Sequence[Path], keyword_ids: Sequence[int], cfg: HardNegatives,
         sample_rate: int) -> tuple[list[Tensor], list[Window]]:
    """The windows of ``files`` (the pool) that ``model`` takes most for a keyword: (clips [(n,)], their
    :class:`Window` records), ``cfg.keep`` at most, highest score first. ``model`` is put in eval mode for
    the pass and back in the mode it was in."""
    hop = model.samples_per_frame
    window, after = round(cfg.window_s * sample_rate), round(cfg.after_s * sample_rate)
    spacing = max(1, window // hop)
    was_training = model.training
    model.eval()
    # the ``keep`` best so far, as a min-heap on (score, then earlier file and frame first), with their clips:
    # each file is read once, and no more than ``keep`` windows are held
    best: list[tuple[tuple[float, int, int], Window, Tensor]] = []
    try:
        # by length, so each batch pads little
        order = sorted(range(len(files)), key=lambda i: Path(files[i]).stat().st_size)
        for b in range(0, len(order), cfg.batch):
            idx = order[b: b + cfg.batch]
            signals = [read_audio(files[i], sample_rate) for i in idx]
            for i, sig, sc in zip(idx, signals, keyword_scores(model, signals, keyword_ids), strict=True):
                for f, s in peaks(sc, len(sc), cfg.per_sentence, spacing):
                    start, end = window_at(f, sig.shape[0], hop, window, after)
                    item = ((s, -i, -f), Window(i, start, end, s), sig[start:end].clone())
                    if len(best) < cfg.keep:
                        heapq.heappush(best, item)
                    elif item[0] > best[0][0]:
                        heapq.heapreplace(best, item)
    finally:
        model.train(was_training)
    best.sort(key=lambda it: it[0], reverse=True)
    return [c for _, _, c in best], [w for _, w, _ in best]


class HardNegativeMiner(L.Callback):
    """Mines after the epochs of ``cfg.epochs`` and hands the windows to the datamodule
    (``set_hard_negatives``), whose next training loader draws from them; attached by the task when the
    datamodule has ``hard_negatives`` set."""

    def __init__(self, cfg: HardNegatives):
        self.cfg = cfg

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError("data.hard_negatives adds the mined windows to the next epoch's loader: it needs "
                             "trainer.reload_dataloaders_every_n_epochs: 1")
        if not trainer.datamodule.pool_files():
            raise ValueError(f"data.hard_negatives: no mining pool in {trainer.datamodule.root} (set "
                             "keyword_set.training_speech.pool_sentences_per_speaker)")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 not in self.cfg.epochs:
            return
        dm = trainer.datamodule
        labels = pl_module.model_config.labels
        keyword_ids = [i for i, lb in enumerate(labels) if is_keyword(lb)]
        files = dm.pool_files()
        t0 = time.time()
        clips, kept = mine(pl_module.model, files, keyword_ids, self.cfg, dm.sample_rate)
        dm.set_hard_negatives(clips)
        scores = torch.tensor([w.score for w in kept])
        stats = {"mined_windows": float(len(kept)), "mined_score_median": float(scores.median()),
                 "mined_score_lowest": float(scores.min())}
        if trainer.logger is not None:
            trainer.logger.log_metrics(stats, step=trainer.global_step)
        log.info("epoch %d: mined %d windows from %d pool files in %.0f s (keyword posterior: median %.3f, lowest "
                 "kept %.3f)", trainer.current_epoch + 1, len(kept), len(files), time.time() - t0,
                 stats["mined_score_median"], stats["mined_score_lowest"])
