"""Progress where a redrawn progress bar is not (a log file, CI output): ``EpochLines``, one line per epoch.

What else a person running ``ssm-signal fit`` / ``score`` sees is set in :mod:`pipelines.console`, which
imports no Lightning (``score`` of long files runs without it).
"""

from __future__ import annotations

import logging
import time

from lightning.pytorch.callbacks import Callback

log = logging.getLogger("ssm_signal.pipelines")


class EpochLines(Callback):
    """One log line per finished epoch: epoch, step, elapsed time and the epoch's logged metrics."""

    def __init__(self, keys: tuple[str, ...] = ("train_loss", "val_loss", "val_acc", "val_auroc")):
        self.keys = keys
        self.t0 = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        metrics = trainer.callback_metrics
        shown = " ".join(f"{k} {float(metrics[k]):.4f}" for k in self.keys
                         if k in metrics and metrics[k].numel() == 1)
        log.info("epoch %d/%s step %d %.0f s %s", trainer.current_epoch + 1, total, trainer.global_step,
                 time.monotonic() - self.t0, shown)
