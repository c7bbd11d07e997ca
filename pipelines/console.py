"""What a person running ``ssm-signal fit`` / ``score`` sees: the project's own lines, not Lightning's chatter.

``quiet_third_party`` is called where the command starts (never at import: importing a module must not change
a caller's warning filters). Nothing here imports Lightning: ``score`` of long files runs without it, within
its memory bound (docs/performance.md), and this runs before every ``score``.
"""

from __future__ import annotations

import logging
import sys
import warnings

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
