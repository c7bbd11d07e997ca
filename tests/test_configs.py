"""Every shipped config is loaded: parsed, validated and instantiated (without data access)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from pipelines.task import SignalTask
from pipelines.train import SignalCLI

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
JOBS = sorted(p for p in CONFIGS.glob("*.yaml"))
TRAINERS = sorted(p for p in (CONFIGS / "trainer").glob("*.yaml"))


def load(*args: str) -> SignalCLI:
    return SignalCLI(SignalTask, L.LightningDataModule, subclass_mode_data=True, run=False,
                     args=[*args, "--trainer.logger", "false"], save_config_kwargs={"overwrite": True})


def test_all_configs_are_covered():
    assert {p.name for p in JOBS} >= {"kws_default.yaml", "speech_commands_12.yaml", "speech_commands_35.yaml",
                                      "uea_basicmotions.yaml", "sensor_anomaly.yaml"}
    assert {p.name for p in TRAINERS} >= {"ddp.yaml"}


@pytest.mark.parametrize("config", JOBS, ids=lambda p: p.name)
def test_job_config_loads(config, tmp_path):
    cli = load("--config", str(config), "--trainer.accelerator", "cpu", "--trainer.precision", "32",
               "--trainer.default_root_dir", str(tmp_path))
    assert isinstance(cli.model, SignalTask)
    assert isinstance(cli.datamodule, L.LightningDataModule)
    assert cli.model.model_config.backbone.layers  # the typed ModelConfig was built and validated
    assert cli.output().bundle_dir.startswith("artifacts/")


@pytest.mark.parametrize("trainer", TRAINERS, ids=lambda p: p.name)
def test_trainer_overlays_load(trainer, tmp_path):
    # GPU overlays are validated on this CPU machine by overriding only where they run
    cli = load("--config", str(CONFIGS / "kws_default.yaml"), "--config", str(trainer),
               "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32",
               "--trainer.default_root_dir", str(tmp_path))
    assert isinstance(cli.trainer, L.Trainer)


def test_bad_config_fails_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "kws_default.yaml").read_text().replace("layers: [mamba2", "layers: [lstm"))
    with pytest.raises((SystemExit, ValueError)):
        load("--config", str(bad))
