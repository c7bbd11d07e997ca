"""GPU benchmark of the Triton SSD scan (Mamba-2) and the Mamba2 layer, side by side in one run.

    python benchmarks/bench_gpu_ssd.py [--quick] [--out DIR]

1. copy bandwidth (device-to-device, bytes read + written), for the memory floor;
2. correctness before timing: ours vs the float64 chunked form (and vs mamba_ssm when present);
3. the SSD kernel alone, forward and forward+backward: ours (``triton``), mamba_ssm's
   ``mamba_chunk_scan_combined``, our ``torch`` backend, and the memory floor;
4. the Mamba2 LAYER forward+backward: ours (SSD routed to the Triton kernel; with the torch gated
   RMSNorm as the layer has it, and with the fused Triton norm of ssd_norm.py patched in) against
   mamba_ssm's ``Mamba2(use_mem_eff_path=False)`` carrying the same weights;
5. a per-kernel CUDA time breakdown of one layer configuration (torch.profiler).

mamba_ssm is a comparison only, imported through a benchmark-only shim: its package ``__init__``
imports the Mamba-1 CUDA extension ``selective_scan_cuda``, which its Python-only install lacks, so a
placeholder module stands in for it; the Triton paths timed here never call it.
Writes benchmarks/results/gpu_ssd_<date>.json (and a copy under --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import types
from pathlib import Path

import torch
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, write_result  # noqa: E402
from ssm_signal.kernels import ssd_torch  # noqa: E402
from ssm_signal.kernels.triton import ssd as triton_ssd  # noqa: E402
from ssm_signal.kernels.triton.ssd_norm import gated_rms_norm  # noqa: E402
from ssm_signal.layers import Mamba2, mamba2  # noqa: E402
from ssm_signal.layers.norm import RMSNormGated  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def import_mamba_ssm():
    """(module namespace, None) or (None, reason). Benchmark-only shim for the missing CUDA extension."""
    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    try:
        from mamba_ssm.modules.mamba2 import Mamba2 as TheirMamba2
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as e:  # noqa: BLE001 - any import failure just drops the comparison
        return None, f"{type(e).__name__}: {e}"
    return types.SimpleNamespace(Mamba2=TheirMamba2, chunk_scan=mamba_chunk_scan_combined), None


def rel_err(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def bench(fn, rep=200, grad_to_none=None) -> float:
    """Median milliseconds (triton do_bench: CUDA events, L2 flushed between runs)."""
    return float(do_bench(fn, warmup=25, rep=rep, grad_to_none=grad_to_none, return_mode="median"))


def copy_bandwidth() -> float:
    a = torch.randn(256 * 2**20, device="cuda")  # 1 GiB
    b = torch.empty_like(a)
    ms = bench(lambda: b.copy_(a))
    return 2 * a.numel() * 4 / (ms * 1e-3)  # bytes/s, read + write


# ---------------------------------------------------------------------------------------------
# SSD kernel alone
# ---------------------------------------------------------------------------------------------
def ssd_inputs(Bz, L, H, P, G, N, dtype):
    x = torch.randn(Bz, L, H, P, device="cuda", dtype=dtype)
    dt = (torch.randn(Bz, L, H, device="cuda") - 1.0).to(dtype)
    A = -torch.empty(H, device="cuda").uniform_(1.0, 16.0)
    B = torch.randn(Bz, L, G, N, device="cuda", dtype=dtype)
    C = torch.randn(Bz, L, G, N, device="cuda", dtype=dtype)
    D = torch.randn(H, device="cuda")
    bias = torch.randn(H, device="cuda") * 0.5
    h0 = torch.randn(Bz, H, P, N, device="cuda")
    return [x, dt, A, B, C, D, bias, h0]


def ssd_floor_bytes(Bz, L, H, P, G, N, dtype, backward: bool) -> int:
    """Each input read once, each output written once (fp32 states; the parameters are negligible)."""
    e = torch.tensor([], dtype=dtype).element_size()
    per_t = H * P * e * 2 + H * e + 2 * G * N * e  # x, y; dt; B, C
    state = 2 * Bz * H * P * N * 4  # h0, h_L
    fwd = Bz * L * per_t + state
    if not backward:
        return fwd
    # backward reads x, dt, B, C, dy (+ dh_L) and writes dx, ddt, dB, dC (+ dh0)
    bwd = Bz * L * (H * P * e * 3 + H * e * 2 + 4 * G * N * e) + state
    return fwd + bwd


def ssd_variants(mamba):
    def ours(x, dt, A, B, C, D, bias, h0):
        return triton_ssd.ssd_scan(x, dt, A, B, C, D, bias, h0, 256)

    def torch_backend(x, dt, A, B, C, D, bias, h0):
        return ssd_torch.ssd_scan(x, dt, A, B, C, D, bias, h0, 256)

    v = {"triton": ours, "torch": torch_backend}
    if mamba is not None:
        def theirs(x, dt, A, B, C, D, bias, h0):
            return mamba.chunk_scan(x, dt, A, B, C, 256, D=D, dt_bias=bias, initial_states=h0,
                                    dt_softplus=True, return_final_states=True)
        v["mamba_ssm"] = theirs
    return v


def check_ssd(variants, H, P, G, N, dtype, L=1000):
    """rel_err of each variant against the float64 chunked form on fresh inputs (batch 2)."""
    args = ssd_inputs(2, L, H, P, G, N, dtype)
    ref = [a.double().requires_grad_() for a in args]
    y_r, h_r = ssd_torch.ssd_scan(*ref, chunk_size=256)
    wy, wh = torch.randn_like(y_r), torch.randn_like(h_r)
    g_r = torch.autograd.grad((y_r * wy).sum() + (h_r * wh).sum(), ref)
    out = {}
    for name in ("triton", "mamba_ssm"):
        if name not in variants:
            continue
        leaves = [a.clone().requires_grad_() for a in args]
        y, h = variants[name](*leaves)
        g = torch.autograd.grad((y.double() * wy).sum() + (h.double() * wh).sum(), leaves)
        errs = {"y": rel_err(y, y_r), "h_L": rel_err(h, h_r)}
        errs.update({n: rel_err(a, b) for n, a, b in zip("x dt A B C D dt_bias h0".split(), g, g_r, strict=True)})
        out[name] = errs
    return out


def time_ssd_shape(variants, Bz, L, H, P, G, N, dtype, rep) -> dict:
    args = ssd_inputs(Bz, L, H, P, G, N, dtype)
    leaves = [a.clone().requires_grad_() for a in args]
    dy = torch.randn_like(args[0])
    dh = torch.randn_like(args[7])
    row = {}
    for name, fn in variants.items():
        if name == "torch" and Bz * L * H > 16 * 4096 * 8:
            continue  # the plain form's (Q x Q) decay tensors: seconds per call and tens of GB

        def fwd(fn=fn):
            with torch.no_grad():
                return fn(*args)

        def fwdbwd(fn=fn):
            y, h = fn(*leaves)
            torch.autograd.backward((y, h), (dy, dh))

        try:
            row[f"{name}_fwd_ms"] = bench(fwd, rep)
            row[f"{name}_fwdbwd_ms"] = bench(fwdbwd, rep, grad_to_none=leaves)
        except torch.OutOfMemoryError:
            row[f"{name}_fwd_ms"] = row[f"{name}_fwdbwd_ms"] = None
        torch.cuda.empty_cache()
    return row


def run_ssd(variants, shapes, dtypes, bw, rep, mamba_dtypes):
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        vs = {k: v for k, v in variants.items() if k != "mamba_ssm" or dname in mamba_dtypes}
        for (Bz, L, H, P, G, N) in shapes:
            row = {"dtype": dname, "B": Bz, "L": L, "H": H, "P": P, "G": G, "N": N}
            row["floor_fwd_ms"] = ssd_floor_bytes(Bz, L, H, P, G, N, dtype, False) / bw * 1e3
            row["floor_fwdbwd_ms"] = ssd_floor_bytes(Bz, L, H, P, G, N, dtype, True) / bw * 1e3
            row.update(time_ssd_shape(vs, Bz, L, H, P, G, N, dtype, rep))
            rows.append(row)
            print("ssd", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Mamba2 layer
# ---------------------------------------------------------------------------------------------
def route_ssd_to_triton():
    """Make our Mamba2 layer call the Triton ssd_scan whatever the registry holds (benchmark only)."""
    original = mamba2.get_op
    mamba2.get_op = lambda op, device: triton_ssd.ssd_scan if op == "ssd_scan" else original(op, device)


class fused_norm:
    """Context: RMSNormGated.forward -> the fused Triton gated_rms_norm (the change proposed for norm.py)."""

    def __enter__(self):
        self.saved = RMSNormGated.forward
        RMSNormGated.forward = lambda m, x, z: gated_rms_norm(x, z, m.weight, m.eps, m.group_size)

    def __exit__(self, *exc):
        RMSNormGated.forward = self.saved


def time_layer_config(mamba, Bz, L, d_model, dtype, rep) -> dict:
    ours = Mamba2(d_model, d_state=64, headdim=64, chunk_size=256).cuda().to(dtype)
    theirs = None
    if mamba is not None:
        theirs = mamba.Mamba2(d_model, d_state=64, headdim=64, chunk_size=256, use_mem_eff_path=False,
                              device="cuda", dtype=dtype)
        ours.load_state_dict(theirs.state_dict(), strict=True)
    u = torch.randn(Bz, L, d_model, device="cuda", dtype=dtype, requires_grad=True)
    dout = torch.randn(Bz, L, d_model, device="cuda", dtype=dtype)
    row = {}

    def ours_fb():
        y, _ = ours(u)
        y.backward(dout)

    def ours_fwd():
        with torch.no_grad():
            return ours(u)[0]

    g2n = [u, *ours.parameters()]
    row["ours_fwdbwd_ms"] = bench(ours_fb, rep, g2n)
    row["ours_fwd_ms"] = bench(ours_fwd, rep)
    with fused_norm():
        row["ours_fusednorm_fwdbwd_ms"] = bench(ours_fb, rep, g2n)
        row["ours_fusednorm_fwd_ms"] = bench(ours_fwd, rep)
        y_ours = ours_fwd()
    if theirs is not None:
        def theirs_fb():
            theirs(u).backward(dout)

        def theirs_fwd():
            with torch.no_grad():
                return theirs(u)

        row["mamba_ssm_fwdbwd_ms"] = bench(theirs_fb, rep, [u, *theirs.parameters()])
        row["mamba_ssm_fwd_ms"] = bench(theirs_fwd, rep)
        row["out_rel_err_vs_mamba_ssm"] = rel_err(y_ours, theirs_fwd())
        row["ratio_ours"] = row["ours_fwdbwd_ms"] / row["mamba_ssm_fwdbwd_ms"]
        row["ratio_ours_fusednorm"] = row["ours_fusednorm_fwdbwd_ms"] / row["mamba_ssm_fwdbwd_ms"]
    return row


def run_layer(mamba, configs, dtypes, rep, mamba_dtypes):
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        for (Bz, L, d_model) in configs:
            row = {"dtype": dname, "B": Bz, "L": L, "d_model": d_model, "d_inner": 2 * d_model}
            row.update(time_layer_config(mamba if dname in mamba_dtypes else None, Bz, L, d_model, dtype, rep))
            torch.cuda.empty_cache()
            rows.append(row)
            print("layer", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def run_variants(shape, dtypes, rep) -> list[dict]:
    """Our SSD forward+backward under launch-parameter variants (each recompiles the kernels)."""
    base = dict(triton_ssd.CONFIG)
    ours = {"triton": ssd_variants(None)["triton"]}
    rows = []
    for dname in dtypes:
        variants = {"base": {}, "bwd_warps_8": {"warps_bwd": 8}, "state_block256": {"state_block": 256},
                    "stages3": {"stages": 3}}
        for vname, change in variants.items():
            triton_ssd.CONFIG.update(base)
            triton_ssd.CONFIG.update(change)
            row = {"dtype": dname, "variant": vname, "shape": shape}
            row.update(time_ssd_shape(ours, *shape, DTYPES[dname], rep))
            rows.append(row)
            print("variant", row, flush=True)
    triton_ssd.CONFIG.update(base)
    return rows


def profile_layer(mamba, Bz, L, d_model, dtype, top=14):
    """CUDA time per kernel (ms per fwd+bwd) for ours (+fused norm) and mamba_ssm."""
    from torch.profiler import ProfilerActivity, profile

    ours = Mamba2(d_model, d_state=64, headdim=64, chunk_size=256).cuda().to(dtype)
    mods = {"ours_fusednorm": ours, "ours": ours}
    if mamba is not None:
        mods["mamba_ssm"] = mamba.Mamba2(d_model, d_state=64, headdim=64, chunk_size=256, use_mem_eff_path=False,
                                         device="cuda", dtype=dtype)
    u = torch.randn(Bz, L, d_model, device="cuda", dtype=dtype, requires_grad=True)
    dout = torch.randn_like(u)
    out = {}
    for name, m in mods.items():
        def step(m=m, name=name):
            y = m(u)
            (y[0] if isinstance(y, tuple) else y).backward(dout)

        ctx = fused_norm() if name == "ours_fusednorm" else None
        if ctx:
            ctx.__enter__()
        for _ in range(2):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        if ctx:
            ctx.__exit__(None, None, None)
        totals = {}
        for ev in prof.key_averages():
            if ev.device_time_total > 0:
                totals[ev.key[:90]] = totals.get(ev.key[:90], 0.0) + ev.device_time_total / 3e3
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])
        out[name] = {"total_ms": sum(totals.values()), "top": ranked[:top]}
        print(f"profile {name}: total {out[name]['total_ms']:.2f} ms")
        for k, v in ranked[:top]:
            print(f"   {v:8.3f}  {k}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one shape per part (a smoke run)")
    ap.add_argument("--out", type=Path, default=None, help="also copy the JSON here")
    ap.add_argument("--parts", default="check,ssd,layer,profile")
    ap.add_argument("--tag", default="", help="suffix for the result file name (a variant)")
    ap.add_argument("--dtypes", default="bf16,fp32", help="dtypes of the check, ssd and layer parts")
    ap.add_argument("--mamba-dtypes", default="bf16,fp32",
                    help="dtypes for which mamba_ssm runs too (its autotuning costs ~2 min per dtype)")
    ap.add_argument("--layer-rep", type=int, default=100, help="do_bench rep (ms) of the layer timings")
    args = ap.parse_args()
    parts = args.parts.split(",")
    dtypes = args.dtypes.split(",")
    mamba_dtypes = set(args.mamba_dtypes.split(","))
    torch.manual_seed(0)
    mamba, why = import_mamba_ssm()
    info = machine()
    info["mamba_ssm"] = "imported" if mamba else f"unavailable ({why})"
    info["config"] = dict(triton_ssd.CONFIG)
    bw = copy_bandwidth()
    info["copy_bandwidth_TBps"] = bw / 1e12
    print(info, flush=True)
    result = {"machine": info}
    variants = ssd_variants(mamba)

    def save():
        # after every part, so that a run cut short still leaves its numbers
        path = write_result("gpu_ssd" + (f"_{args.tag}" if args.tag else ""), result)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, args.out / path.name)

    shapes = [(16, 1024, 8, 64, 1, 64), (16, 4096, 8, 64, 1, 64), (16, 16384, 8, 64, 1, 64), (16, 16384, 16, 64, 1, 64)]
    layer_cfgs = [(16, L, dm) for L in (1000, 4000, 16000) for dm in (256, 512)]
    if args.quick:
        shapes, layer_cfgs = shapes[1:2], layer_cfgs[2:3]
    for part in parts:  # in the order given: a run cut short keeps the parts done
        if part == "check":
            vs = {d: {k: v for k, v in variants.items() if k != "mamba_ssm" or d in mamba_dtypes} for d in dtypes}
            result["check"] = {d: check_ssd(vs[d], 8, 64, 1, 64, DTYPES[d]) for d in dtypes}
            print("check", json.dumps(result["check"], indent=None), flush=True)
        elif part.startswith("layer"):
            route_ssd_to_triton()
            ds = part.split(":")[1].split("+") if ":" in part else dtypes
            result.setdefault("layer", []).extend(run_layer(mamba, layer_cfgs, ds, args.layer_rep, mamba_dtypes))
        elif part == "ssd":
            result["ssd"] = run_ssd(variants, shapes, dtypes, bw, 200, mamba_dtypes)
        elif part == "variants":
            result["variants"] = run_variants(shapes[2], dtypes, 200)
        elif part == "profile":
            route_ssd_to_triton()
            result["profile"] = profile_layer(mamba if "bf16" in mamba_dtypes else None, 16,
                                              16000 if not args.quick else 4000, 512, torch.bfloat16)
        else:
            raise SystemExit(f"unknown part {part!r}")
        save()
    _summary(result)


def _summary(result) -> None:
    print("\n| part | dtype | shape | ours ms | mamba_ssm ms | torch ms | floor ms |")
    print("|---|---|---|---|---|---|---|")
    for r in result.get("ssd", []):
        shape = f"B{r['B']} L{r['L']} H{r['H']}"
        for k in ("fwd", "fwdbwd"):
            def f(name, k=k, r=r):
                v = r.get(f"{name}_{k}_ms")
                return f"{v:.3f}" if v else "-"
            print(f"| ssd {k} | {r['dtype']} | {shape} | {f('triton')} | {f('mamba_ssm')} | {f('torch')} | "
                  f"{r[f'floor_{k}_ms']:.3f} |")
    print("\n| layer fwd+bwd | dtype | B, L, d_model | ours | ours+fused norm | mamba_ssm | ratio (fused) |")
    print("|---|---|---|---|---|---|---|")
    for r in result.get("layer", []):
        m = r.get("mamba_ssm_fwdbwd_ms")
        print(f"| | {r['dtype']} | {r['B']}, {r['L']}, {r['d_model']} | {r['ours_fwdbwd_ms']:.2f} | "
              f"{r['ours_fusednorm_fwdbwd_ms']:.2f} | {m and f'{m:.2f}'} | "
              f"{r.get('ratio_ours', 0):.2f} ({r.get('ratio_ours_fusednorm', 0):.2f}) |")


if __name__ == "__main__":
    main()
