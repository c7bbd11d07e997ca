"""The project's one cache folder on disk.

``cache_dir()`` is ``$SSM_SIGNAL_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/ssm-signal``, else
``~/.cache/ssm-signal``. Each user keeps its own folder under it: compiled streaming steps in ``aoti/``
(:mod:`ssm_signal.streaming.step`), bundles downloaded from MLflow in ``mlflow/``
(``pipelines.tracking``). Everything in it can be deleted; it is rebuilt on demand.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that moves the cache.
ENV_CACHE_DIR = "SSM_SIGNAL_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """The cache root, or the folder ``parts`` under it (not created here)."""
    env = os.environ.get(ENV_CACHE_DIR, "").strip()
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "ssm-signal"
    return root.joinpath(*parts)
