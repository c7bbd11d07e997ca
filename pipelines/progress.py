"""What a person running ``ssm-signal fit`` / ``score`` sees: the project's own lines, not Lightning's chatter.

``quiet_third_party`` is called where the command starts (never at import: importing a module must not change
a caller's warning filters); ``EpochLines`` keeps progress visible where a redrawn progress bar is not (a log
file, CI output): one line per epoch.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

from lightning.pytorch.callbacks import Callback

log = logging.getLogger("ssm_signal.pipelines")

# Lightning's advice and notices a user of the project's commands cannot act on: the configs already make
# these choices (workers, batch samplers, the args= entry, the SLURM/TPU/HPU notices, litmodels tips)
_NOISY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")
_IGNORED_WARNINGS = (
    (DeprecationWarning, None), (FutureWarning, None), (PendingDeprecationWarning, None),
    (UserWarning, "lightning"), (UserWarning, "torchmetrics"), (UserWarning, "jsonargparse"),
)


def quiet_third_party() -> None:
    """Keep Lightning's tips and third-party deprecation warnings out of a command's output.

    The UserWarnings the project raises itself still show, and so do errors; ``--debug`` (or
    SSM_SIGNAL_DEBUG=1) skips this, to see everything.
    """
    for category, module in _IGNORED_WARNINGS:
        if module is None:
            warnings.filterwarnings("ignore", category=category)
        else:
            warnings.filterwarnings("ignore", category=category, module=rf"{module}(\.|$)")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def interactive() -> bool:
    """Whether a progress bar can be redrawn in place (stderr is a terminal)."""
    return sys.stderr.isatty()


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
