"""Lightning training step time on the GPU: the `auto` kernels (Triton) against the plain `torch` backend.

    python benchmarks/bench_gpu_train.py [--config configs/speech_commands_12.yaml] [--steps 40] [--batch 128]

The model, loss, optimiser and precision are those of the config (the Speech Commands 12-class job:
6 Mamba-2 layers, d_model 128, bf16-mixed); the data are synthetic 1 s clips of the config's sample
rate, since step time does not depend on what is said. Both variants run in one process, side by side
(alternating repeats), through the same `SignalTask` and `lightning.Trainer` that `ssm-signal fit`
uses. Writes benchmarks/results/gpu_train_<date>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, median, write_result  # noqa: E402

from pipelines.data import pad_batch  # noqa: E402
from pipelines.task import SignalTask  # noqa: E402
from ssm_signal import kernels  # noqa: E402
from ssm_signal.models import ModelConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class RandomClips(Dataset):
    def __init__(self, n: int, samples: int, classes: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, samples, generator=g) * 0.1
        self.y = torch.randint(classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class RandomData(L.LightningDataModule):
    def __init__(self, labels: list[str], sample_rate: int, batch: int, n: int):
        super().__init__()
        self.labels, self.sample_rate, self.channels = labels, sample_rate, 1
        self.ds = RandomClips(n, sample_rate, len(labels))
        self.batch = batch

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch, shuffle=True, collate_fn=pad_batch, drop_last=True,
                          num_workers=2, persistent_workers=True)

    def normalization_signals(self):
        for i in range(16):
            yield self.ds[i][0][None, :, None]


class StepTimer(L.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.cuda.synchronize()
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.t)


def run(cfg: dict, backend: str, steps: int, batch: int) -> list[float]:
    net = ModelConfig.from_dict(cfg["model"]["network"])
    hp = {k: v for k, v in cfg["model"].items() if k != "network"}
    task = SignalTask(net, **hp)
    labels = [f"c{i}" for i in range(net.head.num_classes)]
    dm = RandomData(labels, net.frontend.sample_rate, batch, n=batch * (steps + 2))
    timer = StepTimer()
    trainer = L.Trainer(accelerator="gpu", devices=1, precision=cfg["trainer"].get("precision", "32"),
                        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], gradient_clip_val=1.0)
    with kernels.use(backend):
        trainer.fit(task, datamodule=dm)
    return timer.times[5:]  # the first steps compile kernels and warm the allocator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=str(ROOT / "configs/speech_commands_12.yaml"))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    times: dict[str, list[float]] = {"auto": [], "torch": []}
    for _ in range(args.repeats):
        for backend in ("auto", "torch"):
            times[backend] += run(cfg, backend, args.steps, args.batch)
            print(backend, f"{median(times[backend]) * 1e3:.1f} ms/step so far", flush=True)
    resolved = {op: kernels.resolve(op, torch.device("cuda")).name for op in ("ssd_scan", "gated_rms_norm")}
    res = {"benchmark": "gpu_train", "machine": machine(), "config": args.config, "batch": args.batch,
           "steps_per_run": args.steps, "auto_resolves_to": resolved,
           "auto_ms_per_step": median(times["auto"]) * 1e3, "torch_ms_per_step": median(times["torch"]) * 1e3,
           "speedup": median(times["torch"]) / median(times["auto"]), "step_times_s": times}
    print(f"auto ({resolved}): {res['auto_ms_per_step']:.1f} ms/step; torch: {res['torch_ms_per_step']:.1f} ms/step; "
          f"speedup {res['speedup']:.2f}x")
    write_result("gpu_train", res)


if __name__ == "__main__":
    main()
