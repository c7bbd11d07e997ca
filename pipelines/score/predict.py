"""The batch path's model side under Lightning: ``Trainer.predict`` over the scorer's DataLoader.

Imported by :mod:`pipelines.score.job` only when a job has files for the batch path: Lightning is a
fifth of the process's memory (~220 MB resident), and a job of long files only (read in blocks,
``pipelines.score.long_files``) scores without it, within the memory bound benchmarks/bench_score_memory.py
measures. The writer, the rows and the job stay Lightning-free; :class:`_WriteRows` hands each
batch's results to the plain :class:`~pipelines.score.writer.PartWriter`.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import lightning as L
import torch
from torch import Tensor

from pipelines.batch_graphs import BatchGraphs
from pipelines.batch_ring import BatchRing
from pipelines.errors import Interrupted
from pipelines.score.config import ScoreConfig
from pipelines.score.job import SignalStop
from pipelines.score.rows import Scored
from pipelines.score.runtime import OnnxFrames, TorchFrames
from pipelines.score.writer import PartWriter
from ssm_signal.bundle import Bundle, clip_scores, pcm_to_float

log = logging.getLogger("ssm_signal.pipelines")


class Scorer(L.LightningModule):
    """Wraps a bundle's model for ``Trainer.predict``: padded batch -> :class:`Scored` clip scores (and frames).

    The clip scores are reduced on the device (:func:`clip_scores`, the batched twin of
    ``outputs_to_prediction``), so without ``--frames`` a batch crosses back as one small tensor.
    On a GPU nothing in a step waits for the GPU: the batch's samples and valid frame counts go
    over on a copy stream (overlapping the previous batch's forward), int16 PCM becomes float on
    the device, the forward (:meth:`forward_batch`) is one CUDA-graph replay per batch
    (:class:`BatchGraphs`; ``cuda_graphs=False``: launched kernel by kernel, its eager twin), and the
    scores come back by an asynchronous copy that :class:`PartWriter` waits for one batch later.
    ``batch_size``: the job's, the rows graphs are padded to.
    """

    def __init__(self, bundle: Bundle, frames: bool = False, ring: BatchRing | None = None,
                 cuda_graphs: bool = True, batch_size: int = 1, runner: TorchFrames | OnnxFrames | None = None):
        super().__init__()
        self.bundle = bundle
        self.runner = runner or TorchFrames(bundle)
        self.model = bundle.model
        self.frames = frames
        self.ring = ring
        self.cuda_graphs, self.batch_size = cuda_graphs, batch_size
        self.graphs: BatchGraphs | None = None
        self._copy_stream: torch.cuda.Stream | None = None

    def on_predict_start(self):
        if self.device.type != "cuda":
            return
        if self.ring is not None and not self.ring.register():
            log.warning("could not page-lock the batch ring; copies to the GPU will be synchronous")
        if self.cuda_graphs:
            self.graphs = BatchGraphs(self.forward_batch, self.batch_size, self.model.samples_per_frame)

    def forward_batch(self, x: Tensor, frames: Tensor) -> tuple[Tensor, ...]:
        """A padded batch -> (clip scores (B, K),) or, with frames, (scores, frame outputs (B, F, out_dim)).

        x: (B, L, C) int16 PCM or float32 at the bundle rate; frames: (B,) int64 valid frames per
        item (>= 1), on x's device. The :class:`BatchGraphs` body, and its eager twin. Nothing here
        synchronises with the device: the values are not scanned for NaN/Inf again (the workers did:
        16-bit PCM cannot hold them, and ``prepare_signal`` rejects them), and the windows start at
        frame phase 0 (``Bundle.frame_outputs``).
        """
        if x.dtype == torch.int16:
            x = pcm_to_float(x)
        y = self.runner.outputs(x)  # windowed with carried state, as predict() (or the ONNX export's graphs)
        scores = clip_scores(y, frames, self.bundle.config)
        return (scores, y) if self.frames else (scores,)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # only the samples go to the device; Lightning's default would walk every item's metadata
        src = batch["x"]
        if batch["ring"] is not None:
            slot, _, shape = batch["ring"]
            src = self.ring.view(slot, shape)
        if src is None:
            return batch
        frames = batch["frames_host"] = torch.from_numpy(batch["lengths"] // self.model.samples_per_frame)
        if device.type == "cuda":
            if self._copy_stream is None:
                self._copy_stream = torch.cuda.Stream(device)
            with torch.cuda.stream(self._copy_stream):
                batch["x"] = src.to(device, non_blocking=True)
                # from page-locked memory: a copy from pageable memory would wait for the GPU
                batch["frames"] = frames.pin_memory().to(device, non_blocking=True)
            batch["copied"] = self._copy_stream.record_event()
        else:  # a ring slot is rewritten later: the model must not read it in place
            batch["x"] = (src.clone() if batch["ring"] is not None else src).to(device)
            batch["frames"] = frames
        return batch

    def predict_step(self, batch, batch_idx):
        check = None if batch["ring"] is None else functools.partial(self.ring.check, *batch["ring"][:2])
        x, n_frames = batch["x"], batch.get("frames")
        if x is None:
            return Scored(None)
        if "copied" in batch:
            stream = torch.cuda.current_stream(x.device)
            stream.wait_event(batch["copied"])
            x.record_stream(stream)  # allocated on the copy stream, used on this one
            n_frames.record_stream(stream)
        out = (self.graphs or self.forward_batch)(x, n_frames)
        scores, frames = out[0], None
        if self.frames:
            y = out[1].float().cpu()  # before the next batch: the graph's outputs are overwritten
            frames = [y[i, :f] for i, f in enumerate(batch["frames_host"].tolist())]
        if not scores.is_cuda:
            return Scored(scores, frames, None, check)
        host = torch.empty(scores.shape, dtype=scores.dtype, pin_memory=True)
        host.copy_(scores, non_blocking=True)  # queued before the next replay overwrites scores
        return Scored(host, frames, torch.cuda.current_stream(scores.device).record_event(), check)


def predict_batches(loader: Any, ring: BatchRing | None, bundle: Bundle, runner: TorchFrames | OnnxFrames,
                    cfg: ScoreConfig, writer: PartWriter, n_files: int, stop: SignalStop | None = None
                    ) -> tuple[L.Trainer, Scorer]:
    """``Trainer.predict`` of the bundle's :class:`Scorer` over ``loader`` (batches as :class:`Collate`
    makes them, ``n_files`` files in all), ``writer`` writing the parts; returns the trainer and the
    scorer. The writer thread is stopped and the ring's page-locking undone also when it fails; on
    ``stop``'s signal the rows scored so far are written before :class:`Interrupted` is raised."""
    onnx = isinstance(runner, OnnxFrames)  # onnxruntime runs on the CPU: one process, no device copies
    trainer = L.Trainer(accelerator="cpu" if onnx else cfg.accelerator, devices=1 if onnx else cfg.devices,
                        strategy="auto" if onnx else cfg.strategy,
                        logger=False, callbacks=[_WriteRows(writer), _Progress(n_files, writer), _StopOnSignal(stop)],
                        enable_model_summary=False, enable_progress_bar=False, use_distributed_sampler=False)
    try:
        with torch.inference_mode():
            scorer = Scorer(bundle, cfg.frames, ring, cfg.cuda_graphs and not onnx, cfg.batch_size, runner)
            trainer.predict(scorer, dataloaders=loader, return_predictions=False)
    except Interrupted:
        writer.finish(trainer.global_rank)  # the batches scored so far are kept: a rerun resumes after them
        raise
    finally:
        writer.close()
        if ring is not None:
            ring.unregister()
    return trainer, scorer


class _WriteRows(L.Callback):
    """Each predicted batch's results to the :class:`PartWriter` (which waits for them one batch behind),
    and every row on disk when the epoch ends."""

    def __init__(self, writer: PartWriter):
        self.writer = writer

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.writer.add(batch["files"], outputs, trainer.global_rank)

    def on_predict_epoch_end(self, trainer, pl_module):
        self.writer.finish(trainer.global_rank)


class _StopOnSignal(L.Callback):
    def __init__(self, stop: SignalStop | None):
        self.stop = stop

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.stop is not None:
            self.stop.check()


class _Progress(L.Callback):
    """A tqdm bar with files/s and signal-seconds/s (the writer's running total: it runs first)."""

    def __init__(self, total: int, writer: PartWriter):
        self.total, self.writer = total, writer

    def on_predict_start(self, trainer, pl_module):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, unit="file", disable=not trainer.is_global_zero)
        self.t0, self.seconds0 = time.time(), self.writer.seconds

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.bar.update(len(batch["files"]))
        seconds = self.writer.seconds - self.seconds0
        self.bar.set_postfix(audio_s_per_s=f"{seconds / max(1e-9, time.time() - self.t0):.0f}")

    def on_predict_end(self, trainer, pl_module):
        self.bar.close()
