"""Serving on one GPU: how many real-time streams (100 frames/s each) the CUDA-graph StreamPool step sustains.

    python benchmarks/bench_gpu_serving.py [--bundle artifacts/kws_default] [--slots 16384 65536 131072] [--unfused]
        [--inputs float32 pcm16]

For each slot count, the StreamPool's CUDA-graph runner (``ssm_signal.streaming.runners.CudaGraphRunner``:
the whole frame step of the default keyword model, log-mel frontend included, compiled by Inductor
and captured as CUDA graphs, replayed per tick; ``--unfused``: the eager ops captured) advances the slots by one 10 ms frame per tick. Two masks: every slot active (the
unmasked graph: a busy server where every stream has its frame) and 90% active (the masked graph: 10% of
the streams wait for audio). A tick is timed two ways:

- device: the graph replay alone (CUDA events), i.e. the model's work on the GPU;
- end to end: ``runner.step``: the frames copied in from pinned host memory, the replay, the
  per-stream outputs copied back to the host (wall clock, synchronised).

Each slot count is measured with float32 frames and with int16 PCM frames (``pcm16``: what clients
send; half the bytes to copy in, scaled inside the graph), each its own runner.

A slot count is sustained in real time when the tick's p99 stays under the frame period (10 ms).
Per-stream host work of ``StreamPool.run`` (resampling, FIFOs, event detection in Python) is not in
these figures: at this scale a server feeds the runner batched frames; the CPU pool benchmark
(bench_streaming.py) measures that path. Writes benchmarks/results/gpu_serving[_unfused]_<date>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import default_bundle, machine, percentile, write_result  # noqa: E402

from ssm_signal import kernels, load_bundle  # noqa: E402
from ssm_signal.streaming.runners import CudaGraphRunner  # noqa: E402

FRAME_PERIOD_MS = 10.0


def measure(model, slots: int, ticks: int, fuse: bool, pcm16: bool = False) -> dict:
    dev = torch.device("cuda")
    torch._dynamo.reset()  # a fresh compilation per slot count: never the recompilation limit
    t0 = time.perf_counter()
    runner = CudaGraphRunner(model, slots, dev, fuse=fuse, pcm16=pcm16)
    build_s = time.perf_counter() - t0
    hop = model.samples_per_frame
    host = [torch.randn(slots, hop, 1).mul_(0.1) for _ in range(4)]  # rotating inputs
    host = [(x * 32768).round().clamp(-32768, 32767).to(torch.int16) if pcm16 else x for x in host]
    host = [x.pin_memory() for x in host]
    masks = {"all": torch.ones(slots, dtype=torch.bool).pin_memory(),  # every slot has its frame
             "masked": (torch.rand(slots) < 0.9).pin_memory()}  # 10% of the streams wait for audio
    out = {"slots": slots, "fused": fuse, "pcm16": pcm16, "build_s": build_s}
    for name, active in masks.items():
        for i in range(10):
            runner.step(host[i % 4], active)
        # device-only: replays of the graph that step() picks, timed with events
        graph = runner.graphs[name == "masked"]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        dev_ms = []
        for _ in range(ticks):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            dev_ms.append(start.elapsed_time(end))
        # end to end: host frames in, outputs out
        e2e_ms = []
        for i in range(ticks):
            torch.cuda.synchronize()
            t = time.perf_counter()
            y = runner.step(host[i % 4], active)
            e2e_ms.append((time.perf_counter() - t) * 1e3)
        assert y.shape[0] == slots and torch.isfinite(y).all()
        out.update({f"{name}_device_p50_ms": percentile(dev_ms, 50), f"{name}_device_p99_ms": percentile(dev_ms, 99),
                    f"{name}_e2e_p50_ms": percentile(e2e_ms, 50), f"{name}_e2e_p99_ms": percentile(e2e_ms, 99),
                    f"{name}_realtime_e2e": percentile(e2e_ms, 99) <= FRAME_PERIOD_MS})
    out["state_bytes_per_stream"] = sum(t.numel() * t.element_size() for t in runner.state.tensors()) / slots
    del runner
    torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bundle", default=None, help="bundle directory (default artifacts/kws_default or random)")
    p.add_argument("--slots", type=int, nargs="+", default=[1024, 16384, 49152, 57344, 65536, 81920, 98304, 131072])
    p.add_argument("--ticks", type=int, default=200)
    p.add_argument("--unfused", action="store_true", help="capture the eager ops (CudaGraphRunner(fuse=False))")
    p.add_argument("--inputs", nargs="+", choices=["float32", "pcm16"], default=["float32", "pcm16"],
                   help="frame formats handed to the runner, each measured at every slot count")
    args = p.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path, which = default_bundle(args.bundle, Path(tmp))
        model = load_bundle(path, device="cuda").model
    rows = []
    with torch.inference_mode():
        for n in args.slots:
            for kind in args.inputs:
                try:
                    r = measure(model, n, args.ticks, fuse=not args.unfused, pcm16=kind == "pcm16")
                except torch.OutOfMemoryError as e:
                    r = {"slots": n, "pcm16": kind == "pcm16", "error": f"out of memory: {e}"[:200]}
                rows.append(r)
                print(r, flush=True)
    best = {f"{name}_{kind}": max([r["slots"] for r in rows if r.get(f"{name}_realtime_e2e")
                                   and r["pcm16"] == (kind == "pcm16")], default=0)
            for name in ("all", "masked") for kind in args.inputs}
    res = {"benchmark": "gpu_serving", "machine": machine(), "model": which, "fused": not args.unfused,
           "ops": {op: kernels.resolve(op, torch.device("cuda")).name for op in ("ssd_step_inplace", "gated_rms_norm")},
           "frame_period_ms": FRAME_PERIOD_MS, "rows": rows,
           "max_realtime_streams": best,
           "note": "end-to-end tick p99 under the 10 ms frame period; host-side per-stream Python work not included; "
                   "pcm16: int16 frames copied in and scaled inside the graph"}
    print(f"real-time streams sustained (end-to-end tick p99 <= 10 ms; all = every stream with a frame, masked = "
          f"10% waiting): {best} (largest tried {max(args.slots)})")
    for r in rows:
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()})
    write_result("gpu_serving" + ("_unfused" if args.unfused else ""), res)


if __name__ == "__main__":
    main()
