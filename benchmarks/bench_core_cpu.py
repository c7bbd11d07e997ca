"""Core CPU benchmarks (issue: ssm_signal core). Run: `make bench` or
`python benchmarks/bench_core_cpu.py [--quick]`.

For 4-layer stacks at d_model 64, Mamba and Mamba2 (their default d_state, 16 and 128):
1. training forward+backward, `torch` vs `reference` backend, B=16, L=1000 (2 threads);
2. per-time-step latency at B=1 on one thread: eager step and compiled step, p50/p99;
3. chunked streaming (chunks of 10 steps) vs the step loop: throughput ratio;
4. state bytes per stream.
Medians of repeated runs, both variants timed side by side in the same process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, percentile, timed, write_result  # noqa: E402

from ssm_signal import kernels  # noqa: E402
from ssm_signal.compile import compile_step  # noqa: E402
from ssm_signal.layers import Backbone  # noqa: E402


def training(kind: str, B: int, L: int, repeats: int) -> dict:
    torch.set_num_threads(2)
    model = Backbone(64, [kind] * 4)
    x = torch.randn(B, L, 64)

    def run(backend):
        def f():
            with kernels.use(backend):
                y, _ = model(x)
                y.square().mean().backward()
        return f

    out = {}
    # interleave so both variants see the same machine load
    t_torch, t_ref = [], []
    run("torch")()  # warm-up
    for _ in range(repeats):
        t_torch += timed(run("torch"), 1, warmup=0)
        t_ref += timed(run("reference"), 1, warmup=0)
    out["torch_s"] = median(t_torch)
    out["reference_s"] = median(t_ref)
    out["speedup"] = out["reference_s"] / out["torch_s"]
    out["runs"] = {"torch": t_torch, "reference": t_ref}
    return out


def step_latency(kind: str, n: int) -> dict:
    torch.set_num_threads(1)
    model = Backbone(64, [kind] * 4).eval()
    compiled = compile_step(model)
    x = torch.randn(1, 64)
    res = {}
    with torch.inference_mode():
        for name, fn in (("eager", model._step), ("compiled", compiled)):
            s = model.init_state(1)
            for _ in range(50):
                _, s = fn(x, s)
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                _, s = fn(x, s)
                ts.append(time.perf_counter() - t)
            res[name] = {"p50_ms": percentile(ts, 50) * 1e3, "p99_ms": percentile(ts, 99) * 1e3}
        # throughput: chunks of 10 steps through forward vs the step loop
        xs = torch.randn(1, 1000, 64)

        def chunked():
            s = model.init_state(1)
            for i in range(0, 1000, 10):
                _, s = model._forward(xs[:, i:i + 10], s)

        def stepped(fn):
            def f():
                s = model.init_state(1)
                for i in range(1000):
                    _, s = fn(xs[:, i], s)
            return f

        t_chunk = median(timed(chunked, 5))
        t_step = median(timed(stepped(model._step), 3))
        t_comp = median(timed(stepped(compiled), 5))
    res["steps_per_s"] = {"chunks_of_10": 1000 / t_chunk, "step_eager": 1000 / t_step, "step_compiled": 1000 / t_comp}
    res["chunk10_over_step_eager"] = t_step / t_chunk
    res["chunk10_over_step_compiled"] = t_comp / t_chunk
    res["state_bytes_per_stream"] = model.init_state(1).nbytes()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repeats and a shorter L (smoke run)")
    args = p.parse_args()
    L, reps, n = (200, 1, 200) if args.quick else (1000, 3, 2000)
    result = {"benchmark": "core_cpu", "machine": machine(), "config": {"d_model": 64, "layers": 4, "B": 16, "L": L}}
    for kind in ("mamba", "mamba2"):
        print(f"== {kind}", flush=True)
        result[kind] = {"training_fwd_bwd": training(kind, 16, L, reps), "streaming": step_latency(kind, n)}
        tr, st = result[kind]["training_fwd_bwd"], result[kind]["streaming"]
        print(f"  train fwd+bwd B16 L{L}: torch {tr['torch_s']:.3f}s  reference {tr['reference_s']:.3f}s"
              f"  speedup {tr['speedup']:.1f}x")
        print(f"  step B1 1 thread: eager p50 {st['eager']['p50_ms']:.3f} ms p99 {st['eager']['p99_ms']:.3f} ms;"
              f" compiled p50 {st['compiled']['p50_ms']:.3f} ms p99 {st['compiled']['p99_ms']:.3f} ms")
        print(f"  chunks of 10 vs step loop: {st['chunk10_over_step_eager']:.1f}x (eager),"
              f" {st['chunk10_over_step_compiled']:.1f}x (compiled); state {st['state_bytes_per_stream']} B/stream")
    if not args.quick:
        write_result("core_cpu", result)


if __name__ == "__main__":
    main()
