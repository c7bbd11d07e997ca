"""MLflow wiring that lives on Lightning's side: the training logger and the config saver.

Apart from :mod:`pipelines.tracking` so that the store, the registry and the ``models:/`` resolver
import without Lightning (~220 MB resident): scoring and loading a bundle record and resolve runs
through them, and a scoring process stays within its memory bound (benchmarks/bench_score_memory.py).
What a training run records is described in :mod:`pipelines.tracking`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from pipelines.tracking import default_tracking_uri, experiment_artifact_location, tracking_client


def make_mlflow_logger(experiment: str, run_name: str | None = None, *, uri: str | None = None,
                       tags: Mapping[str, str] | None = None) -> MLFlowLogger:
    """Lightning's ``MLFlowLogger`` on the project's store; it logs hyperparameters and per-epoch metrics.

    The experiment and run are created lazily, on the first log call (rank zero only); a new experiment
    gets :func:`experiment_artifact_location`. Checkpoints are not uploaded (``log_model=False``): they are
    pickles; :func:`log_bundle` uploads the bundle instead. Note that the logger, when it starts, calls
    ``mlflow.set_tracking_uri`` (process-wide, and it exports ``MLFLOW_TRACKING_URI``) with this same URI.
    """
    uri = uri or default_tracking_uri()
    tracking_client(uri)  # creates a SQLite store's folder before Lightning's client opens it
    return MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=uri, tags=dict(tags or {}),
                        log_model=False, artifact_location=experiment_artifact_location(experiment, uri))


class MLflowConfigCallback(SaveConfigCallback):
    """LightningCLI's config saver for MLflow runs: ``config.yaml`` in ``default_root_dir`` and in the run.

    Lightning's own ``SaveConfigCallback`` writes to ``trainer.log_dir``, which ``MLFlowLogger`` leaves None
    for database and server stores, and then fails on an assertion (Lightning issues 19441, 16310). The
    model's hyperparameters are logged by Lightning; this adds the data/trainer/output sections as
    flattened parameters so runs can be compared on them. The config is always one file (no ``multifile``).
    """

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = False):
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=False)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, **_keep_none())
        path = Path(trainer.default_root_dir) / self.config_filename
        if path.exists() and not self.overwrite:
            raise RuntimeError(f"{path} exists; set LightningCLI(save_config_kwargs={{'overwrite': True}}) to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        params = cli_params(self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config))
        for lg in trainer.loggers:
            if isinstance(lg, MLFlowLogger):
                lg.experiment.log_text(lg.run_id, text, self.config_filename)
                lg.log_hyperparams(params)


def _keep_none() -> dict[str, bool]:
    """jsonargparse's switch to keep None values in a dump (renamed skip_none -> skip_unset in 4.49)."""
    import jsonargparse

    major, minor = (int(x) for x in jsonargparse.__version__.split(".")[:2])
    return {"skip_unset": False} if (major, minor) >= (4, 49) else {"skip_none": False}


def cli_params(config: Mapping[str, Any], sections: Sequence[str] = ("data", "trainer", "output")) -> dict[str, str]:
    """Flatten the non-model sections of a LightningCLI config into ``section/key/...`` parameters.

    The ``model`` section is left out: Lightning logs it from the module's ``save_hyperparameters`` under
    its own keys. None values are dropped; values are strings of at most 500 characters.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping):
            for k, sub in v.items():
                walk(f"{prefix}/{k}", sub)
        elif v is not None:
            out[prefix] = str(v)[:500]

    for s in sections:
        if s in config:
            walk(s, config[s])
    return out
