"""Real-time streaming on one CPU thread: per-chunk latency, real-time factor, StreamPool capacity,
memory over a long stream.

    python benchmarks/bench_streaming.py [--quick] [--model artifacts/kws_default]

The default keyword model (artifacts/kws_default if present, else the configs/kws_default.yaml
architecture with random weights: latency does not depend on the weights).

1. StreamingSession latency: chunks of 10, 20 and 100 ms pushed one after another, at the model's
   16 kHz and at a microphone's 48 kHz (causal resampling included); p50/p95/p99 of the wall time
   per push and the real-time factor (processing time / audio time), for the step compiled ahead
   of time (AOTInductor, the CPU default), the torch.compile'd step and the eager twin.
   Targets: RTF <= 0.05 at 20 ms chunks, p99 <= 5 ms.
2. StreamPool: N streams each pushing 20 ms (two 10 ms frames) per round, one batched model call
   per tick; the wall time per round against the 20 ms of audio it carries. Streams one core
   sustains = the largest N whose round takes at most 20 ms (target >= 50).
3. Memory: a long stream (an hour in 1 s chunks; --quick: 2 minutes) through one session; the
   resident set size along the way and its peak.

Writes benchmarks/results/streaming_<date>.json (machine, device and date included).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import default_bundle, machine, percentile, write_result  # noqa: E402

from ssm_signal import load_bundle  # noqa: E402
from ssm_signal.streaming import StreamConfig, StreamEngine, StreamingSession, StreamPool  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def audio(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Speech-band noise with a syllable-rate envelope, int16 (what a microphone delivers)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = 0.1 * rng.standard_normal(n) * (0.3 + 0.7 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def session_latency(engine: StreamEngine, rate: int, chunk_ms: float, seconds: float) -> dict:
    s = StreamingSession.from_engine(engine)
    n = int(rate * chunk_ms / 1000)
    x = audio(seconds + 1.0, rate)
    for i in range(0, rate, n):  # one second of warm-up (allocator, caches)
        s.push(x[i:i + n], rate)
    times = []
    for i in range(rate, len(x) - n + 1, n):
        t0 = time.perf_counter()
        s.push(x[i:i + n], rate)
        times.append(time.perf_counter() - t0)
    ms = [t * 1e3 for t in times]
    return {"rate": rate, "chunk_ms": chunk_ms, "chunks": len(times), "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99), "max_ms": max(ms),
            "rtf": sum(times) / (len(times) * chunk_ms / 1000)}


def pool_round_time(bundle, streams: int, rounds: int, runner: str) -> dict:
    """Wall time for all streams to push 20 ms and the pool to process it (2 ticks, 1 batched call each)."""
    pool = StreamPool(bundle, slots=streams, runner=runner, config=StreamConfig(compile=runner == "compiled"))
    ids = [pool.add() for _ in range(streams)]
    x = audio(0.02 * (rounds + 20), 16000)
    n = 320
    times = []
    for r in range(rounds + 20):
        t0 = time.perf_counter()
        for sid in ids:
            pool.push(sid, x[r * n:(r + 1) * n], 16000)
        ups = pool.run()
        if r >= 20:  # the first rounds compile and warm up
            times.append(time.perf_counter() - t0)
        assert len(ups) == streams and all(u.n_frames == 2 for u in ups.values())
    ms = [t * 1e3 for t in times]
    return {"streams": streams, "runner": runner, "rounds": rounds, "round_p50_ms": percentile(ms, 50),
            "round_p95_ms": percentile(ms, 95), "round_mean_ms": float(np.mean(ms)),
            "rtf": float(np.mean(times)) / 0.02, "per_stream_frame_us": float(np.mean(times)) / (2 * streams) * 1e6}


def long_stream_memory(engine: StreamEngine, seconds: float, chunk_s: float = 1.0) -> dict:
    s = StreamingSession.from_engine(engine)
    rate = 16000
    seg = audio(60.0, rate, seed=1)
    n = int(chunk_s * rate)
    marks, t0, pushed = [], time.perf_counter(), 0
    base = rss_mb()
    while pushed < seconds * rate:
        i = pushed % len(seg)
        s.push(seg[i:i + n] if i + n <= len(seg) else np.concatenate([seg[i:], seg[:n - (len(seg) - i)]]), rate)
        pushed += n
        if pushed % (60 * rate) == 0:
            marks.append({"stream_s": pushed / rate, "rss_mb": round(rss_mb(), 1)})
    wall = time.perf_counter() - t0
    return {"stream_s": pushed / rate, "chunk_s": chunk_s, "wall_s": wall, "rtf": wall / (pushed / rate),
            "rss_start_mb": round(base, 1), "rss_end_mb": round(rss_mb(), 1), "rss_marks": marks,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "state_bytes": s.state.nbytes()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run (seconds instead of minutes)")
    p.add_argument("--model", default=None, help="bundle directory (default artifacts/kws_default or random)")
    p.add_argument("--name", default="streaming", help="result file name prefix")
    p.add_argument("--modes", default="aot,jit,eager", help="session step modes to measure")
    p.add_argument("--pool-sizes", default=None, help="comma-separated stream counts ('' = skip the pool)")
    p.add_argument("--memory-seconds", type=float, default=None, help="length of the memory run (default 3600)")
    p.add_argument("--cache", default=None, help="directory for compiled steps (SSM_SIGNAL_CACHE_DIR)")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.cache:
        os.environ["SSM_SIGNAL_CACHE_DIR"] = a.cache
    tmp = Path(tempfile.mkdtemp())
    path, weights = default_bundle(a.model, tmp)
    bundle = load_bundle(path)
    seconds = 3.0 if a.quick else 30.0
    info = machine()
    if info["device"] != "cpu":  # a GPU host: this benchmark still measures its CPU only
        info["gpu_present"], info["device"] = info["device"], "cpu"
    result = {"machine": info, "threads": 1, "model": weights, "quick": a.quick, "session": [], "pool": []}

    for mode in a.modes.split(","):
        engine = StreamEngine(bundle, config=StreamConfig(compile=mode))
        t = engine.warm_up()
        print(f"[session] step={engine.mode}: warm-up {t:.1f} s")
        for rate in (16000, 48000):
            for chunk_ms in (10, 20, 100):
                r = {"step": engine.mode, **session_latency(engine, rate, chunk_ms, seconds)}
                result["session"].append(r)
                print(f"  {rate:>5} Hz {chunk_ms:>4} ms chunks: p50 {r['p50_ms']:.2f}  p95 {r['p95_ms']:.2f}  "
                      f"p99 {r['p99_ms']:.2f} ms   RTF {r['rtf']:.4f}")
    name = a.name + ("_quick" if a.quick else "")
    write_result(name, result)  # after each part, so a cut-off run still leaves its numbers

    rounds = 30 if a.quick else 200
    sizes = [int(n) for n in a.pool_sizes.split(",") if n] if a.pool_sizes is not None else (
        [16, 64] if a.quick else [16, 32, 64, 96, 128, 192])
    for n in sizes:
        r = pool_round_time(bundle, n, rounds, "compiled")
        result["pool"].append(r)
        print(f"[pool] {n:>4} streams: round p50 {r['round_p50_ms']:.2f} ms (20 ms of audio), RTF {r['rtf']:.3f}, "
              f"{r['per_stream_frame_us']:.0f} us per stream-frame")
    if result["pool"]:
        ok = [r["streams"] for r in result["pool"] if r["round_p95_ms"] <= 20.0]
        best = max(result["pool"], key=lambda r: r["streams"] / r["rtf"])
        result["pool_streams_sustained"] = max(ok) if ok else 0
        result["pool_streams_extrapolated"] = int(best["streams"] / best["rtf"])
        print(f"[pool] sustained on one core: {result['pool_streams_sustained']} streams measured "
              f"(~{result['pool_streams_extrapolated']} extrapolated from the per-stream cost)")
        write_result(name, result)

    engine = StreamEngine(bundle, config=StreamConfig(compile=a.modes.split(",")[0]))
    mem = long_stream_memory(engine, a.memory_seconds or (120.0 if a.quick else 3600.0))
    result["memory"] = mem
    print(f"[memory] {mem['stream_s']:.0f} s stream in {mem['chunk_s']:g} s chunks: RSS {mem['rss_start_mb']} -> "
          f"{mem['rss_end_mb']} MB, peak {mem['peak_rss_mb']} MB, state {mem['state_bytes']} bytes, RTF {mem['rtf']:.4f}")
    write_result(name, result)


if __name__ == "__main__":
    main()
