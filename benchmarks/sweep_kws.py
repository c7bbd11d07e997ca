"""How the default keyword model was chosen: a small sweep of architectures and schedules, each trained
through the real training path (`ssm-signal fit`) with several runs in parallel, two CPU threads each.

    python benchmarks/sweep_kws.py --out sweep.json [--epochs 10] [--parallel 6] [--only A,C]

Each run's per-epoch validation accuracy (speaker-disjoint validation voices) and final test accuracy
are read from a CSVLogger; the choice is made on validation accuracy and training cost, never on test.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

M2 = "{mamba2: {d_state: %d, headdim: %d, chunk_size: 50}}"
RUNS = {
    "A_m2_d64_N16_L4": ["--model.network.backbone.mixer_kwargs", M2 % (16, 32)],
    "B_m2_d64_N16_L4_lr5e-3": ["--model.network.backbone.mixer_kwargs", M2 % (16, 32), "--model.lr", "0.005"],
    "C_m1_d64_N16_L4": ["--model.network.backbone.layers", "[mamba, mamba, mamba, mamba]",
                        "--model.network.backbone.mixer_kwargs", "{mamba: {d_state: 16}}"],
    "D_m2_d48_N16_L4": ["--model.network.backbone.d_model", "48",
                        "--model.network.backbone.mixer_kwargs", M2 % (16, 24)],
    "E_m2_d64_N16_L3": ["--model.network.backbone.layers", "[mamba2, mamba2, mamba2]",
                        "--model.network.backbone.mixer_kwargs", M2 % (16, 32)],
    "F_m2_d64_N32_L4": ["--model.network.backbone.mixer_kwargs", M2 % (32, 32)],
    # the chosen architecture (A): seeds, and schedule length
    "G_A_seed1": ["--seed_everything", "1"],
    "H_A_seed2": ["--seed_everything", "2"],
    "I_A_10ep": ["--trainer.max_epochs", "10"],
    "J_A_16ep": ["--trainer.max_epochs", "16"],
    "K_A_10ep_seed1": ["--trainer.max_epochs", "10", "--seed_everything", "1"],
    "L_A_8ep": ["--trainer.max_epochs", "8"],
    # convergence on the slowest seed (2)
    "M_A_b32_seed2": ["--data.init_args.batch_size", "32", "--seed_everything", "2"],
    "N_A_b32_seed0": ["--data.init_args.batch_size", "32"],
    "O_A_b32_lr2e-3_seed2": ["--data.init_args.batch_size", "32", "--model.lr", "0.002", "--seed_everything", "2"],
    "P_A_nospec_seed2": ["--model.spec_augment", "[0, 0, 0]", "--seed_everything", "2"],
    "Q_A_noaug_seed2": ["--data.init_args.augment", "false", "--seed_everything", "2"],
    "R_A_lastframe_seed2": ["--model.frame_loss_frames", "0", "--seed_everything", "2"],
    # without waveform augmentation (the generated clips already carry noise, level and offset)
    "S_noaug_seed0": ["--data.init_args.augment", "false"],
    "T_noaug_seed1": ["--data.init_args.augment", "false", "--seed_everything", "1"],
    "U_noaug_seed3": ["--data.init_args.augment", "false", "--seed_everything", "3"],
    "V_noaug_seed2_14ep": ["--data.init_args.augment", "false", "--seed_everything", "2", "--trainer.max_epochs", "14"],
    "W_noaug_seed0_14ep": ["--data.init_args.augment", "false", "--trainer.max_epochs", "14"],
    "X_noaug_seed4": ["--data.init_args.augment", "false", "--seed_everything", "4"],
}


def read_curves(log_dir: Path) -> dict[str, list]:
    files = sorted(log_dir.rglob("metrics.csv"))
    out: dict[str, list] = {"val_acc": [], "test_acc": []}
    if not files:
        return out
    with open(files[-1]) as f:
        for row in csv.DictReader(f):
            for k in out:
                if row.get(k):
                    out[k].append(float(row[k]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="sweep_kws.json")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--parallel", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="")
    p.add_argument("--work", default="/tmp/sweep_kws")
    p.add_argument("--accelerator", default="cpu", help="gpu: faster sweeps (accuracy only; times are not CPU times)")
    p.add_argument("--deadline", type=float, default=0, help="stop every run after this many seconds (0: none)")
    args = p.parse_args()
    names = [n for n in RUNS if not args.only or n.split("_")[0] in args.only.split(",")]
    work = Path(args.work)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    procs, results, pending = {}, {}, list(names)
    start = time.time()
    while pending or procs:
        if args.deadline and time.time() - start > args.deadline:
            for n, (proc, t0) in procs.items():  # keep what the unfinished runs logged so far
                proc.kill()
                results[n] = {"returncode": None, "wall_s": time.time() - t0, **read_curves(work / n / "logs")}
            break
        while pending and len(procs) < args.parallel:
            n = pending.pop(0)
            d = work / n
            cmd = [sys.executable, "-m", "pipelines.cli", "fit", "--config", "configs/kws_default.yaml",
                   "--trainer.max_epochs", str(args.epochs),
                   "--trainer.accelerator", args.accelerator, "--trainer.enable_progress_bar", "false",
                   "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                   "--trainer.logger.save_dir", str(d / "logs"), "--trainer.default_root_dir", str(d),
                   "--output.bundle_dir", str(d / "bundle"), *RUNS[n]]
            d.mkdir(parents=True, exist_ok=True)
            log = open(d / "stdout.log", "w")
            procs[n] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), time.time())
        time.sleep(5)
        for n, (proc, t0) in list(procs.items()):
            if proc.poll() is not None:
                curves = read_curves(work / n / "logs")
                results[n] = {"returncode": proc.returncode, "wall_s": time.time() - t0, **curves}
                print(n, json.dumps(results[n]), flush=True)
                del procs[n]
    Path(args.out).write_text(json.dumps({"epochs": args.epochs, "threads": args.threads, "runs": results},
                                         indent=2) + "\n")


if __name__ == "__main__":
    main()
