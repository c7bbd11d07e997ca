"""Offline batch scoring: files -> Parquet, resumable, constant memory, one or many GPUs.

    ssm-signal score --model artifacts/kws_default --input data/keywords --output scores.parquet [--frames]

Pipeline: inputs (a directory, a glob, or a CSV/Parquet manifest with path[, label]) are
listed and sorted by length so batches hold similar lengths (little padding); DataLoader
workers decode and resample in parallel (the bundle's own ``prepare_signal``, so results
equal ``bundle.predict`` and a StreamingSession); the model runs each padded batch in
windows with the state carried across them (memory independent of file length; causal,
so padding after a file's end never changes its frames); ``Trainer.predict`` spreads
batches over GPUs with DDP, and a prediction writer appends every batch as an atomic
Parquet part. A rerun skips the files already in the parts, so a killed run resumes and
ends with exactly one row per input. Bad inputs get an error row and scoring goes on.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from ssm_signal.bundle import Bundle, clip_labels, clip_scores, load_bundle, outputs_to_prediction, prepare_signal

log = logging.getLogger("ssm_signal.pipelines")

AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
TABLE_EXT = {".csv", ".parquet", ".pq", ".npy"}


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Item:
    path: str
    label: str | None = None


def list_inputs(spec: str) -> list[Item]:
    """A directory (recursive), a glob, a manifest (.csv/.parquet with ``path`` [, ``label``]), or a
    Speech Commands split list (.txt: one path per line, relative to the list's folder; the label is
    the file's folder)."""
    p = Path(spec)
    if p.is_file() and p.suffix == ".txt":
        rels = [line.strip() for line in p.read_text().splitlines() if line.strip()]
        items = [Item(str(p.parent / r), Path(r).parent.name or None) for r in rels]
    elif p.is_file() and p.suffix in (".csv", ".parquet", ".pq") and _is_manifest(p):
        df = pd.read_parquet(p) if p.suffix != ".csv" else pd.read_csv(p)
        base = p.parent
        items = [Item(str((base / str(r["path"])) if not Path(str(r["path"])).is_absolute() else r["path"]),
                      None if "label" not in df.columns or pd.isna(r["label"]) else str(r["label"]))
                 for _, r in df.iterrows()]
    elif p.is_dir():
        # os.walk and plain strings: listing 100k files through pathlib objects takes seconds
        root, exts = os.path.normpath(spec), AUDIO_EXT | {".npy"}
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                       if os.path.splitext(f)[1].lower() in exts)
        # Speech Commands / labelled-folder layout: the parent folder is the label
        items = [Item(f, os.path.basename(os.path.dirname(f)) if os.path.dirname(f) != root else None) for f in paths]
    else:
        items = [Item(f) for f in sorted(globlib.glob(spec, recursive=True)) if Path(f).is_file()]
    if not items:
        raise ValueError(f"no input files found for {spec!r}")
    return items


def _is_manifest(p: Path) -> bool:
    cols = pd.read_parquet(p).columns if p.suffix != ".csv" else pd.read_csv(p, nrows=0).columns
    return "path" in cols


def read_signal(path: str) -> tuple[np.ndarray, int]:
    """Audio via soundfile ((L,) or (L, C)); sensor files: .npy (L, C) or a table of channel columns."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False), 1
    if suffix in (".csv", ".parquet", ".pq"):
        df = pd.read_parquet(path) if suffix != ".csv" else pd.read_csv(path)
        df = df.drop(columns=[c for c in ("time", "series_id", "label", "split") if c in df.columns])
        return df.to_numpy(dtype=np.float32), 1
    import soundfile as sf

    x, rate = sf.read(path, dtype="float32", always_2d=False)
    return x, int(rate)


def approx_length(path: str) -> int:
    """Length estimate for bucketing: the file size. Proportional to the length for PCM audio and
    tables, close for compressed audio; a wrong guess costs padding, never results. Reading every
    header instead (``soundfile.info``) took ~3 s per 20k files before the first batch."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class ScoreDataset(Dataset):
    """Decodes and prepares one file per item; failures become error items, never exceptions."""

    def __init__(self, items: list[Item], sample_rate: int, channels: int, min_samples: int):
        self.items, self.sample_rate, self.channels, self.min_samples = items, sample_rate, channels, min_samples

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        out = {"path": it.path, "label": it.label, "signal": None, "error": None, "duration": 0.0}
        try:
            raw, rate = read_signal(it.path)
            out["duration"] = raw.shape[0] / rate if raw.ndim else 0.0
            x = prepare_signal(raw, rate, self.sample_rate, self.channels)[0]
            if x.shape[0] < self.min_samples:
                raise ValueError(f"too short: {x.shape[0]} samples, need at least {self.min_samples}")
            out["signal"] = x
        except Exception as e:  # any decoding problem is reported in the file's row
            out["error"] = f"{type(e).__name__}: {e}"
        return out


class FileRows:
    """A batch's per-file metadata (one dict per file) in a plain object rather than a list.

    DataLoader's pinning thread walks lists and dicts element by element looking for tensors; at
    1024 files per batch that walk was the largest Python cost in the main process of a GPU run
    (benchmarks/results/score_gpu_loader_diag_20261125.json), and there is nothing in it to pin.
    """

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Items -> one zero-padded (n_ok, L_max, C) tensor plus per-file metadata.

    Runs in the worker. The items leave it without their signals: the padded tensor is the only
    tensor that crosses to the main process (one shared-memory handle per batch, not one per file).
    """
    ok = [b for b in batch if b["signal"] is not None]
    x = lengths = None
    if ok:
        lengths = torch.tensor([b["signal"].shape[0] for b in ok])
        x = torch.zeros(len(ok), int(lengths.max()), ok[0]["signal"].shape[1])
        for i, b in enumerate(ok):
            x[i, : b["signal"].shape[0]] = b["signal"]
    items = [{**{k: v for k, v in b.items() if k != "signal"}, "ok": b["signal"] is not None} for b in batch]
    return {"items": FileRows(items), "x": x, "lengths": lengths}


def length_buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches: similar lengths share a batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class BucketBatchSampler(torch.utils.data.Sampler):
    """Length-bucketed batches; under DDP each rank takes every world_size-th batch."""

    def __init__(self, lengths: list[int], batch_size: int):
        self.batches = length_buckets(lengths, batch_size)

    def _mine(self) -> list[list[int]]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
            return self.batches[r::w]
        return self.batches

    def __iter__(self):
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())


# ---------------------------------------------------------------------------------------------
# the model side
# ---------------------------------------------------------------------------------------------
class Scorer(L.LightningModule):
    """Wraps a bundle's model for ``Trainer.predict``: padded batch -> clip scores (and frames).

    Returns ``{"scores": (n_ok, K) host tensor, "frames": [(F_i, out_dim)] or None}``: the clip
    scores are reduced on the device (:func:`clip_scores`, the batched twin of
    ``outputs_to_prediction``), so without ``--frames`` a batch crosses to the host as one small
    tensor and the rows are built column-wise, keeping the host out of the GPU's way.
    """

    def __init__(self, bundle: Bundle, frames: bool = False):
        super().__init__()
        self.bundle = bundle
        self.model = bundle.model
        self.frames = frames

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # only the samples go to the device; Lightning's default would walk every item's metadata
        if batch["x"] is not None:
            batch["x"] = batch["x"].to(device, non_blocking=True)
        return batch

    def predict_step(self, batch, batch_idx):
        if batch["x"] is None:
            return {"scores": None, "frames": None}
        y = self.bundle.frame_outputs(batch["x"])  # windowed with carried state, as predict()
        n_frames = torch.div(batch["lengths"], self.model.samples_per_frame, rounding_mode="floor")
        scores = clip_scores(y, n_frames, self.bundle.config).cpu()
        frames = None
        if self.frames:
            y = y.float().cpu()
            frames = [y[i, : int(n_frames[i])] for i in range(y.shape[0])]
        return {"scores": scores, "frames": frames}


def result_rows(batch: dict[str, Any], out: dict[str, Any], bundle: Bundle) -> tuple[pa.Table, list[pd.DataFrame]]:
    """One batch's rows (a table in SCHEMA, built column-wise) and, with frames, one frame table per file."""
    items = batch["items"]
    n = len(items)
    ok_pos = [i for i, b in enumerate(items) if b["ok"]]
    label: list[str | None] = [None] * n
    score: list[float | None] = [None] * n
    scores: list[list[float] | None] = [None] * n
    frame_tables = []
    if ok_pos:
        s = out["scores"].double().numpy()
        top = s.max(axis=1)
        for j, (i, lab) in enumerate(zip(ok_pos, clip_labels(s, bundle.config), strict=True)):
            label[i], score[i], scores[i] = lab, float(top[j]), s[j].tolist()
        for j, i in enumerate(ok_pos if out["frames"] is not None else []):
            p = outputs_to_prediction(out["frames"][j], bundle.config)
            df = pd.DataFrame(p.frame_scores, columns=bundle.labels or
                              [f"out{k}" for k in range(p.frame_scores.shape[1])])
            df.insert(0, "frame", np.arange(len(df)))
            df.insert(0, "path", items[i]["path"])
            frame_tables.append(df)
    table = pa.Table.from_pydict({
        "path": [b["path"] for b in items],
        "status": ["ok" if b["ok"] else "error" for b in items],
        "error": [b["error"] for b in items],
        "label": label, "score": score, "scores": scores,
        "duration_s": [float(b["duration"]) for b in items],
        "true_label": [b["label"] for b in items],
        "model": [bundle.name] * n, "model_version": [bundle.version] * n,
    }, schema=SCHEMA)
    return table, frame_tables


SCHEMA = pa.schema([("path", pa.string()), ("status", pa.string()), ("error", pa.string()),
                    ("label", pa.string()), ("score", pa.float64()), ("scores", pa.list_(pa.float64())),
                    ("duration_s", pa.float64()), ("true_label", pa.string()), ("model", pa.string()),
                    ("model_version", pa.string())])


def write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # a part either exists whole or not at all


class PartWriter(BasePredictionWriter):
    """Writes each predicted batch as its own Parquet part (per rank), atomically."""

    def __init__(self, parts_dir: Path, frames_dir: Path | None, bundle: Bundle):
        super().__init__(write_interval="batch")
        self.parts_dir, self.frames_dir, self.bundle = parts_dir, frames_dir, bundle
        self.files = 0
        self.seconds = 0.0
        self.first: float | None = None  # steady-state throughput: from the first batch written
        self.last = 0.0
        self.seconds_after_first = 0.0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        table, frame_tables = result_rows(batch, prediction, self.bundle)
        for df in frame_tables:  # frames first: a finished row implies its frames exist
            key = _file_key(df["path"].iloc[0])
            out = self.frames_dir / f"file={key}"
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(pa.Table.from_pandas(df, preserve_index=False), out / "part-0.parquet")
        name = f"part-r{trainer.global_rank}-{uuid.uuid4().hex[:12]}.parquet"
        write_atomic(table, self.parts_dir / name)
        self.files += table.num_rows
        batch_s = float(sum(b["duration"] for b in batch["items"]))
        self.seconds += batch_s
        now = time.time()
        if self.first is None:
            self.first = now
        else:
            self.seconds_after_first += batch_s
        self.last = now


def _file_key(path: str) -> str:
    import hashlib

    return hashlib.sha1(path.encode()).hexdigest()[:16]


def finished_paths(parts_dir: Path) -> set[str]:
    if not parts_dir.exists():
        return set()
    done: set[str] = set()
    for f in parts_dir.glob("part-*.parquet"):
        done.update(pq.read_table(f, columns=["path"]).column("path").to_pylist())
    return done


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ScoreConfig:
    model: str
    input: str
    output: str
    frames: bool = False
    batch_size: int = 16
    num_workers: int = 2
    accelerator: str = "auto"
    devices: str | int = 1
    strategy: str = "auto"
    fail_on_error: bool = False
    mlflow: bool = True
    log_output: bool = False


def score(cfg: ScoreConfig) -> dict[str, Any]:
    """Run (or resume) a scoring job; returns the summary."""
    t0 = time.time()
    bundle = load_bundle(cfg.model)
    items = list_inputs(cfg.input)
    out = Path(cfg.output)
    parts_dir = out.with_name(out.name + ".parts")
    frames_dir = out.with_name(out.stem + "_frames") if cfg.frames else None
    parts_dir.mkdir(parents=True, exist_ok=True)
    done = finished_paths(parts_dir)
    todo = [it for it in items if it.path not in done]
    log.info("scoring %d files (%d already done) with %s v%s", len(todo), len(done), bundle.name, bundle.version)
    writer = PartWriter(parts_dir, frames_dir, bundle)
    if todo:
        ds = ScoreDataset(todo, bundle.sample_rate, bundle.channels, bundle.model.samples_per_frame)
        sampler = BucketBatchSampler([approx_length(it.path) for it in todo], cfg.batch_size)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate,
                            pin_memory=cfg.accelerator != "cpu" and torch.cuda.is_available())
        trainer = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
                            logger=False, callbacks=[writer, _Progress(len(todo), writer)], enable_model_summary=False,
                            enable_progress_bar=False, use_distributed_sampler=False)
        with torch.inference_mode():
            trainer.predict(Scorer(bundle, cfg.frames), dataloaders=loader, return_predictions=False)
        trainer.strategy.barrier()  # every rank's parts are written before rank 0 merges
        if not trainer.is_global_zero:
            return {}
    table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in sorted(parts_dir.glob("part-*.parquet"))])
    df = table.to_pandas().drop_duplicates("path", keep="first")
    wanted = {it.path for it in items}
    df = df[df["path"].isin(wanted)].reset_index(drop=True)
    write_atomic(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False), out)
    wall = time.time() - t0
    summary = summarize(df, bundle, wall, len(todo), writer)
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    if cfg.mlflow:
        _track(cfg, bundle, summary, out)
    return summary


def summarize(df: pd.DataFrame, bundle: Bundle, wall: float, scored_now: int, writer: PartWriter) -> dict[str, Any]:
    ok = df[df["status"] == "ok"]
    s: dict[str, Any] = {
        "model": bundle.name, "model_version": bundle.version, "files": int(len(df)), "ok": int(len(ok)),
        "errors": int((df["status"] == "error").sum()), "scored_this_run": scored_now,
        "error_kinds": df.loc[df["status"] == "error", "error"].str.split(":").str[0].value_counts().to_dict(),
        "wall_s": wall, "audio_s_this_run": writer.seconds,
        "files_per_s": scored_now / wall if wall > 0 else None,
        "audio_s_per_s": writer.seconds / wall if wall > 0 else None,
        # excludes start-up (model load, workers spawning): the rate a long job runs at
        "steady_audio_s_per_s": (writer.seconds_after_first / (writer.last - writer.first)
                                 if writer.first is not None and writer.last > writer.first else None),
    }
    labelled = ok[ok["true_label"].notna()]
    if len(labelled) and bundle.config.head.kind == "classify":
        known = labelled[labelled["true_label"].isin(bundle.labels)]
        s["accuracy"] = float((known["label"] == known["true_label"]).mean()) if len(known) else None
        s["labelled"] = int(len(known))
        cm = pd.crosstab(known["true_label"], known["label"]).reindex(index=bundle.labels, columns=bundle.labels,
                                                                     fill_value=0)
        s["confusion"] = {"labels": bundle.labels, "matrix": cm.to_numpy().tolist()}
    elif len(labelled) and bundle.config.head.kind == "anomaly":
        y = labelled["true_label"].isin(["1", "anomaly", "True", "true"]).astype(int).to_numpy()
        if 0 < y.sum() < len(y):
            from torchmetrics.functional.classification import binary_auroc

            s["roc_auc"] = float(binary_auroc(torch.tensor(labelled["score"].to_numpy()), torch.tensor(y)))
    return s


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"scored {s['files']} files: {s['ok']} ok, {s['errors']} errors "
             f"({', '.join(f'{n} {k}' for k, n in s['error_kinds'].items()) or 'none'})"]
    if s.get("audio_s_per_s"):
        lines.append(f"throughput this run: {s['files_per_s']:.1f} files/s, {s['audio_s_per_s']:.1f} s of signal per s")
    if s.get("accuracy") is not None:
        lines.append(f"accuracy: {s['accuracy']:.4f} over {s['labelled']} labelled files")
    if s.get("roc_auc") is not None:
        lines.append(f"ROC-AUC: {s['roc_auc']:.4f}")
    return "\n".join(lines)


class _Progress(L.Callback):
    """A tqdm bar with files/s and signal-seconds/s (the writer's running total: it runs first)."""

    def __init__(self, total: int, writer: PartWriter):
        self.total, self.writer = total, writer

    def on_predict_start(self, trainer, pl_module):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, unit="file", disable=not trainer.is_global_zero)
        self.t0, self.seconds0 = time.time(), self.writer.seconds

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.bar.update(len(batch["items"]))
        seconds = self.writer.seconds - self.seconds0
        self.bar.set_postfix(audio_s_per_s=f"{seconds / max(1e-9, time.time() - self.t0):.0f}")

    def on_predict_end(self, trainer, pl_module):
        self.bar.close()


def _track(cfg: ScoreConfig, bundle: Bundle, summary: dict[str, Any], out: Path) -> None:
    """Record the scoring run in MLflow: model version, input spec, counts, throughput."""
    from pipelines.tracking import experiment_id, tracking_client

    client = tracking_client()
    run = client.create_run(experiment_id("scoring"), run_name=f"score-{bundle.name}")
    rid = run.info.run_id
    for k, v in {"model": bundle.name, "model_version": bundle.version, "model_uri": cfg.model,
                 "input": cfg.input, "output": str(out), "frames": cfg.frames}.items():
        client.log_param(rid, k, v)
    for k in ("files", "ok", "errors", "scored_this_run", "wall_s", "files_per_s", "audio_s_per_s",
              "accuracy", "roc_auc"):
        if summary.get(k) is not None:
            client.log_metric(rid, k, float(summary[k]))
    if cfg.log_output:
        client.log_artifact(rid, str(out))
    client.log_artifact(rid, str(out.with_suffix(".summary.json")))
    client.set_terminated(rid)


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a scoring output (for tests and downstream use)."""
    yield from pq.read_table(path).to_pylist()
