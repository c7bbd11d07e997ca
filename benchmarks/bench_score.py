"""Batch-scoring throughput: signal-seconds scored per wall-clock second, against the
model's bare forward throughput on the same machine (the rest is decoding and I/O), and the
host-side costs behind it.

    python benchmarks/bench_score.py [--files 2000] [--seconds 1.0] [--batch-size 64] [--num-workers 2]
                                     [--parts score,loader,worker,main] [--variants new,eager,old] [--compare]

On the H100 (16 host cores): --files 70000 --seconds 1 --batch-size 1024 --num-workers 14 (keyword
clips, 19 h) and --files 17500 --seconds 10 --batch-size 256 --num-workers 14 (recordings, 49 h):
jobs large enough for the scorer's BatchRing (made when a job moves twice its size); --no-ring
measures DataLoader's ordinary path instead. Medians of --repeats (the first scoring run on a fresh
machine also compiles the kernels).

Parts (--parts; each run for every variant, the variants alternating within each repeat):

- score: whole scoring runs (``pipelines.score.score``), whole-run and steady throughput, against
  the bare forward, read before and after them: the model alone on a float32 batch already on the
  device, eager (``model(x)`` call by call; also without the NaN scan, the scorer's eager twin)
  and, on a GPU, replayed as CUDA graphs back to back (``BatchGraphs``, as the scorer runs it).
  The ratio is taken against the graphs on a GPU, against the eager twin on a CPU.
- loader: the scorer's DataLoader alone (``score_loader``: the workers read and collate into the
  ring, page-locked on a GPU; no model), files per second.
- worker: one process reading and collating batches into a ring (``ScoreDataset.__getitems__`` and
  ``Collate``), microseconds per file: the workers' per-file cost.
- forward: the model's forward per batch, eager, unchecked and graph-replayed: ms per call with
  a synchronisation each and back to back, the main thread's CPU ms per call, and on a GPU the
  kernels per forward and their GPU time (``forward_cost``).
- main: the main process per batch: ``result_rows`` and a Parquet part for one batch and per batch
  of a 16-batch part (old and new encoding), the progress bar's hook, and the predict loop
  (``predict_batches``: Lightning, transfer, ``predict_step``, ``PartWriter``) fed pre-built ring
  batches of one frame per file with the model replaced by a stub (wall and main-thread CPU ms per
  batch; variant "no writer": the loop alone).

Variants: new (this version), eager (this version, ``cuda_graphs=False``: the forward launched
kernel by kernel) and old (also ``direct_wav=False``: every WAV through soundfile;
``part_rows=1``: a Parquet part per batch). --compare: every part, variants old and new.

Uses the default keyword model (artifacts/kws_default if present, else the architecture of
configs/kws_default.yaml with random weights: throughput does not depend on the weights).
Writes <--out, default benchmarks/results>/score_<device>_<seconds>s[_noring][_compare][_<--tag>]_<date>.json.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import struct
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import default_bundle, machine, median, timed, write_result  # noqa: E402

from pipelines.batch_graphs import BatchGraphs  # noqa: E402
from pipelines.batch_ring import SLACK, BatchRing  # noqa: E402
from pipelines.score import batching, config, inputs, job, predict, readers, rows  # noqa: E402
from pipelines.score import writer as score_writer  # noqa: E402
from pipelines.score.runtime import TorchFrames  # noqa: E402
from ssm_signal import load_bundle  # noqa: E402

VARIANTS = {"new": {"direct_wav": True, "part_rows": config.ScoreConfig.part_rows, "cuda_graphs": True},
            "eager": {"direct_wav": True, "part_rows": config.ScoreConfig.part_rows, "cuda_graphs": False},
            "old": {"direct_wav": False, "part_rows": 1, "cuda_graphs": False}}
PARTS = ("score", "loader", "worker", "main", "forward")


def write_files(root: Path, n: int, seconds: float, rate: int = 16000) -> None:
    """n 16-bit mono WAV files of noise (the 44-byte header soundfile writes), each a different slice of
    one long noise buffer, in 10 label folders. Written directly: sf.write took 3.6 ms per file on the
    2-core CPU, minutes for a GPU-sized job."""
    rng = np.random.default_rng(0)
    length = int(seconds * rate)
    noise = (3277 * rng.standard_normal(length + 97 * rate)).clip(-32768, 32767).astype("<i2")
    header = (b"RIFF" + struct.pack("<I", 36 + 2 * length) + b"WAVE" + b"fmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16) + b"data" + struct.pack("<I", 2 * length))
    for c in range(10):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        start = (i * 7919) % (97 * rate)
        with open(root / f"c{i % 10}" / f"{i:06d}.wav", "wb") as f:
            f.write(header + noise[start:start + length].tobytes())


def forward_ways(bundle, batch: int, seconds: float, device: str) -> tuple[dict, torch.Tensor, BatchGraphs | None]:
    """The ways of running the model alone on a pre-decoded float32 batch on the device, as callables:
    eager (``model(x)``: its NaN scan and phase read synchronise), unchecked (``frame_outputs(x,
    check_values=False)``, the scorer's eager twin: nothing synchronises) and, on a GPU, graphs (the
    same replayed as CUDA graphs by ``BatchGraphs``, as the scorer runs it); and the batch, and the graphs."""
    model = bundle.model.to(device).eval()
    x = torch.randn(batch, int(seconds * bundle.sample_rate), 1, device=device) * 0.1
    ways = {"eager": lambda: model(x), "unchecked": lambda: bundle.frame_outputs(x, check_values=False)}
    graphs = None
    if device == "cuda":
        graphs = BatchGraphs(lambda x, f: (bundle.frame_outputs(x, check_values=False),), batch,
                             model.samples_per_frame)
        frames = torch.full((batch,), x.shape[1] // model.samples_per_frame, device=device)
        ways["graphs"] = lambda: graphs(x, frames)
    return ways, x, graphs


def sync_each(fn, device: str, repeats: int, warmup: int) -> list[float]:
    """``timed`` with the device synchronised around every call (the one before is idle: the last ended synced)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    return timed(lambda: (fn(), sync()), repeats, warmup)


def bare_forward(bundle, batch: int, seconds: float, device: str, repeats: int = 10) -> dict[str, float]:
    """Signal-seconds per second of the model alone on a pre-decoded, pre-batched float32 batch on the
    device (``forward_ways``): eager and unchecked call by call with a synchronisation each; graphs
    (CUDA only) ``repeats`` replays back to back, one synchronisation: the GPU's own rate."""
    ways, _, graphs = forward_ways(bundle, batch, seconds, device)
    out = {}
    with torch.inference_mode():
        for kind in ("eager", "unchecked"):
            out[kind] = batch * seconds / median(sync_each(ways[kind], device, repeats, 2))
        if graphs is not None:
            for _ in range(3):  # eager on the padded buffers, capture, a replay
                ways["graphs"]()
            rates = []
            for _ in range(3):
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(repeats):
                    ways["graphs"]()
                torch.cuda.synchronize()
                rates.append(batch * seconds * repeats / (time.perf_counter() - t))
            assert graphs.counts["replayed"] == 2 + 3 * repeats, graphs.counts
            out["graphs"] = median(rates)
    return out


def forward_cost(bundle, batch: int, seconds: float, device: str, calls: int = 30) -> dict:
    """Where a batch's forward goes, per way of running it (``forward_ways``): ms per call with a
    synchronisation each, ms per call back to back (one synchronisation per ``calls``), and the main
    thread's CPU ms per call (launching; waiting, where the call synchronises or the launch queue is
    full); plus, on a GPU, the kernels per forward and their GPU time (torch.profiler, unchecked, 3 calls)."""
    ways, _, _ = forward_ways(bundle, batch, seconds, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {}
    with torch.inference_mode():
        for way, fn in ways.items():
            each = sync_each(fn, device, 10, 3)
            cpu, t = [], time.perf_counter()
            for _ in range(calls):
                c = time.thread_time()
                fn()
                cpu.append(time.thread_time() - c)
            sync()
            out[way] = {"ms_sync_each": 1e3 * median(each), "ms_back_to_back": 1e3 * (time.perf_counter() - t) / calls,
                        "main_thread_cpu_ms": 1e3 * median(cpu)}
        if device == "cuda":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    ways["unchecked"]()
                sync()
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            out["kernels_per_forward"] = len(kernels) / 3
            out["kernel_ms_per_forward"] = sum(e.device_time for e in kernels) / 3 / 1e3
    return out


def loader_rate(data: Path, bundle, cfg: config.ScoreConfig, gpu: bool) -> dict:
    """Files per second through the scorer's DataLoader alone: whole (worker start-up included) and
    steady (from the first batch to the last)."""
    loader, ring = batching.score_loader(inputs.list_inputs(str(data)), bundle, cfg, gpu)
    if ring is not None and gpu:
        ring.register()  # page-locked as in a run; outside the timed loop
    try:
        t0, first, n, n_first = time.perf_counter(), 0.0, 0, 0
        for batch in loader:
            if not n:
                first, n_first = time.perf_counter(), len(batch["files"])
            n += len(batch["files"])
        t1 = time.perf_counter()
    finally:
        if ring is not None:
            ring.unregister()
    return {"whole_files_per_s": n / (t1 - t0), "steady_files_per_s": (n - n_first) / (t1 - first),
            "ring": ring is not None}


def worker_cost(data: Path, bundle, cfg: config.ScoreConfig, variants: list[str], repeats: int,
                batches: int = 8) -> dict:
    """Microseconds per file of reading and collating the first ``batches`` batches into a ring, one
    process, each variant's dataset in turn (after one untimed pass: page cache, ring pages)."""
    items = inputs.list_inputs(str(data))
    sizes = [readers.approx_length(it.path) for it in items]
    keys = list(iter(batching.BucketBatchSampler(sizes, cfg.batch_size)))[:batches]
    ring = BatchRing(4, max(len(k) for k in keys) * max(sizes) // 2)
    collate = batching.Collate(ring)
    datasets = {v: batching.ScoreDataset(items, bundle.sample_rate, bundle.in_channels, bundle.model.samples_per_frame,
                                  sizes, VARIANTS[v].get("direct_wav", True)) for v in variants}
    per_file: dict[str, list[float]] = collections.defaultdict(list)
    for rep in range(repeats + 1):
        for v, ds in datasets.items():
            for k in keys:
                t = time.perf_counter()
                collate(ds.__getitems__(k))
                if rep:
                    per_file[v].append((time.perf_counter() - t) / len(k) * 1e6)
    return {v: {"us_per_file": median(x), "us_per_file_all": x} for v, x in per_file.items()}


class _FakeFiles(torch.utils.data.Dataset):
    """Batches as ScoreDataset reads them, without files: one frame of zeros per file."""

    def __init__(self, n: int, samples: int):
        self.n, self.signal = n, np.zeros((samples, 1), np.int16)

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, keys):
        n = len(keys)
        files = batching.BatchFiles([f"/data/clips/c{i % 10}/{i:07d}.wav" for _, i in keys], [f"c{i % 10}" for _, i in keys],
                             [None] * n, [1.0] * n, [True] * n)
        return batching.ReadBatch(keys[0][0], files, [self.signal] * n)


class _TimedWriter(score_writer.PartWriter):
    """A PartWriter that records wall and main-thread CPU time at every batch (or only records, ``write=False``)."""

    def __init__(self, *args, write: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.write, self.marks = write, []

    def add(self, *args, **kwargs):
        if self.write:
            super().add(*args, **kwargs)
        self.marks.append((time.perf_counter(), time.thread_time()))


def predict_loop_cost(bundle, cfg: config.ScoreConfig, gpu: bool, tmp: Path, n_batches: int, write: bool) -> dict:
    """ms per batch of the predict loop (Lightning, transfer, predict_step, PartWriter, progress bar)
    fed pre-built ring batches by ``cfg.num_workers`` workers, the model a stub returning zeros:
    wall and main-thread CPU, medians over batches after the first 10."""
    spf, K, B = bundle.model.samples_per_frame, len(bundle.labels) or 1, cfg.batch_size
    outputs: dict[torch.device, torch.Tensor] = {}

    def stub(x: torch.Tensor, check_values: bool = True) -> torch.Tensor:  # one frame per file: (n, 1, K) zeros
        if x.device not in outputs:
            outputs[x.device] = torch.zeros(B, 1, K, device=x.device)
        return outputs[x.device][: x.shape[0]]

    bundle.frame_outputs = stub
    workers = max(1, cfg.num_workers)
    ring = BatchRing(batching.PREFETCH * workers + SLACK, B * spf)
    sampler = batching.BucketBatchSampler([1] * (n_batches * B), B)
    loader = torch.utils.data.DataLoader(_FakeFiles(n_batches * B, spf), batch_sampler=sampler, num_workers=workers,
                                         collate_fn=batching.Collate(ring), pin_memory=gpu, prefetch_factor=batching.PREFETCH,
                                         multiprocessing_context="fork")
    parts = Path(tempfile.mkdtemp(dir=tmp))
    writer = _TimedWriter(parts, None, bundle, part_rows=cfg.part_rows, write=write)
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
        predict.predict_batches(loader, ring, bundle, TorchFrames(bundle), cfg, writer, n_batches * B)
    wall, cpu = (np.diff(np.array(writer.marks[10:]), axis=0) * 1e3).T
    return {"wall_ms_per_batch": float(np.median(wall)), "main_thread_cpu_ms_per_batch": float(np.median(cpu)),
            "parts": len(list(parts.glob("part-*.parquet")))}


def _busy(n: int) -> int:
    """Pure Python work holding the GIL: the main thread's own per-batch work, stood in for."""
    x = 0
    for i in range(n):
        x += i & 7
    return x


def writer_cost_on_main_thread(writer_cls, bundle, files, scored, tmp: Path, n_batches: int = 320,
                               work_s: float = 6e-3, **kwargs) -> float:
    """ms per batch that the writer costs the main thread: the main thread alternates ``work_s`` of
    Python work (about a batch's time at the GPU target, ~150 batches of 1024 clips per second) with
    handing a batch to ``writer_cls(parts, None, bundle, **kwargs)`` (what it does per batch), the
    writer's thread writing meanwhile; the time over the Python work alone, divided by the batches:
    the main thread's share of building rows, the GIL the writer thread takes from it, and waiting
    for a writer that cannot keep up (20 parts of 16 batches or more: past its queue's slack)."""
    n = 1
    while timed(lambda n=n: _busy(n), 1, 0)[0] < work_s:
        n *= 2
    alone = median(timed(lambda: _busy(n), 9))
    parts = Path(tempfile.mkdtemp(dir=tmp))
    writer = writer_cls(parts, None, bundle, **kwargs)
    t = time.perf_counter()
    for _ in range(n_batches):
        _busy(n)
        writer._write(files, rows.Scored(scored.scores), 0)
    spent = time.perf_counter() - t
    writer.finish(0)  # (untimed) the rest written
    writer.close()
    return (spent - n_batches * alone) / n_batches * 1e3


def main_cost(bundle_path: str, cfg: config.ScoreConfig, gpu: bool, variants: list[str], repeats: int, tmp: Path,
              n_batches: int = 200) -> dict:
    """The main process's per-batch costs (see the module docstring), ms. On a CPU with one torch
    thread: the stub's small tensor ops with several threads beside busy workers took ~10 ms each."""
    bundle = load_bundle(bundle_path)
    B, K, k = cfg.batch_size, len(bundle.labels) or 1, 16
    files = batching.BatchFiles([f"/data/clips/c{i % 10}/{i:07d}.wav" for i in range(B)], [f"c{i % 10}" for i in range(B)],
                         [None] * B, [1.0] * B, [True] * B)
    scored = rows.Scored(torch.softmax(torch.randn(B, K), -1))
    table = rows.result_rows(files, scored, bundle)[0]
    big = (batching.BatchFiles.concat([files] * k), rows.Scored.concat([scored] * k))
    big_table = rows.result_rows(*big, bundle)[0]
    out = tmp / "part.parquet"
    ms = 1e3
    out_ = {
        "result_rows_ms_per_batch": ms * median(timed(lambda: rows.result_rows(files, scored, bundle), 30)),
        "result_rows_ms_per_batch_in_16_batch_part": ms * median(timed(lambda: rows.result_rows(*big, bundle), 5)) / k,
        "part_write_ms_per_batch_old_encoding": ms * median(timed(lambda: score_writer.write_atomic(table, out), 30)),
        "part_write_ms_per_batch_new_encoding": ms * median(
            timed(lambda: score_writer.write_atomic(table, out, **score_writer.ROW_OPTIONS), 30)),
        "part_write_ms_per_batch_in_16_batch_part": ms * median(
            timed(lambda: score_writer.write_atomic(big_table, out, **score_writer.ROW_OPTIONS), 5)) / k,
    }
    lost = collections.defaultdict(list)
    for _ in range(repeats):
        for v in variants:
            lost[v].append(writer_cost_on_main_thread(score_writer.PartWriter, bundle, files, scored, tmp,
                                                      part_rows=dataclasses.replace(cfg, **VARIANTS[v]).part_rows))
    out_["writer_ms_per_batch_on_main_thread"] = {v: median(x) for v, x in lost.items()}

    class Trainer:  # what the progress bar's hooks read
        is_global_zero = True

    with contextlib.redirect_stderr(io.StringIO()):
        progress = predict._Progress(10**9, types.SimpleNamespace(seconds=0.0))
        progress.on_predict_start(Trainer(), None)
        out_["progress_ms_per_batch"] = ms * median(timed(
            lambda: progress.on_predict_batch_end(Trainer(), None, None, {"files": files}, 0), 200))
        progress.on_predict_end(Trainer(), None)
    loops: dict[str, list[dict]] = collections.defaultdict(list)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads if gpu else 1)
    try:
        for _ in range(repeats):
            for v in [*variants, "no writer"]:
                vcfg = dataclasses.replace(cfg, **VARIANTS.get(v, {}))
                loops[v].append(predict_loop_cost(bundle, vcfg, gpu, tmp, n_batches, write=v != "no writer"))
    finally:
        torch.set_num_threads(threads)
    out_["predict_loop"] = {v: {key: median([r[key] for r in runs]) for key in runs[0]} | {"runs": runs}
                            for v, runs in loops.items()}
    return out_


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--bundle", default=None, help="bundle directory (default artifacts/kws_default or random)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-ring", action="store_true",
                   help="batches through DataLoader's ordinary shared-memory path instead of the BatchRing")
    p.add_argument("--parts", default="score", help=f"comma-separated, of {','.join(PARTS)}")
    p.add_argument("--variants", default="new", help=f"comma-separated, of {','.join(VARIANTS)}")
    p.add_argument("--compare", action="store_true", help="every part, variants old and new")
    p.add_argument("--out", default=None, help="folder for the result JSON (default benchmarks/results)")
    p.add_argument("--tag", default="", help="appended to the result's name")
    args = p.parse_args()
    parts = list(PARTS) if args.compare else args.parts.split(",")
    variants = ["old", "new"] if args.compare else args.variants.split(",")
    if unknown := (set(parts) - set(PARTS)) | (set(variants) - set(VARIANTS)):
        p.error(f"unknown parts or variants: {sorted(unknown)}")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    result = {"benchmark": "score", "machine": machine(), "config": vars(args) | {"parts": parts, "variants": variants},
              "variants": {v: VARIANTS[v] for v in variants}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_path, result["model"] = default_bundle(args.bundle, tmp)
        t = time.time()
        write_files(tmp / "data", args.files, args.seconds)
        print(f"wrote {args.files} files in {time.time() - t:.1f} s", flush=True)
        bundle = load_bundle(bundle_path)
        common = dict(model=bundle_path, input=str(tmp / "data"), batch_size=args.batch_size,
                      num_workers=args.num_workers, accelerator="gpu" if gpu else "cpu", mlflow=False,
                      ring=False if args.no_ring else None)
        cfgs = {v: config.ScoreConfig(output="", **common, **VARIANTS[v]) for v in variants}
        if "worker" in parts:
            result["worker"] = worker_cost(tmp / "data", bundle, cfgs[variants[0]], variants, args.repeats)
            print("worker, us per file:", {v: round(r["us_per_file"], 1) for v, r in result["worker"].items()})
        if "loader" in parts:
            runs = collections.defaultdict(list)
            for _ in range(args.repeats):
                for v in variants:  # through the ring unless --no-ring, also on the CPU
                    cfg = dataclasses.replace(cfgs[v], ring=not args.no_ring)
                    runs[v].append(loader_rate(tmp / "data", bundle, cfg, gpu))
            result["loader"] = {v: {"steady_files_per_s": median([r["steady_files_per_s"] for r in rs]),
                                    "whole_files_per_s": median([r["whole_files_per_s"] for r in rs]), "runs": rs}
                                for v, rs in runs.items()}
            print("loader, files/s steady:", {v: round(r["steady_files_per_s"]) for v, r in result["loader"].items()})
        if "main" in parts:
            result["main"] = main_cost(bundle_path, cfgs[variants[0]], gpu, variants, args.repeats, tmp)
            print("main, ms per batch:", {k: round(v, 3) for k, v in result["main"].items() if isinstance(v, float)},
                  {v: (round(r["wall_ms_per_batch"], 2), round(r["main_thread_cpu_ms_per_batch"], 2))
                   for v, r in result["main"]["predict_loop"].items()})
        if "forward" in parts:
            result["forward"] = forward_cost(bundle, args.batch_size, args.seconds, device)
            print("forward, ms per batch:", {k: {m: round(x, 2) for m, x in v.items()} if isinstance(v, dict) else round(v, 2)
                                             for k, v in result["forward"].items()})
        if "score" in parts:
            bare = [bare_forward(bundle, args.batch_size, args.seconds, device)]
            runs = collections.defaultdict(list)
            for r in range(args.repeats):  # the first run on a fresh machine also compiles the kernels
                for v in variants:
                    out = tmp / f"scores_{v}{r}.parquet"
                    s = job.score(dataclasses.replace(cfgs[v], output=str(out)))
                    runs[v].append((s["audio_s_per_s"], s["steady_audio_s_per_s"], s.get("cuda_graph_batches")))
            bare.append(bare_forward(bundle, args.batch_size, args.seconds, device))
            # the ceiling: the model's fastest forward here (graph replay on a GPU), median of its two readings
            kind = "graphs" if gpu else "unchecked"
            bare_med = median([b[kind] for b in bare])
            result["bare_forward_audio_s_per_s"] = bare
            result["bare_forward_ceiling"] = kind
            result["score"] = {}
            for v, rs in runs.items():
                whole, steady = median([x[0] for x in rs]), median([x[1] for x in rs])
                result["score"][v] = {"scorer_whole_run_audio_s_per_s": [x[0] for x in rs],
                                      "scorer_steady_audio_s_per_s": [x[1] for x in rs],
                                      "cuda_graph_batches": [x[2] for x in rs],
                                      "scorer_x_realtime_whole_run": whole, "scorer_x_realtime_steady": steady,
                                      "steady_over_bare": steady / bare_med, "whole_run_over_bare": whole / bare_med,
                                      "steady_over_bare_eager": steady / median([b["eager"] for b in bare])}
                print(f"scorer ({v}): {whole:.0f}x real time over the whole run (start-up included), {steady:.0f}x "
                      f"steady; bare forward ({kind}): {bare_med:.0f}x; steady/bare {steady / bare_med:.2f}")
    name = f"score_{'gpu' if gpu else 'cpu'}_{args.seconds:g}s" + ("_noring" if args.no_ring else "") + \
        ("_compare" if args.compare else "") + (f"_{args.tag}" if args.tag else "")
    write_result(name, result, args.out)


if __name__ == "__main__":
    main()
