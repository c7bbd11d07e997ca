"""GPU benchmark of the Triton Mamba-1 scan and the batched step updates (issue 6).

Run on a CUDA machine: `python benchmarks/bench_gpu_scan.py [--out DIR] [--quick]`.

Side by side in one run, each timed as the median of CUDA-event timings (triton.testing.do_bench,
or a plain event loop for calls slower than half a second), after a correctness check:
1. the device-to-device copy bandwidth (bytes read + written), which sets the memory floor, and
   the float32 FFMA and ex2 rates (register-only kernels), which set the arithmetic floor;
2. Mamba-1 selective scan, forward+backward (and forward alone), the `triton` backend vs the
   `torch` backend vs the memory floor, at B=16, L in 1k/4k/16k, d_inner 256/512/1024,
   d_state 16/64, float32 (and bf16 at one shape), after a sweep of launch policies (warps,
   state elements per thread, unrolled steps, pipelining stages) whose winners feed the grid;
3. step updates for many streams (in place on a state pool): streams per second and time per
   tick for 1k..131k streams, Mamba-2 shape of the default keyword model (H=4, P=32;
   d_state 16/32/64) and a Mamba-1 shape (d_inner 128, d_state 16), against mamba_ssm's
   `selective_state_update` where it runs (it is imported through a benchmark-only shim for
   its missing CUDA extension; it fails beyond 65,535 streams per call).

Memory floor of the scan: every input read once and every output written once, forward
(x, dt, z, B, C in; y out) plus backward (x, dt, z, dy, B, C in; dx, ddt, dz, dB, dC out).
Results: benchmarks/results/bench_gpu_scan_<date>.json (GPU name and date inside).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine, write_result  # noqa: E402

from ssm_signal.kernels import reference  # noqa: E402
from ssm_signal.kernels.selective_torch import selective_scan as torch_scan  # noqa: E402
from ssm_signal.kernels.triton import selective_scan as tss  # noqa: E402
from ssm_signal.kernels.triton import state_update as su  # noqa: E402

DEV = "cuda"


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------
def timeit_ms(fn, budget_ms: float = 200.0) -> dict:
    """Median milliseconds of ``fn`` (CUDA events); do_bench for fast calls."""
    import triton.testing

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    est = (time.perf_counter() - t0) * 1e3
    if est < 500:
        ms = triton.testing.do_bench(fn, warmup=max(25, 2 * est), rep=max(budget_ms, 5 * est), return_mode="median")
        return {"ms": ms, "method": "do_bench median"}
    runs = []
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        runs.append(start.elapsed_time(end))
    return {"ms": statistics.median(runs), "method": "median of 3 event timings", "runs": runs}


def copy_bandwidth() -> float:
    """Bytes read + written per second by a large device-to-device copy."""
    n = 1 << 28  # 1 GiB of float32
    a = torch.randn(n, device=DEV)
    b = torch.empty_like(a)
    ms = timeit_ms(lambda: b.copy_(a))["ms"]
    return 2 * n * 4 / (ms * 1e-3)


# ---------------------------------------------------------------------------------------
# Mamba-1 scan
# ---------------------------------------------------------------------------------------
def scan_inputs(Bsz, L, Din, N, dtype=torch.float32):
    x = torch.randn(Bsz, L, Din, device=DEV).to(dtype)
    dt = (torch.randn(Bsz, L, Din, device=DEV) - 2.0).to(dtype)
    A = -torch.arange(1, N + 1, device=DEV, dtype=torch.float32).repeat(Din, 1)  # S4D-Real, as the layer
    B = torch.randn(Bsz, L, N, device=DEV).to(dtype)
    C = torch.randn(Bsz, L, N, device=DEV).to(dtype)
    D = torch.ones(Din, device=DEV)
    z = torch.randn(Bsz, L, Din, device=DEV).to(dtype)
    bias = torch.rand(Din, device=DEV) * 0.5 - 4.0
    h0 = torch.randn(Bsz, Din, N, device=DEV) * 0.1
    return [x, dt, A, B, C, D, z, bias, h0]


def floor_bytes(Bsz, L, Din, N, elem: int) -> dict:
    bld, bln = Bsz * L * Din * elem, Bsz * L * N * elem
    fwd = 4 * bld + 2 * bln  # x, dt, z, B, C in; y out
    bwd = 7 * bld + 4 * bln  # x, dt, z, dy, B, C in; dx, ddt, dz, dB, dC out
    return {"fwd": fwd, "fwd_bwd": fwd + bwd}


def fwd_bwd_fn(scan, args, gy, gh):
    leaves = [a.requires_grad_(True) for a in args]

    def run():
        y, h = scan(*leaves)
        torch.autograd.grad((y, h), leaves, (gy, gh))

    return run


def fwd_fn(scan, args):
    def run():
        with torch.no_grad():
            scan(*args)

    return run


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_against_reference(N: int, L: int = 1024, Din: int = 256, cfg=None) -> dict:
    """float32 triton vs float64 reference at B=2: outputs and gradients (rel. max error)."""
    args = scan_inputs(2, L, Din, N)
    gy = torch.randn(args[0].shape, device=DEV)
    gh = torch.randn(args[8].shape, device=DEV)

    def grads(scan, a):
        leaves = [t.detach().clone().requires_grad_(True) for t in a]
        y, h = scan(*leaves)
        return [y, h, *torch.autograd.grad((y, h), leaves, (gy.to(y.dtype), gh.to(h.dtype)))]

    fast = grads(lambda *a: tss.selective_scan(*a, config=cfg), args)
    ref = grads(reference.selective_scan, [t.double() for t in args])
    names = ["y", "h_L", "x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h0"]
    return {n: rel(a, b) for n, a, b in zip(names, fast, ref, strict=True)}


def scan_row(Bsz, L, Din, N, bw, run_torch: bool, cfg=None, dtype=torch.float32) -> dict:
    args = scan_inputs(Bsz, L, Din, N, dtype)
    gy = torch.randn(args[0].shape, device=DEV).to(dtype)
    gh = torch.randn(args[8].shape, device=DEV)
    elem = torch.tensor([], dtype=dtype).element_size()
    fb = floor_bytes(Bsz, L, Din, N, elem)
    cfg = cfg or tss.default_config(Bsz, Din, N, torch.device(DEV))
    row = {"B": Bsz, "L": L, "d_inner": Din, "d_state": N, "dtype": str(dtype).replace("torch.", ""),
           "config": cfg.__dict__, "floor_fwd_ms": fb["fwd"] / bw * 1e3, "floor_fwd_bwd_ms": fb["fwd_bwd"] / bw * 1e3}

    def tri(*a):
        return tss.selective_scan(*a, config=cfg)

    row["triton_fwd"] = timeit_ms(fwd_fn(tri, args))
    row["triton_fwd_bwd"] = timeit_ms(fwd_bwd_fn(tri, [a.detach() for a in args], gy, gh))
    row["triton_over_floor"] = row["triton_fwd_bwd"]["ms"] / row["floor_fwd_bwd_ms"]
    if run_torch:
        # correctness first: the two backends agree (fp32) on this exact input
        y1, h1 = tri(*[a.detach() for a in args])
        y2, h2 = torch_scan(*[a.detach() for a in args])
        row["triton_vs_torch_rel_err"] = {"y": rel(y1, y2), "h_L": rel(h1, h2)}
        del y1, h1, y2, h2
        row["torch_fwd_bwd"] = timeit_ms(fwd_bwd_fn(torch_scan, [a.detach() for a in args], gy, gh))
        row["speedup_vs_torch"] = row["torch_fwd_bwd"]["ms"] / row["triton_fwd_bwd"]["ms"]
    del args, gy, gh
    torch.cuda.empty_cache()
    return row


# Launch policies tried by the sweep (warps per program, state elements per thread, time steps
# unrolled per block, pipelining stages), per state-size class of selective_scan.POLICY.
POLICIES = {
    "small_state": [(1, 16, 1, 3), (1, 8, 1, 3), (1, 8, 2, 2), (1, 8, 4, 1), (1, 8, 2, 1), (1, 4, 4, 1),
                    (1, 4, 4, 2), (2, 8, 2, 2), (1, 16, 2, 1), (1, 4, 2, 2)],
    "large_state": [(4, 16, 1, 3), (2, 16, 1, 3), (2, 8, 2, 2), (2, 8, 4, 1), (1, 8, 2, 2), (1, 8, 4, 1),
                    (1, 4, 4, 1), (2, 4, 4, 2), (4, 8, 2, 2), (1, 16, 1, 3)],
}


def policy_kw(p: tuple) -> dict:
    return dict(zip(("num_warps", "per_thread", "unroll", "stages"), p, strict=True))


def sweep(bw: float, quick: bool) -> tuple[list[dict], dict]:
    """Forward+backward under each launch policy at one shape per state-size class; returns the
    rows and the fastest policy of each class."""
    rows, best = [], {}
    shapes = {"small_state": (16, 4096, 512, 16), "large_state": (16, 4096, 512, 64)}
    for cls, (Bsz, L, Din, N) in shapes.items():
        if quick:
            L = 1024
        for p in POLICIES[cls][: 2 if quick else None]:
            cfg = tss.default_config(Bsz, Din, N, torch.device(DEV), **policy_kw(p))
            try:
                r = scan_row(Bsz, L, Din, N, bw, run_torch=False, cfg=cfg)
            except Exception as e:  # a policy that does not compile is a result, not a crash
                r = {"B": Bsz, "L": L, "d_inner": Din, "d_state": N, "config": cfg.__dict__, "error": repr(e)[:300]}
            r["policy"] = policy_kw(p)
            r["class"] = cls
            try:  # the same policy, small shape, against float64 (odd length: the tail loop runs)
                small = tss.default_config(2, 96, N, torch.device(DEV), **policy_kw(p))
                r["max_rel_err_vs_float64"] = max(check_against_reference(N, L=301, Din=96, cfg=small).values())
            except Exception as e:
                r["check_error"] = repr(e)[:300]
            ms = r.get("triton_fwd_bwd", {}).get("ms")
            print("sweep", cls, p, cfg, ms, r.get("max_rel_err_vs_float64"), r.get("error", ""), flush=True)
            rows.append(r)
            if ms is not None and (cls not in best or ms < best[cls][1]):
                best[cls] = (policy_kw(p), ms)
    return rows, {k: v[0] for k, v in best.items()}


# ---------------------------------------------------------------------------------------
# arithmetic ceilings: lane instructions per second, FFMA and ex2
# ---------------------------------------------------------------------------------------
def arithmetic_rates() -> dict:
    """Measured issue ceilings for the compute floor: float32 FFMA and MUFU.EX2 per second.

    Each lane runs 8 independent chains of 4096 dependent operations on registers (no memory),
    on enough warps to fill every scheduler; the rate counts one lane-operation per element per op.
    """
    import triton
    import triton.language as tl

    @triton.jit
    def ffma_k(out_ptr, ITERS: tl.constexpr):
        i = tl.program_id(0) * 128 + tl.arange(0, 128)
        a0 = i.to(tl.float32) * 1e-9
        a1, a2, a3, a4, a5, a6, a7 = a0 + 1, a0 + 2, a0 + 3, a0 + 4, a0 + 5, a0 + 6, a0 + 7
        for _ in range(ITERS):
            a0 = a0 * 0.999 + 1e-3
            a1 = a1 * 0.999 + 1e-3
            a2 = a2 * 0.999 + 1e-3
            a3 = a3 * 0.999 + 1e-3
            a4 = a4 * 0.999 + 1e-3
            a5 = a5 * 0.999 + 1e-3
            a6 = a6 * 0.999 + 1e-3
            a7 = a7 * 0.999 + 1e-3
        tl.store(out_ptr + i, a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7)

    @triton.jit
    def ex2_k(out_ptr, ITERS: tl.constexpr):
        i = tl.program_id(0) * 128 + tl.arange(0, 128)
        a0 = i.to(tl.float32) * -1e-9
        a1, a2, a3, a4, a5, a6, a7 = a0 - 0.1, a0 - 0.2, a0 - 0.3, a0 - 0.4, a0 - 0.5, a0 - 0.6, a0 - 0.7
        for _ in range(ITERS):
            a0 = tl.exp2(a0)
            a1 = tl.exp2(a1)
            a2 = tl.exp2(a2)
            a3 = tl.exp2(a3)
            a4 = tl.exp2(a4)
            a5 = tl.exp2(a5)
            a6 = tl.exp2(a6)
            a7 = tl.exp2(a7)
        tl.store(out_ptr + i, a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7)

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    progs = sms * 16  # 16 four-warp programs per SM: 64 warps, every scheduler full
    out = torch.empty(progs * 128, device=DEV)
    iters = 4096
    res = {}
    for name, k in (("ffma", ffma_k), ("ex2", ex2_k)):
        ms = timeit_ms(lambda k=k: k[(progs,)](out, ITERS=iters, num_warps=4))["ms"]
        res[f"{name}_lane_ops_per_s"] = progs * 128 * 8 * iters / (ms * 1e-3)
    print("arithmetic rates", res, flush=True)
    return res


# ---------------------------------------------------------------------------------------
# step updates
# ---------------------------------------------------------------------------------------
def load_mamba_ssm():
    """mamba_ssm's selective_state_update through the benchmark-only shim, or the reason."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return None, "mamba_ssm not installed"
    if "selective_scan_cuda" not in sys.modules and importlib.util.find_spec("selective_scan_cuda") is None:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")  # benchmark-only shim
    try:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    except Exception as e:
        return None, repr(e)[:300]
    return selective_state_update, None


def graph_ms(fn, reps: int = 20) -> float:
    """Milliseconds per call when ``reps`` calls are captured in one CUDA graph and replayed."""
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    return timeit_ms(g.replay)["ms"] / reps


@dataclasses.dataclass
class StepCase:
    """One step-update benchmark: our in-place update and its reference twin, a state pool and the inputs for
    all its streams, the elements one stream's step must move (state, read and written once; inputs and
    output), the shape as the results name it, and mamba_ssm's ``selective_state_update`` on the same step."""

    update: Callable
    reference: Callable
    pool: torch.Tensor
    inp: dict[str, torch.Tensor]
    state_elems: int
    io_elems: int
    shape: dict[str, int]
    theirs: Callable  # (mamba_ssm's function, pool, slots) -> None


def step_case(kind: str, S: int, N: int) -> StepCase:
    """The Mamba-2 shape of the default keyword model (H=4, P=32, one group) or a Mamba-1 one (d_inner 128)."""
    if kind == "mamba2":
        H, P, G = 4, 32, 1
        inp = dict(x=torch.randn(S, H, P, device=DEV), dt=torch.randn(S, H, device=DEV) - 2,
                   A=-torch.rand(H, device=DEV) * 8 - 1, B=torch.randn(S, G, N, device=DEV),
                   C=torch.randn(S, G, N, device=DEV), D=torch.randn(H, device=DEV),
                   dt_bias=torch.randn(H, device=DEV))

        def theirs(mss, pool, slots):  # mamba_ssm wants the per-head scalars spread over (H, P[, N])
            mss(pool, inp["x"], inp["dt"][:, :, None].expand(-1, H, P),
                inp["A"][:, None, None].expand(H, P, N), inp["B"], inp["C"],
                D=inp["D"][:, None].expand(H, P), z=None, dt_bias=inp["dt_bias"][:, None].expand(H, P),
                dt_softplus=True, state_batch_indices=slots)

        return StepCase(su.ssd_state_update, reference.ssd_step, torch.randn(S, H, P, N, device=DEV), inp,
                        H * P * N, H * P * 2 + H + 2 * G * N, {"H": H, "P": P, "N": N}, theirs)
    Din = 128
    inp = dict(x=torch.randn(S, Din, device=DEV), dt=torch.randn(S, Din, device=DEV) - 2,
               A=-torch.arange(1, N + 1, device=DEV, dtype=torch.float32).repeat(Din, 1),
               B=torch.randn(S, N, device=DEV), C=torch.randn(S, N, device=DEV),
               D=torch.ones(Din, device=DEV), z=torch.randn(S, Din, device=DEV),
               dt_bias=torch.randn(Din, device=DEV))

    def theirs(mss, pool, slots):
        mss(pool, inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], z=inp["z"],
            dt_bias=inp["dt_bias"], dt_softplus=True, state_batch_indices=slots)

    return StepCase(su.selective_state_update, reference.selective_step, torch.randn(S, Din, N, device=DEV), inp,
                    Din * N, Din * 4 + 2 * N, {"d_inner": Din, "N": N}, theirs)


def step_rows(bw: float, quick: bool) -> list[dict]:
    mss, why = load_mamba_ssm()
    rows = []
    sizes = [1024, 4096, 16384, 65536, 131072] if not quick else [1024, 65536]
    for kind, N in [("mamba2", 16), ("mamba2", 32), ("mamba2", 64), ("mamba1", 16)]:
        for S in sizes:
            c = step_case(kind, S, N)
            pool, slots = c.pool, torch.arange(S, device=DEV)
            ref_pool = pool.clone()
            y = c.update(ref_pool, slots, **c.inp)
            y_r, h_r = c.reference(**c.inp, h=pool)
            err = max(rel(y, y_r), rel(ref_pool, h_r))

            def ours(c=c, pool=pool, slots=slots):
                c.update(pool, slots, **c.inp, check=False)

            def theirs(c=c, pool=pool, slots=slots):
                c.theirs(mss, pool, slots)

            floor_ms = S * (2 * c.state_elems + c.io_elems) * 4 / bw * 1e3
            row = {"kind": kind, **c.shape, "streams": S, "rel_err_vs_reference": err, "floor_ms": floor_ms}
            t = timeit_ms(ours)
            row["triton_ms"] = t["ms"]
            row["triton_graph_ms"] = graph_ms(ours)
            row["triton_streams_per_s"] = S / (row["triton_graph_ms"] * 1e-3)
            row["triton_over_floor"] = row["triton_graph_ms"] / floor_ms
            if mss is None:
                row["mamba_ssm"] = why
            else:
                try:
                    row["mamba_ssm_ms"] = timeit_ms(theirs)["ms"]
                    row["mamba_ssm_graph_ms"] = graph_ms(theirs)
                except Exception as e:
                    row["mamba_ssm"] = f"fails: {repr(e)[:200]}"
                    torch.cuda.synchronize()
            print("step", json.dumps({k: row[k] for k in row if not isinstance(row[k], dict)}), flush=True)
            rows.append(row)
            del c, pool, ref_pool, y, y_r, h_r
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------
def summary(res: dict) -> str:
    lines = [f"GPU: {res['machine']['device']}, {res['machine']['date'][:10]}; copy bandwidth "
             f"{res['copy_bw_TBps']:.2f} TB/s (read + write)", "",
             "Mamba-1 selective scan, forward+backward, B=16 (ms; floor = bytes that must move / copy bandwidth)", "",
             "| L | d_inner | N | dtype | floor | triton fwd | triton fwd+bwd | x floor | torch fwd+bwd | speedup |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["scan"]:
        if "error" in r:
            lines.append(f"| {r['L']} | {r['d_inner']} | {r['d_state']} | | error: {r['error'][:60]} |")
            continue
        torch_ms = r.get("torch_fwd_bwd", {}).get("ms")
        lines.append(
            f"| {r['L']} | {r['d_inner']} | {r['d_state']} | {r['dtype']} | {r['floor_fwd_bwd_ms']:.3f} | "
            f"{r['triton_fwd']['ms']:.3f} | {r['triton_fwd_bwd']['ms']:.3f} | {r['triton_over_floor']:.1f} | "
            + (f"{torch_ms:.2f} | {r['speedup_vs_torch']:.0f}x |" if torch_ms else "not run | |"))
    if res.get("sweep"):
        lines += ["", "Launch policies, B=16 (ms)", "",
                  "| L | d_inner | N | warps | per thread | unroll | stages | block_d | fwd | fwd+bwd |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["sweep"]:
            ms = r.get("triton_fwd_bwd", {}).get("ms")
            fwd = r.get("triton_fwd", {}).get("ms")
            p, cfg = r["policy"], r.get("config", {})
            lines.append(f"| {r['L']} | {r['d_inner']} | {r['d_state']} | {p['num_warps']} | {p['per_thread']} | "
                         f"{p['unroll']} | {p['stages']} | {cfg.get('block_d')} | "
                         + (f"{fwd:.3f} | {ms:.3f} |" if ms else f"error {r.get('error', '')[:50]} | |"))
    lines += ["", f"Grid policy: {res.get('grid_policy')}"]
    lines += ["", "Step update, all streams in one call, in place on a float32 pool (ms per tick, CUDA-graph replay)", "",
              "| model | N | streams | floor | triton | streams/s | mamba_ssm |", "|---|---|---|---|---|---|---|"]
    for r in res["steps"]:
        theirs = f"{r['mamba_ssm_graph_ms']:.3f}" if "mamba_ssm_graph_ms" in r else r.get("mamba_ssm", "")[:40]
        lines.append(f"| {r['kind']} | {r['N']} | {r['streams']} | {r['floor_ms']:.3f} | {r['triton_graph_ms']:.3f} | "
                     f"{r['triton_streams_per_s']:.3g} | {theirs} |")
    return "\n".join(lines)


def guarded(res: dict, what: str, fn, default=None):
    """Run one section; a failure is recorded in the notes and the run goes on."""
    try:
        return fn()
    except Exception as e:
        import traceback

        traceback.print_exc()
        res["notes"].append(f"{what} failed: {e!r}"[:500])
        return default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="also copy the results JSON and summary here")
    ap.add_argument("--quick", action="store_true", help="a small grid (smoke test)")
    ap.add_argument("--skip-sweep", action="store_true", help="use selective_scan.POLICY as it is")
    ap.add_argument("--skip-torch", action="store_true", help="time the triton backend only")
    ap.add_argument("--skip-steps", action="store_true", help="no step-update section")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu_scan needs a CUDA GPU")
    res = {"machine": machine(), "notes": []}

    def checkpoint():  # partial results survive a run cut short
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench_gpu_scan_partial.json").write_text(json.dumps(res, indent=1, default=str))

    bw = copy_bandwidth()
    res["copy_bw_TBps"] = bw / 1e12
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    res["arithmetic"] = guarded(res, "arithmetic", arithmetic_rates, {})
    res["reference_check"] = guarded(res, "reference_check", lambda: {f"N{N}": check_against_reference(N) for N in (16, 64)})
    print("float64 reference check", json.dumps(res["reference_check"]), flush=True)
    res["sweep"], best = [], {}
    if not args.skip_sweep:
        res["sweep"], best = guarded(res, "sweep", lambda: sweep(bw, args.quick), ([], {}))
    res["grid_policy"] = {cls: best.get(cls, tss.POLICY[cls]) for cls in tss.POLICY}
    print("grid policy", res["grid_policy"], flush=True)
    checkpoint()

    Ls = [1024, 4096, 16384] if not args.quick else [1024]
    Ds = [256, 512, 1024] if not args.quick else [256]
    res["scan"] = []
    torch_ms_at = {}
    for N in (16, 64):
        for Din in Ds:
            for L in Ls:
                # the torch backend's time grows linearly in L: skip a shape whose estimate passes 3 s
                prev = torch_ms_at.get((Din, N))
                run_torch = not args.skip_torch and (prev is None or prev * 4 < 3000)
                if not run_torch and not args.skip_torch:
                    res["notes"].append(f"torch backend not run at L={L} d_inner={Din} N={N}: "
                                        f"estimated {prev * 4 / 1e3:.1f} s per forward+backward")
                pol = res["grid_policy"]["small_state" if N <= 32 else "large_state"]
                try:
                    r = scan_row(16, L, Din, N, bw, run_torch, cfg=tss.default_config(16, Din, N, torch.device(DEV), **pol))
                    if "torch_fwd_bwd" in r:
                        torch_ms_at[(Din, N)] = r["torch_fwd_bwd"]["ms"]
                except Exception as e:
                    r = {"B": 16, "L": L, "d_inner": Din, "d_state": N, "error": repr(e)[:300]}
                print("scan", json.dumps({k: v for k, v in r.items() if k != "config"}), flush=True)
                res["scan"].append(r)
                checkpoint()
    try:
        pol = res["grid_policy"]["small_state"]
        res["scan"].append(scan_row(16, 4096, 512, 16, bw, run_torch=False, dtype=torch.bfloat16,
                                    cfg=tss.default_config(16, 512, 16, torch.device(DEV), **pol)))
    except Exception as e:
        res["notes"].append(f"bf16 row failed: {e!r}")
    checkpoint()
    res["steps"] = [] if args.skip_steps else guarded(res, "steps", lambda: step_rows(bw, args.quick), [])
    res["summary_md"] = guarded(res, "summary", lambda: summary(res), "")
    path = write_result("bench_gpu_scan", res)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, args.out / path.name)
        (args.out / "bench_gpu_scan_summary.md").write_text(res["summary_md"] + "\n")
    print(res["summary_md"])


if __name__ == "__main__":
    main()
