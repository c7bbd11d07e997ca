"""The streaming step outside PyTorch: the ONNX export (float32 and int8, onnxruntime) against the torch
step compiled ahead of time (AOTInductor, the CPU default of a StreamingSession), on one CPU thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_onnx.py [--model artifacts/kws_default | --config configs/kws_logmel.yaml]
        [--export DIR] [--quick]

The default keyword model (artifacts/kws_default if present, else the configs/kws_default.yaml
architecture with random weights: speed does not depend on the weights). Side by side in one run,
each variant in turn within every round (so a busy machine's slow spells fall on all of them):

1. per 10 ms frame, the model step alone: torch eager ``model._step`` (the reference twin), the torch
   AOT step, and the ONNX frame graph (float32, int8) through ``ssm_signal.runtime``'s GraphRunner
   (``InferenceSession.run``, the state fed back each call) and its FrameLoop (the state bound to
   onnxruntime once, as a session steps one-frame pushes); the chunk graph per frame at 2 to 100
   frames per call (``CHUNK_FRAMES``); and both graphs' nodes after onnxruntime's optimisations, by operator;
2. per pushed chunk, a whole session (input rules, resampling, framing, the step, scores, detector):
   ``StreamingSession`` (AOT) and ``OnnxSession`` (float32, int8), 10 ms chunks at 16 kHz, 20 ms
   chunks at 48 kHz and 100 ms chunks at 16 kHz (the chunk graph's);
3. what int8 buys per product: one Gemm of the model's shapes and wider ones, float32 against
   onnxruntime's dynamic quantization (the rule ``pipelines.export.quantize`` follows);
4. start-up, each in a fresh process: the ONNX session (import of ``ssm_signal.runtime``, load, first
   frame) and the torch session with the AOT step (import, bundle load, compilation into an empty cache,
   first frame; then again with the cache warm).

Where the AOT step cannot be built (its verifying child process crashes, as it does on a CUDA build of torch
on some GPU hosts: ``ssm_signal.streaming.step.AOTStep``), the torch step a session then falls back to,
``torch.compile``'s, is timed in its place (``torch_jit``), and the JSON names the failure
(``torch_aot_unavailable``).

Medians over every call of every round (p90 beside). One intra-op thread everywhere. Writes
benchmarks/results/onnx_<date>.json with the machine, the load average before and after, and the
graphs' file sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.shape_inference
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import default_bundle, machine, percentile, write_result  # noqa: E402

from pipelines.export import export_onnx  # noqa: E402
from ssm_signal import load_bundle  # noqa: E402
from ssm_signal.runtime import OnnxModel, OnnxSession, RuntimeConfig, read_sidecar  # noqa: E402
from ssm_signal.streaming import StreamConfig, StreamingSession  # noqa: E402
from ssm_signal.streaming.step import aot_step, compiled  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


AOT_FAILURES: list[str] = []


def log_aot_failure(e: Exception) -> None:
    """Record that the AOT step could not be built here (the result JSON says so, and what ran instead)."""
    last = (str(e).strip().splitlines() or [""])[-1]  # a child's traceback ends with its error
    msg = f"{type(e).__name__}: {last[:300]}"
    AOT_FAILURES.append(msg)
    print(f"torch AOT step unavailable ({msg}); timing torch.compile's step instead", file=sys.stderr)


def stats(ts: list[float], per: int = 1) -> dict:
    """Milliseconds per unit (``per`` units per call): median and p90 of the calls."""
    ms = [t * 1e3 / per for t in ts]
    return {"median_ms": round(float(np.median(ms)), 4), "p90_ms": round(percentile(ms, 90), 4), "calls": len(ms)}


def per_call(fn, items) -> list[float]:
    """Seconds of each ``fn(item)``."""
    out = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        out.append(time.perf_counter() - t)
    return out


# frames per call of the chunk graph: where it overtakes the frame graph (RuntimeConfig.min_chunk_frames), live
# pushes of 100 ms, the SSD's chunk (25 frames in the keyword configs), a second
CHUNK_FRAMES = (2, 4, 6, 8, 10, 25, 100)


def frame_steps(bundle, export: Path, rounds: int, n: int, baseline: Path | None = None) -> dict:
    """Per-frame times of every step variant, the variants interleaved round by round; ``baseline``, another
    export of the same bundle (e.g. by an earlier exporter), timed beside them through its FrameLoop."""
    model = bundle.model.eval()
    hop = model.samples_per_frame
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((n + 200) * hop)).astype(np.float32)
    frames = [torch.from_numpy(audio[i * hop:(i + 1) * hop]).reshape(1, hop, 1) for i in range(n)]

    with torch.inference_mode():
        state0 = model.init_state(1)
    try:
        aot = aot_step(model, 1)
    except RuntimeError as e:  # the compiled package crashed its verifying child (docs/performance.md): a
        aot = None             # session then runs torch.compile's step, which is what is timed below instead
        log_aot_failure(e)
    runners = {p: OnnxModel(export, RuntimeConfig(precision=p)) for p in ("float32", "int8")}
    if baseline is not None:
        runners["baseline"] = OnnxModel(baseline, RuntimeConfig(precision="float32"))

    def torch_eager():
        st = [state0]

        def one(f):
            _, st[0] = model._step(f, st[0])
        with torch.inference_mode():
            return per_call(one, frames)

    def torch_aot():
        flat = [list(aot.flat(state0))]

        def one(f):
            _, flat[0] = aot.step_flat(f, flat[0])
        with torch.inference_mode():
            return per_call(one, frames)

    def torch_jit():
        step, st = compiled(model, "frame"), [state0]

        def one(f):
            _, st[0] = step(f, st[0])
        with torch.inference_mode():
            return per_call(one, frames)

    def onnx_frame(p: str):
        def run():
            m = runners[p]
            st = [m.init_model_state(1)]

            def one(x):
                _, st[0] = m.frame(x, st[0])
            return per_call(one, [f.numpy() for f in frames])
        return run

    def onnx_loop(p: str):
        def run():
            m = runners[p]
            loop, st = m.frame_loop(), [m.init_model_state(1)]

            def one(x):
                _, st[0] = loop(x, st[0])
            return per_call(one, [f.numpy() for f in frames])
        return run

    def onnx_chunk(p: str, T: int):
        def run():
            m = runners[p]
            st = [m.init_model_state(1)]
            x = audio[:n * hop].reshape(1, -1, 1)

            def one(s):
                _, st[0] = m.chunk(x[:, s * hop:(s + T) * hop], st[0])
            return per_call(one, range(0, n - T + 1, T))
        return run

    variants = {"torch_eager": (torch_eager, 1), **({"torch_aot": (torch_aot, 1)} if aot else {"torch_jit": (torch_jit, 1)}),
                "onnx_float32_frame": (onnx_frame("float32"), 1), "onnx_int8_frame": (onnx_frame("int8"), 1),
                "onnx_float32_frame_loop": (onnx_loop("float32"), 1), "onnx_int8_frame_loop": (onnx_loop("int8"), 1),
                **{f"onnx_{p}_chunk{T}": (onnx_chunk(p, T), T) for T in CHUNK_FRAMES for p in ("float32", "int8")}}
    if baseline is not None:
        variants["baseline_float32_frame_loop"] = (onnx_loop("baseline"), 1)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn, _ in variants.values():  # warm-up: allocations, first-call paths
        fn()
    for _ in range(rounds):
        for k, (fn, _) in variants.items():
            times[k] += fn()
    return {k: stats(times[k], per) for k, (_, per) in variants.items()}


def graph_nodes(export: Path, graph: str = "frame") -> dict:
    """A graph's nodes after onnxruntime's optimisations (the level the runtime uses), by operator."""
    out = {}
    for p in ("float32", "int8"):
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
            opts.log_severity_level = 3
            ort.InferenceSession(str(read_sidecar(export).graph_path(graph, p)), opts,
                                 providers=["CPUExecutionProvider"])
            ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
        out[p] = {"nodes": len(ops), "by_op": dict(sorted(((o, ops.count(o)) for o in set(ops)), key=lambda kv: -kv[1]))}
    return out


def int8_products(shapes: list[tuple[int, int]], repeats: int, calls: int) -> dict:
    """Per product (input width K -> N outputs, one row), float32 Gemm against the same Gemm dynamically
    quantized (int8 weights per output channel, the input quantized per call): 20 such products of one
    input per graph, so the call's own cost divides out."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    h, rng, out = onnx.helper, np.random.default_rng(0), {}
    for K, N in shapes:
        nodes = [h.make_node("Gemm", ["x", f"w{i}"], [f"y{i}"], transB=1) for i in range(20)]
        graph = h.make_graph(nodes, "products", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, K])],
                             [h.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, [1, N]) for i in range(20)],
                             initializer=[onnx.numpy_helper.from_array(
                                 (0.1 * rng.standard_normal((N, K))).astype(np.float32), f"w{i}") for i in range(20)])
        model = onnx.shape_inference.infer_shapes(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]))
        x = rng.standard_normal((1, K)).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            f, q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
            onnx.save(model, f)
            # "MatMul" too: the quantizer rewrites each Gemm as a MatMul (and an Add) before it quantizes
            quantize_dynamic(str(f), str(q), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"])
            if [n.op_type for n in onnx.load(str(q)).graph.node].count("MatMulInteger") != 20:
                raise RuntimeError(f"int8_products: the {K}x{N} products were not all quantized")
            sessions = {}
            for name, path in (("float32", f), ("int8", q)):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
                sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            times = {k: [] for k in sessions}
            for _ in range(repeats):
                for k, sess in sessions.items():
                    times[k] += per_call(lambda _, s=sess, x=x: s.run(None, {"x": x}), range(calls))
        us = {k: float(np.median(v)) * 1e6 / 20 for k, v in times.items()}
        out[f"{K}x{N}"] = {"float32_us": round(us["float32"], 3), "int8_us": round(us["int8"], 3),
                           "int8_minus_float32_us": round(us["int8"] - us["float32"], 3)}
    return out


def sessions(bundle, export: Path, rounds: int, seconds: float) -> dict:
    """Per pushed chunk, whole sessions: torch (AOT step) and ONNX (float32, int8)."""
    rng = np.random.default_rng(1)
    out = {}
    for rate, chunk_ms in ((16000, 10), (48000, 20), (16000, 100)):
        n = int(rate * chunk_ms / 1000)
        x = (np.clip(0.1 * rng.standard_normal(int(seconds * rate)), -1, 1) * 32767).astype(np.int16)
        chunks = [x[i:i + n] for i in range(0, len(x) - n + 1, n)]
        torch_engine = StreamingSession(bundle, config=StreamConfig(compile="aot")).engine
        torch_engine.warm_up(rates=(rate,))
        models = {p: OnnxModel(export, RuntimeConfig(precision=p)) for p in ("float32", "int8")}

        # the engine's own fallback where the AOT step cannot be built: "torch_jit_session" then
        makers = {f"torch_{torch_engine.mode}_session": lambda e=torch_engine: StreamingSession.from_engine(e),
                  "onnx_float32_session": lambda m=models["float32"]: OnnxSession(m),
                  "onnx_int8_session": lambda m=models["int8"]: OnnxSession(m)}
        times = {k: [] for k in makers}
        for mk in makers.values():
            per_call(lambda c, s=mk(), r=rate: s.push(c, r), chunks)  # warm-up
        for _ in range(rounds):
            for k, mk in makers.items():
                times[k] += per_call(lambda c, s=mk(), r=rate: s.push(c, r), chunks)
        out[f"{chunk_ms}ms_at_{rate}"] = {k: stats(v) | {"per_10ms_audio_ms": round(
            float(np.median(v)) * 1e3 * 10 / chunk_ms, 4)} for k, v in times.items()}
    return out


_ONNX_START = r"""
import time, sys
t0 = time.perf_counter()
import numpy as np
from ssm_signal.runtime import OnnxModel, RuntimeConfig
t1 = time.perf_counter()
m = OnnxModel(sys.argv[1], RuntimeConfig(precision=sys.argv[2]))
t2 = time.perf_counter()
m.frame(np.zeros((1, m.samples_per_frame, m.in_channels), np.float32), m.init_model_state(1))
t3 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {t3 - t2}")
"""

_TORCH_START = r"""
import time, sys
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
from ssm_signal import load_bundle
from ssm_signal.streaming.step import aot_step
t1 = time.perf_counter()
b = load_bundle(sys.argv[1])
t2 = time.perf_counter()
step = aot_step(b.model, 1)
with torch.inference_mode():
    step(torch.zeros(1, b.model.samples_per_frame, b.model.in_channels), b.model.init_state(1))
t3 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {t3 - t2}")
"""


def startup(model_dir: str, export: Path, repeats: int) -> dict:
    """Fresh processes: seconds to import, load, and run the first frame (ONNX); and for the torch AOT
    step the same with the compilation into an empty cache (cold) and from the cache (warm)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(code: str, args: list[str], extra: dict | None = None) -> dict:
        r = subprocess.run([sys.executable, "-c", code, *args], env={**env, **(extra or {})}, capture_output=True,
                           text=True, timeout=1800)
        if r.returncode:
            raise RuntimeError(r.stderr[-2000:])
        imp, load, first = (float(v) for v in r.stdout.split()[-3:])
        return {"import_s": imp, "load_s": load, "first_frame_s": first, "load_and_first_frame_s": load + first,
                "total_s": imp + load + first}

    def median_of(runs: list[dict]) -> dict:
        return {k: round(float(np.median([r[k] for r in runs])), 4) for k in runs[0]}

    out = {p: median_of([run(_ONNX_START, [str(export), p]) for _ in range(repeats)]) for p in ("float32", "int8")}
    with tempfile.TemporaryDirectory() as cache:
        try:
            cold = run(_TORCH_START, [model_dir], {"SSM_SIGNAL_CACHE_DIR": cache})
            warm = median_of([run(_TORCH_START, [model_dir], {"SSM_SIGNAL_CACHE_DIR": cache}) for _ in range(repeats)])
        except RuntimeError as e:  # the AOT step cannot be built on this host (see log_aot_failure)
            log_aot_failure(e)
            return {"onnx_float32": out["float32"], "onnx_int8": out["int8"], "torch_aot": {"error": AOT_FAILURES[-1]}}
    return {"onnx_float32": out["float32"], "onnx_int8": out["int8"],
            "torch_aot_cold_cache": {k: round(v, 4) for k, v in cold.items()}, "torch_aot_warm_cache": warm}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="bundle (default: artifacts/kws_default, else the default architecture)")
    p.add_argument("--config", default=None,
                   help="time this config's architecture with random weights instead (e.g. configs/kws_logmel.yaml)")
    p.add_argument("--export", default=None, help="its ONNX export (default: exported into a temporary folder)")
    p.add_argument("--baseline", default=None,
                   help="another ONNX export of the same bundle, timed beside it (its float32 FrameLoop)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and frames")
    p.add_argument("--note", default="a shared 2-core machine: other jobs ran during the measurement",
                   help="what else the machine was doing, recorded with the result")
    a = p.parse_args()
    torch.set_num_threads(1)
    rounds, n, seconds, repeats = (2, 300, 3.0, 2) if a.quick else (5, 2000, 10.0, 5)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, described = default_bundle(a.model, Path(tmp), a.config)
        bundle = load_bundle(model_dir)
        export = Path(a.export) if a.export else Path(tmp) / "onnx"
        if not (export / "model.json").is_file() or read_sidecar(export).fingerprint != bundle.fingerprint:
            export_onnx(bundle, export)
        sc = read_sidecar(export)
        sizes = {f: (export / f).stat().st_size for g in sc.graphs.values() for f in g.values()}
        t0 = time.time()
        baseline = Path(a.baseline) if a.baseline else None
        steps = frame_steps(bundle, export, rounds, n, baseline)
        nodes = graph_nodes(export) | ({"baseline": graph_nodes(baseline)} if baseline else {})
        chunk_nodes = graph_nodes(export, "chunk") | {"form": sc.raw["graphs"]["chunk"].get("form", "scan")}
        products = int8_products([(40, 64), (64, 292), (128, 64), (64, 22), (292, 64), (384, 64), (256, 1024),
                                  (1024, 256)], rounds, 400 if a.quick else 1000)
        sess = sessions(bundle, export, rounds, seconds)
        start = startup(model_dir, export, repeats)
    payload = {
        "machine": machine() | {"onnxruntime": ort.__version__, "threads": 1,
                                "load_average_before": [round(x, 2) for x in load_before],
                                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                                "note": a.note},
        "model": {"source": described, "parameters": sum(q.numel() for q in bundle.model.parameters()),
                  "layers": bundle.config.backbone.layers, "d_model": bundle.config.backbone.d_model},
        "targets_ms_per_frame": {"onnx_float32": 0.10, "onnx_int8": 0.06}, "target_startup_s": 0.5,
        "frame_step": steps, "frame_graph_nodes": nodes, "chunk_graph_nodes": chunk_nodes,
        "min_chunk_frames": RuntimeConfig().min_chunk_frames, "int8_products": products, "sessions": sess,
        "startup": start, "file_bytes": sizes, "torch_aot_unavailable": sorted(set(AOT_FAILURES)),
        "seconds": round(time.time() - t0, 1),
    }
    write_result("onnx_quick" if a.quick else "onnx", payload)
    print(json.dumps({k: v["median_ms"] for k, v in steps.items()}, indent=1))
    print(json.dumps({k: v.get("load_and_first_frame_s", v.get("error")) for k, v in start.items()}, indent=1))


if __name__ == "__main__":
    main()
