"""What a user of ``make train`` sees when the output is a log file or CI: a line per epoch, and none of
Lightning's tips, notices or third-party deprecation warnings (issue 19, point 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.pipelines.test_fit import write_ts

ROOT = Path(__file__).resolve().parents[2]


def test_fit_through_a_pipe_prints_a_line_per_epoch_and_no_library_chatter(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "Tiny").mkdir()
    write_ts(tmp_path / "Tiny" / "Tiny_TRAIN.ts", 12, rng)
    write_ts(tmp_path / "Tiny" / "Tiny_TEST.ts", 6, rng)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": "",
           "PYTHONWARNINGS": "default"}  # every warning shown unless the command itself filters it
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "fit", "--config", str(ROOT / "configs" / "uea_basicmotions.yaml"),
         "--data.init_args.root", str(tmp_path), "--data.init_args.name", "Tiny", "--trainer.max_epochs", "3",
         "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_model_summary", "false",
         "--output.bundle_dir", str(tmp_path / "bundle"), "--output.register", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # stdout and stderr are pipes
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    epochs = [line for line in out.splitlines() if "ssm_signal.pipelines: epoch " in line]
    assert [line.split("epoch ")[1].split()[0] for line in epochs] == ["1/3", "2/3", "3/3"], out
    assert all("train_loss" in line and "val_acc" in line for line in epochs), epochs
    assert "test accuracy:" in out
    for chatter in ("Tip:", "GPU available", "TPU available", "Warning", "deprecated", "\r"):
        assert chatter not in out, f"{chatter!r} reached the user:\n{out}"
