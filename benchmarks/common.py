"""Shared benchmark plumbing: machine description, timing, result files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    return info


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def write_result(name: str, payload: dict, out_dir: str | Path | None = None) -> Path:
    """``payload`` as ``<out_dir>/<name>_<date>.json`` (out_dir: benchmarks/results unless given)."""
    out = RESULTS if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d")
    path = out / f"{name}_{stamp}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def default_bundle(explicit: str | None, tmp: Path, config: str | None = None) -> tuple[str, str]:
    """The bundle a benchmark times: ``explicit`` (must be a bundle), else with ``config`` that config's
    architecture with random weights, else artifacts/kws_default if `make train` wrote it, else the
    configs/kws_default.yaml architecture with random weights; random weights are saved under ``tmp``
    (speed does not depend on the weights). Returns (bundle directory, description)."""
    import yaml

    from ssm_signal import save_bundle
    from ssm_signal.models import ModelConfig, SignalModel

    root = Path(__file__).resolve().parents[1]
    path = Path(explicit) if explicit else root / "artifacts" / "kws_default"
    if (explicit or config is None) and (path / "model.safetensors").is_file():
        return str(path), f"trained bundle {path}"
    if explicit:
        raise SystemExit(f"{explicit} is not a bundle")
    config = config or "configs/kws_default.yaml"
    cfg = yaml.safe_load((root / config).read_text())["model"]["network"]
    labels = [f"class{i}" for i in range(cfg["head"]["num_classes"] - 2)] + ["_silence_", "_unknown_"]
    model = SignalModel(ModelConfig.from_dict({**cfg, "labels": labels})).eval()
    name = Path(config).stem
    return str(save_bundle(model, tmp / name, name=f"{name}_random")), f"{config} architecture, random weights"
