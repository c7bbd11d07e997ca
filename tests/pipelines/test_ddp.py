"""Data-parallel training and scoring with 2 CPU processes (gloo): the shipped DDP overlay and the
scorer's `--devices 2 --strategy ddp` run with no code change, as on several GPUs.

Both run the real CLI in a subprocess: Lightning's DDP launcher starts rank 1 by re-running the
command line, which must be the CLI's, not pytest's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch

from pipelines.data import SensorAnomalyDataModule
from pipelines.task import SignalTask
from ssm_signal import load_bundle, save_bundle
from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table
from tests.pipelines.test_fit import CONFIGS, bundle_accuracy, write_ts
from tests.pipelines.test_score import make_files
from tests.test_bundle import small_model

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the CLI; only its results are checked (files, bundles, metrics), never its log lines."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_fit_with_the_cpu_ddp_overlay(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "Tiny").mkdir()
    write_ts(tmp_path / "Tiny" / "Tiny_TRAIN.ts", 16, rng)
    test = write_ts(tmp_path / "Tiny" / "Tiny_TEST.ts", 10, rng)  # 5 per process: no padded duplicates
    cli("fit", "--config", str(CONFIGS / "uea_basicmotions.yaml"), "--config",
        str(CONFIGS / "trainer" / "cpu_ddp.yaml"), "--trainer.logger", "false", "--trainer.max_epochs", "2",
        "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false",
        "--data.init_args.root", str(tmp_path), "--data.init_args.name", "Tiny",
        "--data.init_args.batch_size", "4", "--model.network.backbone.d_model", "16",
        "--output.bundle_dir", str(tmp_path / "bundle"), "--trainer.default_root_dir", str(tmp_path / "runs"))
    # two processes split each epoch: 16 series / (2 x 4) = 2 optimiser steps per epoch, where one process takes 4
    last = torch.load(tmp_path / "runs" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4
    b = load_bundle(tmp_path / "bundle")  # written once, by rank 0
    assert b.labels == ["a", "b"]
    # the logged accuracy is the whole test split's (both processes' halves, batches of 4 and 1 each), as one
    # process predicting every series computes it
    assert abs(b.metrics["test_acc"] - bundle_accuracy(tmp_path / "bundle", test)) < 1e-6


def test_anomaly_auroc_under_ddp_is_the_whole_splits(tmp_path):
    table = make_sensor_anomaly_table(tmp_path / "t.parquet", n_train=4, n_val=0, n_test=4, length=300,
                                      anomalies_per_series=1, seed=3)
    cli("fit", "--config", str(CONFIGS / "sensor_anomaly.yaml"), "--config", str(CONFIGS / "trainer" / "cpu_ddp.yaml"),
        "--trainer.logger", "false", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--data.init_args.path", str(table),
        "--data.init_args.window", "128", "--output.bundle_dir", str(tmp_path / "bundle"),
        "--trainer.default_root_dir", str(tmp_path / "runs"))
    b = load_bundle(tmp_path / "bundle")
    # the same model tested in one process over all four test series
    task = SignalTask(b.config)
    task.model = b.model
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    one = trainer.test(task, datamodule=SensorAnomalyDataModule(path=str(table), window=128), verbose=False)[0]
    # each process saw two series; a per-process ROC-AUC (rank 0's) would differ from the whole split's
    assert 0.5 < one["test_auroc"] < 1.0
    assert abs(b.metrics["test_auroc"] - one["test_auroc"]) < 1e-6


def test_score_on_two_processes_equals_one(tmp_path):
    bundle = save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="1")
    make_files(tmp_path / "data", 23, seconds=0.7)
    outs = {}
    for n in ("1", "2"):
        out = tmp_path / f"scores{n}.parquet"
        cli("score", "--model", str(bundle), "--input", str(tmp_path / "data"), "--output", str(out),
            "--accelerator", "cpu", "--devices", n, "--strategy", "ddp" if n == "2" else "auto", "--batch-size", "2",
            "--num-workers", "0", "--no-mlflow")
        outs[n] = pd.read_parquet(out).set_index("path").sort_index()
    one, two = outs["1"], outs["2"]
    assert len(two) == 23 and two.index.is_unique and (two["status"] == "ok").all()
    assert list(one.index) == list(two.index) and (one["label"] == two["label"]).all()
    for p in one.index:
        assert np.allclose(one.loc[p, "scores"], two.loc[p, "scores"], atol=1e-6)
    parts = list((tmp_path / "scores2.parquet.parts").glob("part-*.parquet"))
    assert {p.name.split("-")[1] for p in parts} == {"r0", "r1"}  # both ranks scored
