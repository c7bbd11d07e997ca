"""Training: ``ssm-signal fit --config configs/NAME.yaml`` (LightningCLI) and the plain ``train``.

Every hyperparameter is in the YAML (model -> SignalTask, data -> a datamodule class,
trainer -> lightning.Trainer, output -> where the bundle goes and how it is registered).
After fitting, the model is tested, written as a bundle, logged to MLflow with figures,
and registered in the MLflow model registry.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import time
from pathlib import Path
from typing import Any

import jsonargparse
import lightning as L
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from pipelines.console import interactive
from pipelines.errors import UsageError
from pipelines.progress import EpochLines
from pipelines.task import SignalTask
from ssm_signal.bundle import save_bundle
from ssm_signal.data.phrases import PhraseError
from ssm_signal.events import DetectorConfig

log = logging.getLogger("ssm_signal.pipelines")


@dataclasses.dataclass
class OutputConfig:
    """Where the trained model goes.

    bundle_dir: bundle directory (config.json + model.safetensors); empty: ``artifacts/<name>``.
    name: model name in the bundle and the MLflow registry; empty: the data's own name for it (a custom
        keyword set's ``kws_<words joined>``), else "model".
    experiment: MLflow experiment name.
    register: register the bundle in the MLflow model registry.
    test: evaluate on the test split after fitting.
    detector: the event detector settings the bundle ships with (smoothing_frames, threshold, refractory_s, ...:
        :class:`ssm_signal.events.DetectorConfig`); None: the defaults. ``ssm-signal evaluate --calibrate``
        later replaces the threshold.
    """

    bundle_dir: str | None = "artifacts/model"
    name: str | None = "model"
    experiment: str = "ssm-signal"
    register: bool = True
    test: bool = True
    detector: dict[str, Any] | None = None

    def __post_init__(self):
        if self.detector is not None:
            DetectorConfig.from_dict(dict(self.detector))  # a bad setting fails when the config is read


class _ConfigDumper(yaml.SafeDumper):
    """The safe YAML dumper, writing an Enum member as its value.

    A parameter annotated with a plain type whose default is an Enum member (Lightning's
    ``Timer(interval: str = Interval.step)``) keeps that member in the parsed config: jsonargparse checks it
    against ``str``, which a str-valued member passes, and leaves it as it is. The safe dumper refuses any
    object it does not know, and LightningCLI dumps the whole config before it builds the data module (for
    its hyperparameters), so one such callback stopped every fit. The value is what the annotation asks for.
    """


_ConfigDumper.add_multi_representer(enum.Enum, lambda dumper, member: dumper.represent_data(member.value))


def dump_config_yaml(data: Any) -> str:
    """jsonargparse's YAML dump (same layout), with :class:`_ConfigDumper`."""
    return yaml.dump(data, Dumper=_ConfigDumper, default_flow_style=False, allow_unicode=True, sort_keys=False)


class SignalCLI(LightningCLI):
    """LightningCLI with an ``output`` group and MLflow as the default logger."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # jsonargparse's dumpers are one table for the process: the fit's parsers write YAML through this one
        jsonargparse.set_dumper("yaml", dump_config_yaml)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(OutputConfig, "output")
        parser.add_argument("--resume", type=bool, default=False, help="continue from the last checkpoint")

    def output(self) -> OutputConfig:
        """The ``output`` group of the parsed config, with the names it leaves empty filled from the data
        (`make train WORDS=...`: one bundle per word list). Built once: the trainer and the job share it."""
        if getattr(self, "_output", None) is None:
            out = self.config["output"]
            out = out if isinstance(out, OutputConfig) else OutputConfig(**vars(out))
            out.name = out.name or getattr(self.datamodule, "bundle_name", None) or "model"
            out.bundle_dir = out.bundle_dir or f"artifacts/{out.name}"
            self._output = out
        return self._output

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        out = self.output()
        cfg = self.config_init["trainer"]
        if cfg.get("logger") in (None, True) and "logger" not in kwargs:
            from pipelines.tracking_lightning import make_mlflow_logger

            kwargs["logger"] = make_mlflow_logger(out.experiment, run_name=out.name)
        logger = kwargs.get("logger", cfg.get("logger"))
        loggers = logger if isinstance(logger, list) else [logger]
        if self.save_config_callback is SaveConfigCallback and any(isinstance(lg, MLFlowLogger) for lg in loggers):
            from pipelines.tracking_lightning import MLflowConfigCallback

            # the stock callback asserts on trainer.log_dir, which MLFlowLogger leaves None for database and
            # server stores; this one writes config.yaml to default_root_dir and into the MLflow run
            self.save_config_callback = MLflowConfigCallback
        root = kwargs.get("default_root_dir") or cfg.get("default_root_dir")
        kwargs["default_root_dir"] = root or str(Path(out.bundle_dir).parent / "lightning" / out.name)
        if not interactive():
            # a bar redrawn with carriage returns is one endless line in a log file or CI output
            kwargs.setdefault("enable_progress_bar", False)
        bar = kwargs.get("enable_progress_bar", cfg.get("enable_progress_bar", True))
        given = cfg.get("callbacks") or []
        kwargs["callbacks"] = [*(given if isinstance(given, list) else [given]), *([] if bar else [EpochLines()]),
                               ModelCheckpoint(dirpath=str(Path(kwargs["default_root_dir"]) / "checkpoints"),
                                               save_last=True, save_top_k=0)]
        return super().instantiate_trainer(**kwargs)


def _innermost(e: BaseException) -> BaseException:
    """The deepest ValueError or TypeError in ``e``'s chain of causes (``e`` itself if none lies below it)."""
    deepest, seen = e, {id(e)}
    c = e.__cause__ or e.__context__
    while c is not None and id(c) not in seen:
        seen.add(id(c))
        if isinstance(c, ValueError | TypeError):
            deepest = c
        c = c.__cause__ or c.__context__
    return deepest


def run_fit(args: list[str] | None = None) -> dict[str, Any]:
    """Parse a fit configuration, train, test, bundle, log and register. Returns the summary."""
    try:
        cli = SignalCLI(SignalTask, L.LightningDataModule, subclass_mode_data=True, run=False, args=args,
                        save_config_kwargs={"overwrite": True}, parser_kwargs={"default_env": False})
    except (ValueError, TypeError) as e:  # the configs' own checks (e.g. frontend.n_mels must be >= 1)
        # jsonargparse wraps a check's error in its report of every Union subtype it tried: say the check's alone
        cause = _innermost(e)
        if isinstance(cause, PhraseError):
            raise UsageError(f"data.init_args.words: {cause}") from e
        raise UsageError(f"config: {cause}") from e
    out = cli.output()
    return fit_and_bundle(cli.trainer, cli.model, cli.datamodule, out, resume=cli.config.get("resume", False))


def fit_and_bundle(trainer: L.Trainer, task: SignalTask, dm: L.LightningDataModule, out: OutputConfig,
                   resume: bool = False) -> dict[str, Any]:
    """The training job as a plain function: fit, test, save the bundle, track it."""
    t0 = time.time()
    ckpt = "last" if resume else None
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt)
    fit_s = time.time() - t0
    if task.model_config.head.kind == "anomaly":
        task.fit_anomaly_scale(dm.train_dataloader())
        if task.model_config.head.memory:
            if not hasattr(dm, "normal_series"):
                raise UsageError(f"model.network.head.memory needs the normal training series, whole: "
                                 f"{type(dm).__name__} has no normal_series() (SensorAnomalyDataModule has)")
            task.fit_anomaly_memory(dm.normal_series())
        # the validation scores during training were normalised by a variance not fitted yet: measure them again
        trainer.validate(task, datamodule=dm, verbose=False)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if out.test:
        tested = trainer.test(task, datamodule=dm, verbose=False)
        metrics.update({k: float(v) for k, v in tested[0].items()})
    metrics["fit_seconds"] = fit_s
    bundle_dir = Path(out.bundle_dir)
    if trainer.is_global_zero:
        task.model.cpu()
        detector = DetectorConfig.from_dict(dict(out.detector)) if out.detector else None
        save_bundle(task.model, bundle_dir, name=out.name, metrics=metrics, detector=detector)
        _track(trainer, task, out, bundle_dir, metrics)
    summary = {"bundle": str(bundle_dir), "metrics": metrics}
    for key, what in (("test_acc", "test accuracy"), ("test_auroc", "test ROC-AUC")):
        if key in metrics:
            print(f"{what}: {metrics[key]:.4f}  ({out.name}, {fit_s:.0f} s training) -> {bundle_dir}")
    return summary


def _track(trainer: L.Trainer, task: SignalTask, out: OutputConfig, bundle_dir: Path, metrics: dict) -> None:
    logger = next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)
    if logger is None:
        return
    from pipelines.tracking import log_bundle, log_figures, register_bundle

    uri = logger.experiment.tracking_uri
    run_id = logger.run_id
    # Lightning already logged what the task logs (val_*, test_*) at their steps; add the rest once
    logged = logger.experiment.get_run(run_id).data.metrics
    for k, v in metrics.items():
        if k not in logged:
            logger.experiment.log_metric(run_id, k, v)
    log_bundle(run_id, bundle_dir, uri)
    confusion = task.confusion.numpy() if task.confusion is not None else None
    log_figures(run_id, uri, confusion=confusion, labels=task.model_config.labels or None, curves=task.history)
    if out.register:
        version = register_bundle(run_id, out.name, uri)
        print(f"registered models:/{out.name}/{version} in {uri}")


def train(config: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train from a YAML config, as ``ssm-signal fit --config CONFIG [overrides]`` does."""
    return run_fit(["--config", str(config), *(overrides or [])])
