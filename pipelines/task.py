"""The LightningModule: wraps a plain ``SignalModel`` and defines losses, metrics, optimiser.

Lightning never leaks into ``ssm_signal``: the model is built from a ``ModelConfig`` (labels
and frontend normalisation taken from the datamodule in ``configure_model``) and is what
the bundle saves.

Losses by head:
- classify: cross-entropy of the logits at each clip's last valid frame (the same rule a
  live stream reads at any moment), plus optionally the mean over the last
  ``frame_loss_frames`` frames, which teaches the posterior to hold after a keyword ends; with
  ``negatives_every_frame``, a clip of a non-keyword label (one that starts with ``_``) is scored at every
  frame instead, since a live stream must not fire anywhere in it, not only at its end;
- forecast / anomaly: mean squared error of the forecasts (next frame; an anomaly head's ``horizons``)
  over valid frames.

Clips in sequence (``clips_in_sequence``, classify only): each training batch of B clips is read as B / n
streams of n clips end to end, and every clip is scored where it ends, as in the ``frames`` rule above.
A live spotter runs from the state that whatever came before left; clips trained one at a time always
start from a fresh state, so a model trained only so never learns to read a word after other sound.

Streaming-aware training (``tbptt_samples``): each batch is cut at random boundaries into
chunks of about that many samples; the state is carried across chunks and detached
(truncated backprop through time), so the model learns to run from any carried state.
"""

from __future__ import annotations

import math
import random

import lightning as L
import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassConfusionMatrix

from pipelines.data import IGNORE, clip_frames
from pipelines.evaluate.anomaly_metrics import unit_interval
from ssm_signal.data.augment import warp_bands
from ssm_signal.events import is_keyword
from ssm_signal.models import ModelConfig, SignalModel
from ssm_signal.models.heads import AnomalyHead, horizon_errors
from ssm_signal.models.signal_model import ModelParts, SignalModelState


@torch.no_grad()
def memory_states(model, series: list[Tensor]) -> Tensor:
    """The hidden states an anomaly head's memory keeps: each series (L, C) run whole from a fresh state, as a
    stream meets it, and its frames from the head's first scored one on -> (N, d_model)."""
    device = next(model.parameters()).device
    first = model.head.first_scored
    return torch.cat([model.forward_parts(torch.as_tensor(x, dtype=torch.float32, device=device)[None]).hidden[0, first:]
                      for x in series]) if series else torch.zeros(0, model.input_proj.out_features)


class SignalTask(L.LightningModule):
    """Train a SignalModel.

    Args:
        network: the model configuration (frontend, backbone, head). ``head.num_classes``,
            ``labels`` and the sensor frontend's ``channels`` are filled from the datamodule.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        weight_decay: AdamW weight decay (not applied to norms, biases, A_log, D, dt_bias, S4D's A and Δ).
        warmup_steps: linear warm-up steps.
        label_smoothing: cross-entropy label smoothing.
        frame_loss_frames: also average the loss over this many final frames (0 = last frame only).
        spec_augment: SpecAugment masks on training features: (freq_mask, time_mask, n_masks); 0 = off.
        vtlp: vocal-tract length perturbation of log-mel features in training: each clip's mel bands are
            warped by a factor drawn uniformly from [1 - vtlp, 1 + vtlp] (``ssm_signal.data.augment.warp_bands``);
            0 = off.
        negatives_every_frame: score clips of non-keyword labels (``_silence_``, ``_unknown_``: labels that start
            with ``_``) at every valid frame in the frame loss, not only the last ``frame_loss_frames``; each clip
            then weighs the same in that loss, whatever its number of scored frames.
        negatives_hardest_frame: with ``negatives_every_frame``, a non-keyword clip's frame loss is that of its
            hardest frame (the largest loss: where a keyword is most believed), not the mean over its frames; the
            max-pooling loss of Sun et al. 2016 ("Max-pooling loss training of LSTM networks for small-footprint
            keyword spotting"), aimed at the peaks that set a stream's false-accept rate.
        negative_weight: with ``negatives_every_frame``, the weight of a non-keyword clip against a keyword
            clip's 1 in the frame loss's mean over clips.
        clips_in_sequence: in training, join this many clips of a batch end to end into one stream and score
            each clip at its end (1 = each clip alone, from a fresh state).
        tbptt_samples: truncated BPTT chunk length in samples (None = whole clips).
        cached_views: train on the frozen frontend's features of this many augmented passes over the training set,
            computed once before the first epoch (:mod:`pipelines.feature_cache`); epoch e reads pass e mod K.
            0 = run the frontend on every training batch.
    """

    def __init__(
        self,
        network: ModelConfig,
        lr: float = 3e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 200,
        label_smoothing: float = 0.0,
        frame_loss_frames: int = 0,
        spec_augment: tuple[int, int, int] = (0, 0, 0),
        vtlp: float = 0.0,
        negatives_every_frame: bool = False,
        negatives_hardest_frame: bool = False,
        negative_weight: float = 1.0,
        clips_in_sequence: int = 1,
        tbptt_samples: int | None = None,
        cached_views: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model_config = network
        self.model: SignalModel | None = None
        self.freq_mask = T.FrequencyMasking(spec_augment[0]) if spec_augment[0] > 0 else None
        self.time_mask = T.TimeMasking(spec_augment[1]) if spec_augment[1] > 0 else None
        self.n_masks = spec_augment[2]
        if not 0.0 <= vtlp < 1.0:
            raise ValueError(f"vtlp must be in [0, 1), got {vtlp}")
        if vtlp > 0 and network.frontend.kind != "logmel":
            raise ValueError("vtlp warps mel bands: it needs a logmel frontend")
        if negatives_every_frame and (network.head.kind != "classify" or frame_loss_frames < 1):
            raise ValueError("negatives_every_frame widens the frame loss: it needs a classify head and "
                             "frame_loss_frames >= 1")
        if (negatives_hardest_frame or negative_weight != 1.0) and not negatives_every_frame:
            raise ValueError("negatives_hardest_frame and negative_weight shape the every-frame loss of non-keyword "
                             "clips: they need negatives_every_frame")
        if not negative_weight > 0:
            raise ValueError(f"negative_weight must be > 0, got {negative_weight}")
        if clips_in_sequence < 1:
            raise ValueError(f"clips_in_sequence must be >= 1, got {clips_in_sequence}")
        if clips_in_sequence > 1 and (network.head.kind != "classify" or tbptt_samples is not None):
            raise ValueError("clips_in_sequence joins labelled clips: it needs a classify head and no tbptt_samples")
        if cached_views < 0:
            raise ValueError(f"cached_views must be >= 0, got {cached_views}")
        if cached_views and (clips_in_sequence > 1 or tbptt_samples is not None):
            # a clip's cached features start from a fresh frontend state; joined or chunked clips would need the
            # frontend's state from what came before
            raise ValueError("cached_views trains on each clip's features from a fresh state: it needs "
                             "clips_in_sequence 1 and no tbptt_samples")
        if tbptt_samples is not None:
            self.automatic_optimization = False
        # torchmetrics, not per-batch means: their states are summed or gathered over every DDP rank before
        # compute(), so an epoch's accuracy, confusion and ROC-AUC are those of the whole split
        self.metrics = nn.ModuleDict()
        self.confusion: Tensor | None = None
        self.history: dict[str, list[float]] = {}

    # -- model construction ------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is None:
            self._build_model()
        if not len(self.metrics):  # also for a model handed in (task.model = bundle.model) to be tested
            self._make_metrics(self.model_config)

    def _build_model(self) -> None:
        cfg = self.model_config
        trainer = self._attached_trainer()
        dm = trainer.datamodule if trainer is not None else None
        if dm is not None:
            d = cfg.to_dict()
            if cfg.head.kind == "classify":
                d["labels"] = list(dm.labels)
                d["head"]["num_classes"] = len(dm.labels)
            if cfg.frontend.kind == "sensor" and getattr(dm, "channels", 0):
                d["frontend"]["in_channels"] = dm.channels
            if getattr(dm, "sample_rate", None):
                d["frontend"]["sample_rate"] = dm.sample_rate
            cfg = ModelConfig.from_dict(d)
        self.model_config = cfg
        self.model = SignalModel(cfg)
        if trainer is not None and self.logger is not None:
            # the YAML's network/* parameters are what was asked; these are what the data made of them
            # (labels, classes, channels, rate), under their own prefix since logged parameters are final
            self.logger.log_hyperparams({"built": cfg.to_dict()})
        if dm is not None and cfg.frontend.kind == "speech_embedding":
            from pipelines.pretrained import load_speech_encoder

            load_speech_encoder(self.model.frontend)  # before the statistics, which are of its output
        if dm is not None and hasattr(dm, "normalization_signals"):
            device = self.model.frontend.mean.device  # built under Lightning's default-device context
            self.model.frontend.fit_normalization(x.to(device) for x in dm.normalization_signals())
        if dm is not None and self.hparams.cached_views:
            if not hasattr(dm, "use_feature_cache"):
                raise ValueError(f"model.cached_views: {type(dm).__name__} cannot cache features")
            dm.use_feature_cache(self.model.frontend, self.hparams.cached_views, self.model.samples_per_frame)

    def configure_callbacks(self):
        """The hard-negative miner, when the datamodule asks for mining (``data.hard_negatives``)."""
        trainer = self._attached_trainer()
        cfg = getattr(getattr(trainer, "datamodule", None), "hard_negatives", None)
        if cfg is None:
            return []
        from pipelines.mining import HardNegativeMiner

        return [HardNegativeMiner(cfg)]

    def _attached_trainer(self) -> L.Trainer | None:
        """The Trainer running this task, or None when the task is used on its own."""
        try:
            return self.trainer
        except RuntimeError:  # Lightning's answer for a module not attached to a Trainer
            return None

    def _make_metrics(self, cfg: ModelConfig) -> None:
        if cfg.head.kind == "classify":
            k = cfg.head.num_classes
            for stage in ("val", "test"):
                self.metrics[f"{stage}_acc"] = MulticlassAccuracy(k, average="micro")
            self.metrics["test_confusion"] = MulticlassConfusionMatrix(k)
        elif cfg.head.kind == "anomaly":
            for stage in ("val", "test"):
                self.metrics[f"{stage}_auroc"] = BinaryAUROC()
                # the share of anomalous frames: ROC-AUC is only defined when both classes occur
                self.metrics[f"{stage}_positive"] = MeanMetric()

    # -- forward pieces ------------------------------------------------------------------------------
    def _augment(self, feats: Tensor) -> Tensor:
        if not self.training:
            return feats
        vtlp = self.hparams.vtlp
        if vtlp > 0:
            alpha = torch.empty(feats.shape[0], device=feats.device).uniform_(1 - vtlp, 1 + vtlp)
            feats = warp_bands(feats, self.model.frontend.centres_hz, alpha)
        if self.n_masks == 0:
            return feats
        f = feats.transpose(1, 2)  # (B, feat, F): torchaudio's masking layout
        for _ in range(self.n_masks):
            if self.freq_mask is not None:
                f = self.freq_mask(f)
            if self.time_mask is not None:
                f = self.time_mask(f)
        return f.transpose(1, 2)

    def _parts(self, x: Tensor, state: SignalModelState | None):
        """The model's parts for a chunk x, and the state it started from (None: a fresh one)."""
        m = self.model
        state = m.init_state(x.shape[0], device=x.device) if state is None else state
        feats, fs = m.frontend._forward(x, state.frontend)
        return m._from_features(self._augment(feats), fs, state), state

    def _frames(self, lengths: Tensor) -> Tensor:
        return clip_frames(lengths, self.model.samples_per_frame)

    def _loss(self, parts, y: Tensor, frames: Tensor, before: SignalModelState, frame_offset: int = 0
              ) -> tuple[Tensor, Tensor | None]:
        """Loss over the frames of this chunk, which started from the state ``before``; returns
        (loss, clip logits or None)."""
        kind = self.model_config.head.kind
        B, F_ = parts.out.shape[:2]
        idx = torch.arange(F_, device=y.device) + frame_offset  # absolute frame index (B-independent)
        valid = idx[None, :] < frames[:, None]  # (B, F)
        if kind == "classify":
            last = (frames - 1 - frame_offset).clamp(0, F_ - 1)
            logits = parts.out[torch.arange(B, device=y.device), last]
            in_chunk = (frames - 1 >= frame_offset) & (frames - 1 < frame_offset + F_)
            if not in_chunk.any():
                return parts.out.sum() * 0.0, None
            loss = F.cross_entropy(logits[in_chunk], y[in_chunk], label_smoothing=self.hparams.label_smoothing)
            k = self.hparams.frame_loss_frames
            if k > 0:
                tail = valid & (idx[None, :] >= frames[:, None] - k)
                if self.hparams.negatives_every_frame:
                    neg = self._non_keyword(y)  # (B,)
                    tail = tail | (valid & neg[:, None])
                if tail.any():
                    per = F.cross_entropy(parts.out.transpose(1, 2), y[:, None].expand(B, F_), reduction="none",
                                          label_smoothing=self.hparams.label_smoothing)
                    if self.hparams.negatives_every_frame:  # each clip's frames averaged, then the clips
                        n = tail.sum(1)
                        by_clip = (per * tail).sum(1) / n.clamp(min=1)
                        if self.hparams.negatives_hardest_frame:
                            hardest = per.masked_fill(~tail, float("-inf")).amax(1)
                            by_clip = torch.where(neg, hardest, by_clip)
                        scored = n > 0
                        w = torch.where(neg, self.hparams.negative_weight, 1.0).to(by_clip.dtype)[scored]
                        frame_loss = (w * by_clip[scored]).sum() / w.sum()
                    else:
                        frame_loss = per[tail].mean()
                    loss = 0.5 * loss + 0.5 * frame_loss
            return loss, logits
        # forecast / anomaly: every frame's forecasts made ``horizons`` frames before (the pairs the score uses)
        err, ok = self._forecast_errors(parts, before)
        mask = ok & valid[:, :, None]  # (B, F, H)
        if not mask.any():
            return parts.out.sum() * 0.0, None
        return err.mean(-1)[mask].mean(), None

    def _non_keyword(self, y: Tensor) -> Tensor:
        """(B,) whether each clip's label is a non-keyword (its name starts with ``_``)."""
        ids = [i for i, lb in enumerate(self.model_config.labels) if not is_keyword(lb)]
        if not ids:
            raise ValueError(f"negatives_every_frame: no label starts with '_' (labels {self.model_config.labels})")
        return torch.isin(y, torch.tensor(ids, dtype=y.dtype, device=y.device))

    def _forecast_errors(self, parts, before: SignalModelState) -> tuple[Tensor, Tensor]:
        """err (B, F, H, C) and valid (B, F, H) of :func:`horizon_errors` for this chunk: the anomaly head's
        with its carried forecasts; a forecast head's next-frame pairs within the chunk."""
        head = self.model.head
        if isinstance(head, AnomalyHead):
            return head.errors(parts.feats, parts.pred, before.head[0])
        B, _, C = parts.feats.shape
        zero = torch.zeros(B, dtype=torch.long, device=parts.feats.device)
        return horizon_errors(parts.feats, parts.pred, parts.pred.new_zeros(B, 1, C), zero, (1,))

    # -- steps ---------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if self.hparams.cached_views:
            return self._cached_step(*batch)
        x, y, lengths = batch
        frames = self._frames(lengths)
        n = self.hparams.clips_in_sequence
        # a batch smaller than n, or clips not a whole number of frames long, train one clip at a time
        if n > 1 and x.shape[0] >= n and x.shape[1] % self.model.samples_per_frame == 0:
            return self._sequence_step(x, y, frames)
        if self.hparams.tbptt_samples is None:
            parts, before = self._parts(x, None)
            return self._log_train(self._loss(parts, y, frames, before)[0], x.shape[0])
        return self._tbptt_step(x, y, frames)

    def _cached_step(self, feats: Tensor, y: Tensor, frames: Tensor) -> Tensor:
        """feats (B, F, D): the frozen frontend's features of B clips from a fresh state, frames (B,) valid frames."""
        m = self.model
        fresh = m.init_state(feats.shape[0], device=feats.device)
        parts = m._from_features(self._augment(feats), fresh.frontend, fresh)
        return self._log_train(self._loss(parts, y, frames, fresh)[0], feats.shape[0])

    def _sequence_step(self, x: Tensor, y: Tensor, frames: Tensor) -> Tensor:
        """x (B, L, 1) clips, B >= n, L a whole number of frames -> B // n streams (B // n, n L, 1) of n clips
        each; each clip's loss is read from its own L / hop frames of its stream, as ``_loss`` reads a clip alone."""
        n = self.hparams.clips_in_sequence
        B, L = x.shape[:2]
        S, per = B // n, L // self.model.samples_per_frame
        parts, before = self._parts(x[:S * n].reshape(S, n * L, *x.shape[2:]), None)

        def by_clip(t: Tensor) -> Tensor:  # (S, n per, D) -> (S n, per, D): clip b's own frames
            return t.reshape(S * n, per, t.shape[-1])

        parts = ModelParts(by_clip(parts.feats), by_clip(parts.hidden), by_clip(parts.out), None, parts.state)
        loss, _ = self._loss(parts, y[:S * n], frames[:S * n], before)
        return self._log_train(loss, S * n)

    def _log_train(self, loss: Tensor, batch_size: int) -> Tensor:
        self.log("train_loss", loss, prog_bar=True, batch_size=batch_size)
        return loss

    def _tbptt_step(self, x: Tensor, y: Tensor, frames: Tensor) -> Tensor:
        opt = self.optimizers()
        sched = self.lr_schedulers()
        hop = self.model.samples_per_frame
        n = self.hparams.tbptt_samples
        state, start, offset, total = None, 0, 0, 0.0
        opt.zero_grad()
        while start < x.shape[1]:
            # random boundaries, aligned to whole frames so every stream keeps the same phase
            size = max(hop, int(random.uniform(0.5, 1.5) * n) // hop * hop)
            parts, before = self._parts(x[:, start:start + size], state)
            loss, _ = self._loss(parts, y, frames, before, frame_offset=offset)
            if loss.requires_grad:
                self.manual_backward(loss)
            total += float(loss.detach())
            state = parts.state.detach()
            offset += parts.out.shape[1]
            start += size
        self.clip_gradients(opt, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
        opt.step()
        sched.step()
        self.log("train_loss", total, prog_bar=True, batch_size=x.shape[0])
        return torch.tensor(total)

    def _eval_step(self, batch, stage: str):
        x, y, lengths = batch
        parts, before = self._parts(x, None)
        frames = self._frames(lengths)
        loss, logits = self._loss(parts, y, frames, before)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        if self.model_config.head.kind == "anomaly" and y.dim() == 2:
            self._update_auroc(stage, parts.out[..., 0], y)
        if logits is not None:
            pred = logits.argmax(-1)
            acc = self.metrics[f"{stage}_acc"]
            acc.update(pred, y)
            self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=x.shape[0])
            if stage == "test":
                self.metrics["test_confusion"].update(pred, y)
        return loss

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test")

    def _update_auroc(self, stage: str, scores: Tensor, y: Tensor) -> None:
        """Frame anomaly scores (B, F) with frame labels: a frame is anomalous if any of its samples is."""
        d = self.model.samples_per_frame
        F_ = scores.shape[1]
        lab = y[:, : F_ * d].reshape(y.shape[0], F_, d)
        valid = (lab != IGNORE).all(-1)
        lab = (lab.clamp(min=0).amax(-1) > 0).long()
        self.metrics[f"{stage}_auroc"].update(unit_interval(scores[valid].detach()), lab[valid])
        self.metrics[f"{stage}_positive"].update(lab[valid].float())

    def _log_auroc(self, stage: str) -> None:
        auroc, positive = self.metrics[f"{stage}_auroc"], self.metrics[f"{stage}_positive"]
        if auroc.update_called:
            share = float(positive.compute())  # synchronised over ranks, as auroc.compute() is
            if 0.0 < share < 1.0:
                # the same value on every rank: the mean over ranks only keeps Lightning from asking for it
                self.log(f"{stage}_auroc", auroc.compute(), prog_bar=True, sync_dist=True)
        auroc.reset()
        positive.reset()

    def on_test_epoch_start(self):
        self.confusion = None

    def on_test_epoch_end(self):
        if "test_auroc" in self.metrics:
            self._log_auroc("test")
        if "test_confusion" in self.metrics:
            cm = self.metrics["test_confusion"]
            if cm.update_called:
                self.confusion = cm.compute().cpu()
            cm.reset()

    @torch.no_grad()
    def fit_anomaly_scale(self, loader) -> None:
        """Set the anomaly head's error variance per horizon and feature from normal (training) data."""
        head = self.model.head
        total, count = 0.0, 0
        for x, _, lengths in loader:
            x = x.to(self.device)
            state = self.model.init_state(x.shape[0], device=self.device)
            parts = self.model.forward_parts(x, state)
            err, ok = head.errors(parts.feats, parts.pred, state.head[0])  # (B, F, H, C), (B, F, H)
            frames = self._frames(lengths.to(self.device))
            mask = ok & (torch.arange(err.shape[1], device=self.device)[None, :, None] < frames[:, None, None])
            total = total + (err * mask[..., None]).sum((0, 1))  # (H, C)
            count = count + mask.sum((0, 1))  # (H,)
        if not torch.is_tensor(count) or not bool((count > 0).all()):
            raise ValueError(f"no training frame has a forecast made {max(head.horizons)} frames before it: the "
                             "windows must be longer than the longest of head.horizons")
        head.err_var.copy_((total / count[:, None]).clamp_min(1e-8).reshape(-1))

    def fit_anomaly_memory(self, series: list[Tensor]) -> None:
        """Keep the hidden states of the normal training series as the anomaly head's memory."""
        self.model.head.set_memory(memory_states(self.model, series))

    def on_validation_epoch_end(self):
        if "val_auroc" in self.metrics:
            self._log_auroc("val")
        if self.trainer.sanity_checking:
            return
        self.history.setdefault("epoch", []).append(self.current_epoch + 1)
        for k in ("val_loss", "val_acc", "train_loss"):
            v = self.trainer.callback_metrics.get(k)
            if v is not None:
                self.history.setdefault(k, []).append(float(v))

    # -- optimiser -----------------------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            # SSM dynamics (A, Δ, D) and norms/biases are not weight-decayed (as in Mamba and S4)
            leaf = name.rsplit(".", 1)[-1]
            if p.dim() < 2 or leaf in ("A_log", "D", "dt_bias", "log_dt", "log_A_real", "A_imag") or "norm" in name:
                no_decay.append(p)
            else:
                decay.append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr)
        total = max(1, self.trainer.estimated_stepping_batches)
        warm = min(self.hparams.warmup_steps, total // 2)

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
