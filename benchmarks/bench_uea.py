"""Test accuracy of causal SSM classifiers on UEA archive problems, trained by the project's own training path.

    python benchmarks/bench_uea.py [--datasets BasicMotions JapaneseVowels] [--seeds 0 1 2 3 4] [--threads 1]
    python benchmarks/bench_uea.py --select [--datasets ...] [--splits 0 1 2]

The data are the archive's own ``.ts`` files, taken from the aeon wheel by ``benchmarks/fetch_uea.py`` (run
first, here, if they are absent; aeon is never installed). Every training is ``pipelines.train.run_fit`` on
``configs/uea_<name>.yaml``, i.e. exactly ``ssm-signal fit --config configs/uea_<name>.yaml --seed_everything
SEED`` (what ``make train CONFIG=...`` runs), with MLflow logging, the progress bar and the model registry
turned off and the bundle written to a temporary folder; none of those affect the numbers. The models are
causal: the clip prediction is the per-frame classifier read at the clip's last frame.

Default mode: one training per seed on the full training split for the config's fixed number of epochs, then
one evaluation of the final weights on the test split (no checkpoint selection, no early stopping). Writes
``benchmarks/results/uea_<name>_<date>.json`` with per-seed accuracy, mean/min/max and the time per training.

``--select``: how the configs' hyperparameters were chosen. Each candidate (overrides of the shipped config,
listed in CANDIDATES; the shipped config is the one with no overrides) is trained on a random part of the
training split and scored on the held-out rest (``UEADataModule.val_fraction``), for several split seeds;
``output.test`` is off, so the test split is never read. Writes ``uea_<name>_selection_<date>.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import machine, write_result  # noqa: E402

CONFIGS = {
    "BasicMotions": ROOT / "configs/uea_basicmotions.yaml",
    "JapaneseVowels": ROOT / "configs/uea_japanesevowels.yaml",
}

# Published test accuracies. ConvTran's Table 1 (Foumani et al. 2024) lists ConvTran and its re-runs of
# other models on the same archive splits; the InceptionTime paper itself reports only the univariate UCR
# archive, so its multivariate figures come from that table.
PUBLISHED = {
    "BasicMotions": {"ConvTran": 1.0, "InceptionTime": 1.0},
    "JapaneseVowels": {"ConvTran": 0.9891, "InceptionTime": 0.9702},
}
PUBLISHED_SOURCE = (
    "Foumani, Tan, Webb, Salehi, 'Improving position encoding of transformers for multivariate time series "
    "classification' (ConvTran), Data Mining and Knowledge Discovery (2024), doi:10.1007/s10618-023-00948-2, "
    "arXiv:2305.16642, Table 1; figures read from the authors' 'Paper Results/Table 1 Results.xlsx' in "
    "github.com/Navidfoumani/ConvTran (commit e41fb4b). InceptionTime: Ismail Fawaz et al., 'InceptionTime: "
    "finding AlexNet for time series classification', Data Mining and Knowledge Discovery (2020), "
    "arXiv:1909.04939, as run by Foumani et al. for that Table 1"
)
TARGETS = {"BasicMotions": 0.975, "JapaneseVowels": 0.97}

# Candidates for --select: overrides of the shipped config, which is "shipped" (no overrides).
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "BasicMotions": {
        "shipped": [],
        "last-frame loss only": ["--model.frame_loss_frames", "0"],
        "frame loss over the last 25 frames": ["--model.frame_loss_frames", "25"],
        "4 x mamba2": ["--model.network.backbone.layers", "[mamba2, mamba2, mamba2, mamba2]",
                       "--model.network.backbone.mixer_kwargs", "{mamba2: {d_state: 16, headdim: 16}}"],
        "4 x mamba": ["--model.network.backbone.layers", "[mamba, mamba, mamba, mamba]",
                      "--model.network.backbone.mixer_kwargs", "{mamba: {d_state: 16}}"],
    },
    "JapaneseVowels": {
        "shipped": [],
        "no SpecAugment": ["--model.spec_augment", "[0, 0, 0]"],
        "SpecAugment [3, 5, 3]": ["--model.spec_augment", "[3, 5, 3]"],
        "60 epochs": ["--trainer.max_epochs", "60"],
        "4 x mamba": ["--model.network.backbone.layers", "[mamba, mamba, mamba, mamba]"],
        "4 x s4d": ["--model.network.backbone.layers", "[s4d, s4d, s4d, s4d]",
                    "--model.network.backbone.mixer_kwargs", "{s4d: {d_state: 32}}"],
    },
}
# (held-out share of the training split, split seeds) for --select: a quarter of BasicMotions' 40 clips is
# 10 (one per class at least, mostly); a fifth of JapaneseVowels' 270 is 54, scored over 5 splits
SELECT_SPLITS = {"BasicMotions": (0.25, [0, 1, 2]), "JapaneseVowels": (0.2, [0, 1, 2, 3, 4])}

QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--output.register", "false"]


def fit(config: Path, seed: int, root: Path, extra: list[str]) -> dict:
    """One ``run_fit`` (the ``ssm-signal fit`` path) in a temporary output folder; its metrics and timings."""
    from pipelines.train import run_fit

    with tempfile.TemporaryDirectory(prefix="bench_uea_") as tmp:
        args = ["--config", str(config), "--seed_everything", str(seed), *QUIET,
                "--output.bundle_dir", f"{tmp}/bundle", "--trainer.default_root_dir", f"{tmp}/runs",
                "--data.init_args.root", str(root), *extra]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        out = run_fit(args)
        wall = time.perf_counter() - t0
    m = out["metrics"]
    return {"metrics": m, "fit_seconds": m["fit_seconds"], "wall_seconds": wall,
            "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def stats(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "min": min(xs), "max": max(xs),
            "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def evaluate(name: str, seeds: list[int], root: Path, threads: int) -> dict:
    config = CONFIGS[name]
    runs, n = [], n_test(name, root)
    for s in seeds:
        r = fit(config, s, root, [])
        acc = r["metrics"]["test_acc"]
        runs.append({"seed": s, "test_acc": acc, "test_errors": round((1 - acc) * n),
                     "fit_seconds": r["fit_seconds"], "wall_seconds": r["wall_seconds"],
                     "loadavg_1min": r["loadavg_1min"]})
        print(f"{name} seed {s}: test accuracy {acc:.4f}  fit {r['fit_seconds']:.1f} s  "
              f"(load {r['loadavg_1min']})", flush=True)
    accs = [r["test_acc"] for r in runs]
    rel = config.relative_to(ROOT)
    payload = {
        "benchmark": "uea_accuracy",
        "dataset": name,
        "config": str(rel),
        "config_text": config.read_text(),
        "command": f"OMP_NUM_THREADS={threads} ssm-signal fit --config {rel} --seed_everything SEED "
                   "--trainer.logger false",
        "protocol": "train on the whole training split for the config's fixed epochs; evaluate the final "
                    "weights once on the test split; clip prediction = per-frame classifier at the last frame",
        "threads": threads,
        "seeds": seeds,
        "runs": runs,
        "test_acc": stats(accs),
        "fit_seconds": stats([r["fit_seconds"] for r in runs]),
        "target": TARGETS[name],
        "meets_target": statistics.fmean(accs) >= TARGETS[name],
        "published": PUBLISHED[name],
        "published_source": PUBLISHED_SOURCE,
        "machine": machine(),
    }
    a = payload["test_acc"]
    print(f"{name}: test accuracy mean {a['mean']:.4f} (min {a['min']:.4f}, max {a['max']:.4f}) over seeds {seeds}; "
          f"fit {payload['fit_seconds']['mean']:.0f} s per training", flush=True)
    write_result(f"uea_{name.lower()}", payload)
    return payload


def n_test(name: str, root: Path) -> int:
    from ssm_signal.data.uea import UEADataset

    return len(UEADataset(name, split="test", root=root))


def select(name: str, splits: list[int], root: Path, val_fraction: float, threads: int) -> dict:
    config = CONFIGS[name]
    # check_val_every_n_epoch 1: the reported val_acc is that of the final weights whatever max_epochs is
    base = ["--data.init_args.val_fraction", str(val_fraction), "--output.test", "false",
            "--trainer.check_val_every_n_epoch", "1"]
    results = {}
    for label, overrides in CANDIDATES[name].items():
        runs = []
        for sp in splits:
            r = fit(config, sp, root, [*base, "--data.init_args.seed", str(sp), *overrides])
            m = r["metrics"]
            runs.append({"split_seed": sp, "val_acc": m["val_acc"], "val_loss": m["val_loss"],
                         "train_loss": m.get("train_loss"), "fit_seconds": r["fit_seconds"]})
            print(f"{name} [{label}] split {sp}: val accuracy {m['val_acc']:.4f}  val loss {m['val_loss']:.4f}  "
                  f"fit {r['fit_seconds']:.1f} s", flush=True)
        results[label] = {"overrides": overrides, "runs": runs,
                          "val_acc": stats([r["val_acc"] for r in runs]),
                          "val_loss": stats([r["val_loss"] for r in runs])}
    # highest mean validation accuracy; ties broken by the lower mean validation loss
    # (rounded: float32 means of equal counts of right answers may differ in the last bits)
    ranking = sorted(results, key=lambda k: (-round(results[k]["val_acc"]["mean"], 6),
                                             results[k]["val_loss"]["mean"]))
    for k in ranking:
        print(f"{name}: {results[k]['val_acc']['mean']:.4f} val accuracy, {results[k]['val_loss']['mean']:.4f} "
              f"val loss  [{k}]", flush=True)
    payload = {
        "benchmark": "uea_selection",
        "dataset": name,
        "config": str(config.relative_to(ROOT)),
        "config_text": config.read_text(),
        "protocol": f"train on {1 - val_fraction:.0%} of the training split, score the held-out "
                    f"{val_fraction:.0%}; split seeds {splits} (also the training seeds); test split never read",
        "val_fraction": val_fraction,
        "threads": threads,
        "candidates": results,
        "ranking": ranking,
        "machine": machine(),
    }
    write_result(f"uea_{name.lower()}_selection", payload)
    return payload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--root", type=Path, default=ROOT / "data/uea", help="archive folder (fetched if absent)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the CPU is shared)")
    p.add_argument("--select", action="store_true", help="score the CANDIDATES on validation splits instead")
    p.add_argument("--splits", nargs="+", type=int, help="split seeds for --select (default: SELECT_SPLITS)")
    p.add_argument("--val-fraction", type=float, help="held-out share of the training split (default: SELECT_SPLITS)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    import pipelines.train  # noqa: F401  (imports Lightning, which sets its loggers' levels: quieten them after)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*args parameter is intended.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", pattern)
    import fetch_uea

    fetch_uea.main(["--dest", str(args.root), "--names", *args.datasets])
    for name in args.datasets:
        if args.select:
            frac, splits = SELECT_SPLITS[name]
            select(name, args.splits or splits, args.root, args.val_fraction or frac, args.threads)
        else:
            evaluate(name, args.seeds, args.root, args.threads)


if __name__ == "__main__":
    main()
