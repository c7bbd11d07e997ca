"""Offline batch scoring: files -> Parquet, resumable, constant memory, one or many GPUs.

    ssm-signal score --model artifacts/kws_default --input data/keywords --output scores.parquet [--frames]

Pipeline: inputs (a directory, a glob, or a CSV/Parquet manifest with path[, label]) are
listed and sorted by length so batches hold similar lengths (little padding); DataLoader
workers read a batch at a time, 16-bit PCM WAV at the model's rate with one read per file and
a header walk (``ssm_signal.data.wav_pcm16``), anything else decoded and resampled (the
bundle's own ``prepare_signal``, so results equal ``bundle.predict`` and a StreamingSession);
the model runs each padded batch in windows with the state carried across them (memory
independent of file length; causal, so padding after a file's end never changes its frames);
``Trainer.predict`` spreads batches over GPUs with DDP, and a prediction writer appends the
rows as atomic Parquet parts of several batches. A rerun skips the files already in the parts,
so a killed run resumes and ends with exactly one row per input. Bad inputs get an error row
and scoring goes on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import glob as globlib
import json
import logging
import os
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pipelines.batch_graphs import BatchGraphs
from pipelines.batch_ring import SLACK, BatchRing, pad_batch
from ssm_signal.bundle import (
    Bundle,
    clip_labels,
    clip_scores,
    load_bundle,
    outputs_to_prediction,
    pcm_to_float,
    prepare_signal,
)
from ssm_signal.data.wav_pcm16 import read_pcm16_wav

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
        # os.walk and plain strings, the label once per folder: listing 100k files through pathlib
        # objects, or path functions per file, takes seconds
        root, exts = os.path.normpath(spec), AUDIO_EXT | {".npy"}
        items = []
        for d, _, files in os.walk(root):
            # Speech Commands / labelled-folder layout: the parent folder is the label
            label, prefix = (os.path.basename(d) if d != root else None), d + os.sep
            items += [Item(prefix + f, label) for f in files if f[f.rfind("."):].lower() in exts and "." in f]
        items.sort(key=lambda it: it.path)
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


def read_pcm16(path: str, sample_rate: int, channels: int, min_samples: int) -> np.ndarray | None:
    """(L, C) int16 samples when the file is 16-bit PCM already at the model's rate and channel
    count with at least ``min_samples`` (most audio collections: nothing to resample, downmix or
    check for NaN, and half the bytes of float32 to move); None for anything else, which takes
    :func:`read_signal` and :func:`prepare_signal`. ``pcm_to_float`` of these samples, run on the
    device, equals soundfile's float32 decoding of the same file bit for bit (both divide by 2^15).

    WAV files are read with the standard library's ``wave`` (a header parse and one read: 40 us
    per one-second clip against soundfile's 105 us on these hosts); other containers, and WAV
    variants ``wave`` does not take (e.g. WAVE_FORMAT_EXTENSIBLE before Python 3.12), through
    soundfile. The scorer's workers try the cheaper ``read_pcm16_wav`` first (:class:`ScoreDataset`):
    this is the path for the WAV files it declines.
    """
    suffix = os.path.splitext(path)[1].lower()  # per file, on the workers' critical path: no pathlib
    if suffix not in AUDIO_EXT:
        return None
    if suffix == ".wav":
        try:
            with wave.open(path, "rb") as w:
                if (not _model_pcm16("PCM_16" if w.getsampwidth() == 2 else "", w.getframerate(), w.getnchannels(),
                                     sample_rate, channels) or w.getnframes() < min_samples):
                    return None
                data = w.readframes(w.getnframes())
                frames = len(data) // (2 * channels)  # a truncated file ends mid-frame: whole frames, as soundfile
                pcm = np.frombuffer(data, dtype="<i2", count=frames * channels).reshape(frames, channels)
                return pcm if frames >= min_samples else None  # too short: the generic reader says so
        except (wave.Error, EOFError, OSError):
            pass  # soundfile may still read it, or reports the problem
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            if not _model_pcm16(f.subtype, f.samplerate, f.channels, sample_rate, channels) or f.frames < min_samples:
                return None
            return f.read(dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None  # the generic reader reports the problem in the file's row


def _model_pcm16(subtype: str, rate: int, file_channels: int, sample_rate: int, channels: int) -> bool:
    """A header that :func:`read_pcm16` takes: 16-bit PCM at the model's rate and channel count."""
    return subtype == "PCM_16" and rate == sample_rate and file_channels == channels


def is_pcm16(path: str, sample_rate: int, channels: int) -> bool:
    """Whether a file's header says 16-bit PCM at this rate and channel count (what :func:`read_pcm16` takes)."""
    if os.path.splitext(path)[1].lower() not in AUDIO_EXT:
        return False
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return _model_pcm16(info.subtype, info.samplerate, info.channels, sample_rate, channels)


def approx_length(path: str) -> int:
    """Length estimate for bucketing: the file size. Proportional to the length for PCM audio and
    tables, close for compressed audio; a wrong guess costs padding, never results. Reading every
    header instead (``soundfile.info``) took ~3 s per 20k files before the first batch."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


READ_BUFFER_KEEP = 256 << 20  # bytes: a worker keeps its read buffer up to this size


class ScoreDataset(Dataset):
    """Reads a batch of files per call; failures become error entries, never exceptions.

    Keys are ``(batch_no, index)`` pairs from :class:`BucketBatchSampler`. DataLoader hands each
    batch's keys to :meth:`__getitems__` at once (torch's map-style fetcher does when the dataset
    defines it), which returns a :class:`ReadBatch` for :class:`Collate`: the metadata as columns
    and, per decoded file, an (L, C) int16 numpy array (16-bit PCM at the model's rate and channel
    count: nothing to resample, downmix or check for NaN) or an (L, C) float32 tensor at the model's
    rate (any other input, through :meth:`read`).

    WAV files go first through :func:`read_pcm16_wav` (``direct_wav``): one read of the whole file
    (its size from the listing, ``sizes``) into a buffer the worker reuses, and a header walk, a
    fraction of the ``wave`` module's per-file cost, which at GPU rates is the scorer's limit for
    short clips. What it declines takes :meth:`read`, the general path, so every other case (other
    formats and rates, error rows) behaves as before; ``direct_wav=False`` sends every file there.
    """

    def __init__(self, items: list[Item], sample_rate: int, channels: int, min_samples: int,
                 sizes: list[int] | None = None, direct_wav: bool = True):
        self.paths, self.labels = [it.path for it in items], [it.label for it in items]
        self.sample_rate, self.channels, self.min_samples = sample_rate, channels, min_samples
        self.sizes = sizes if sizes is not None else [approx_length(p) for p in self.paths]
        self.direct_wav = direct_wav
        self._buf = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> ReadBatch:
        """One file, as a batch of one (DataLoader calls :meth:`__getitems__`)."""
        return self.__getitems__([key])

    def __getitems__(self, keys: list[tuple[int, int]]) -> ReadBatch:
        n, rate, min_samples = len(keys), self.sample_rate, self.min_samples
        signals: list[np.ndarray | Tensor] = []
        ok, error, duration = [False] * n, [None] * n, [0.0] * n
        buf, at = (self._read_buffer(keys) if self.direct_wav else None), 0
        for j, (_, i) in enumerate(keys):
            path, pcm = self.paths[i], None
            # os.path.splitext, as read_pcm16: the same files take the int16 path as before
            if buf is not None and os.path.splitext(path)[1].lower() == ".wav":
                size = self.sizes[i]
                pcm = read_pcm16_wav(path, size, rate, self.channels, buf[at:])
                at += size + (size & 1)  # even offsets: the int16 views stay aligned
                if pcm is not None and pcm.shape[0] < min_samples:
                    pcm = None  # the general path reports it too short
            if pcm is not None:
                signal, duration[j] = pcm, pcm.shape[0] / rate
            else:
                signal, duration[j], error[j] = self.read(path)
            if signal is not None:
                signals.append(signal)
                ok[j] = True
        files = BatchFiles([self.paths[i] for _, i in keys], [self.labels[i] for _, i in keys], error, duration, ok)
        return ReadBatch(keys[0][0] if keys else -1, files, signals)

    def _read_buffer(self, keys: list[tuple[int, int]]) -> memoryview:
        """A buffer for the whole files of this batch, reused from batch to batch (each worker's own:
        made on first use, after the fork). Fresh memory per file or per batch is page-faulted in on
        every use: the reading loop ran at half the speed. Buffers over :data:`READ_BUFFER_KEEP` are
        not kept."""
        need = sum(self.sizes[i] + 1 for _, i in keys) + 1  # a byte more per file: see read_pcm16_wav
        buf = self._buf
        if buf is None or len(buf) < need:
            buf = memoryview(bytearray(need))
            self._buf = buf if need <= READ_BUFFER_KEEP else None
        return buf

    def read(self, path: str) -> tuple[np.ndarray | Tensor | None, float, str | None]:
        """One file through the general path: ``(signal, seconds, None)``, or ``(None, seconds, error)``.

        The signal is :func:`read_pcm16`'s (L, C) int16 array where it takes the file, else the (L, C)
        float32 tensor of :func:`read_signal` and ``prepare_signal``; seconds of the file as read
        (0 where it could not be read).
        """
        seconds = 0.0
        try:
            pcm = read_pcm16(path, self.sample_rate, self.channels, self.min_samples)
            if pcm is not None:
                return pcm, pcm.shape[0] / self.sample_rate, None
            raw, rate = read_signal(path)
            seconds = raw.shape[0] / rate if raw.ndim else 0.0
            x = prepare_signal(raw, rate, self.sample_rate, self.channels)[0]
            if x.shape[0] < self.min_samples:
                raise ValueError(f"too short: {x.shape[0]} samples, need at least {self.min_samples}")
            return x, seconds, None
        except Exception as e:  # any decoding problem is reported in the file's row
            return None, seconds, f"{type(e).__name__}: {e}"


@dataclasses.dataclass
class BatchFiles:
    """A batch's per-file metadata as columns (length n, one entry per file, in batch order).

    Columns rather than one dict per file: a batch crosses from its worker as a handful of lists
    (cheap to pickle), DataLoader's pinning thread has no per-file structure to walk (it looks
    inside lists and dicts for tensors: at 1024 files per batch that walk was the main process's
    largest cost, benchmarks/results/score_gpu_loader_diag_20261125.json), and the Parquet rows
    are built column by column.
    """

    path: list[str]
    label: list[str | None]  # the true label where known
    error: list[str | None]
    duration: list[float]  # seconds of signal (0 where decoding failed)
    ok: list[bool]

    def __len__(self) -> int:
        return len(self.path)

    @classmethod
    def concat(cls, parts: list[BatchFiles]) -> BatchFiles:
        """Several batches' files as one, in order."""
        if len(parts) == 1:
            return parts[0]
        out = cls([], [], [], [], [])
        for p in parts:
            for f in dataclasses.fields(cls):
                getattr(out, f.name).extend(getattr(p, f.name))
        return out


@dataclasses.dataclass
class ReadBatch:
    """One batch as :meth:`ScoreDataset.__getitems__` read it, in the worker.

    batch_no: its number in this DataLoader's order (its :class:`BatchRing` slot); files: n entries;
    signals: one per file with ``files.ok``, in batch order, each (L_i, C) int16 numpy or float32 tensor.
    The int16 arrays of WAV files read directly are views into the dataset's read buffer, which its
    next ``__getitems__`` overwrites: a batch is collated (copied out) before the next is read.
    """

    batch_no: int
    files: BatchFiles
    signals: list[np.ndarray | Tensor]


class Collate:
    """A :class:`ReadBatch` -> one zero-padded (n_ok, L_max, C) batch plus :class:`BatchFiles`. Runs in the worker.

    The batch is int16 PCM when every file in it is, else float32 (int16 files converted by
    ``pcm_to_float``, as the device would). An int16 batch goes into its :class:`BatchRing` slot
    when there is a ring and it fits (``batch["ring"] = (slot, batch_no, shape)``), else into
    ``batch["x"]``, DataLoader's ordinary shared-memory tensor. The signals stay in the worker: at
    most one tensor per batch crosses to the main process.
    """

    def __init__(self, ring: BatchRing | None = None):
        self.ring = ring

    def __call__(self, read: ReadBatch) -> dict[str, Any]:
        ok = read.signals
        # no tensor but x crosses to the main process: a torch tensor travels as a shared-memory file
        # descriptor, handed over through a socket per batch (25 ms on the H100 host), and is pinned
        out: dict[str, Any] = {"files": read.files, "x": None, "ring": None, "lengths": None}
        if not ok:
            return out
        out["lengths"] = np.array([s.shape[0] for s in ok], dtype=np.int64)
        length, channels = int(out["lengths"].max()), ok[0].shape[1]
        pcm = all(isinstance(s, np.ndarray) for s in ok)  # int16 arrays
        if pcm and self.ring is not None and self.ring.fits(len(ok), length, channels):
            slot, shape = self.ring.write(read.batch_no, ok)
            out["ring"] = (slot, read.batch_no, shape)
            return out
        if pcm:
            x = torch.from_numpy(pad_batch(ok, length, channels))
        else:
            x = torch.zeros(len(ok), length, channels)
            for i, s in enumerate(ok):
                x[i, : s.shape[0]] = pcm_to_float(torch.tensor(s)) if isinstance(s, np.ndarray) else s
        out["x"] = x
        return out


def length_buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches: similar lengths share a batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class BucketBatchSampler(torch.utils.data.Sampler):
    """Length-bucketed batches of ``(batch_no, index)`` keys; under DDP each rank takes every
    world_size-th batch and numbers its own batches 0, 1, 2, ... (its DataLoader's order)."""

    def __init__(self, lengths: list[int], batch_size: int):
        self.batches = length_buckets(lengths, batch_size)

    def _mine(self) -> list[list[int]]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
            return self.batches[r::w]
        return self.batches

    def __iter__(self):
        return iter([[(j, i) for i in b] for j, b in enumerate(self._mine())])

    def __len__(self) -> int:
        return len(self._mine())


# ---------------------------------------------------------------------------------------------
# the model side
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Scored:
    """One batch's results as ``predict_step`` returns them, possibly still on their way.

    scores: (n_ok, K) host tensor (pinned, filled by an asynchronous copy on a GPU) or None when no
    file of the batch decoded; frames: per file (F_i, out_dim) host tensors with ``--frames``.
    :meth:`wait` blocks until they are there, then runs ``check`` (for a batch read from a ring
    slot: :meth:`BatchRing.check`, that the slot was not reused before its copy completed).
    """

    scores: Tensor | None
    frames: list[Tensor] | None = None
    ready: torch.cuda.Event | None = None
    check: Callable[[], None] | None = None

    @classmethod
    def concat(cls, parts: list[Scored]) -> Scored:
        """Several batches' results (each waited for) as one: scores and frames in batch order."""
        if len(parts) == 1:
            return parts[0]
        scores = [p.scores for p in parts if p.scores is not None]
        frames = [p.frames for p in parts if p.frames is not None]
        return cls(torch.cat(scores) if scores else None, [f for fs in frames for f in fs] if frames else None)

    def wait(self) -> Scored:
        if self.ready is not None:
            self.ready.synchronize()
            self.ready = None
        if self.check is not None:
            self.check()
            self.check = None
        return self


class Scorer(L.LightningModule):
    """Wraps a bundle's model for ``Trainer.predict``: padded batch -> :class:`Scored` clip scores (and frames).

    The clip scores are reduced on the device (:func:`clip_scores`, the batched twin of
    ``outputs_to_prediction``), so without ``--frames`` a batch crosses back as one small tensor.
    On a GPU nothing in a step waits for the GPU: the batch's samples and valid frame counts go
    over on a copy stream (overlapping the previous batch's forward), int16 PCM becomes float on
    the device, the forward (:meth:`forward_batch`) is one CUDA-graph replay per batch
    (:class:`BatchGraphs`; ``cuda_graphs=False``: launched kernel by kernel, its eager twin), and the
    scores come back by an asynchronous copy that :class:`PartWriter` waits for one batch later.
    ``batch_size``: the job's, the rows graphs are padded to.
    """

    def __init__(self, bundle: Bundle, frames: bool = False, ring: BatchRing | None = None,
                 cuda_graphs: bool = True, batch_size: int = 1):
        super().__init__()
        self.bundle = bundle
        self.model = bundle.model
        self.frames = frames
        self.ring = ring
        self.cuda_graphs, self.batch_size = cuda_graphs, batch_size
        self.graphs: BatchGraphs | None = None
        self._copy_stream: torch.cuda.Stream | None = None

    def on_predict_start(self):
        if self.device.type != "cuda":
            return
        if self.ring is not None and not self.ring.register():
            log.warning("could not page-lock the batch ring; copies to the GPU will be synchronous")
        if self.cuda_graphs:
            self.graphs = BatchGraphs(self.forward_batch, self.batch_size, self.model.samples_per_frame)

    def forward_batch(self, x: Tensor, frames: Tensor) -> tuple[Tensor, ...]:
        """A padded batch -> (clip scores (B, K),) or, with frames, (scores, frame outputs (B, F, out_dim)).

        x: (B, L, C) int16 PCM or float32 at the bundle rate; frames: (B,) int64 valid frames per
        item (>= 1), on x's device. The :class:`BatchGraphs` body, and its eager twin. Nothing here
        synchronises with the device: the values are not scanned for NaN/Inf again (the workers did:
        16-bit PCM cannot hold them, and ``prepare_signal`` rejects them), and the windows start at
        frame phase 0 (``Bundle.frame_outputs``).
        """
        if x.dtype == torch.int16:
            x = pcm_to_float(x)
        y = self.bundle.frame_outputs(x, check_values=False)  # windowed with carried state, as predict()
        scores = clip_scores(y, frames, self.bundle.config)
        return (scores, y) if self.frames else (scores,)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # only the samples go to the device; Lightning's default would walk every item's metadata
        src = batch["x"]
        if batch["ring"] is not None:
            slot, _, shape = batch["ring"]
            src = self.ring.view(slot, shape)
        if src is None:
            return batch
        frames = batch["frames_host"] = torch.from_numpy(batch["lengths"] // self.model.samples_per_frame)
        if device.type == "cuda":
            if self._copy_stream is None:
                self._copy_stream = torch.cuda.Stream(device)
            with torch.cuda.stream(self._copy_stream):
                batch["x"] = src.to(device, non_blocking=True)
                # from page-locked memory: a copy from pageable memory would wait for the GPU
                batch["frames"] = frames.pin_memory().to(device, non_blocking=True)
            batch["copied"] = self._copy_stream.record_event()
        else:  # a ring slot is rewritten later: the model must not read it in place
            batch["x"] = (src.clone() if batch["ring"] is not None else src).to(device)
            batch["frames"] = frames
        return batch

    def predict_step(self, batch, batch_idx):
        check = None if batch["ring"] is None else functools.partial(self.ring.check, *batch["ring"][:2])
        x, n_frames = batch["x"], batch.get("frames")
        if x is None:
            return Scored(None)
        if "copied" in batch:
            stream = torch.cuda.current_stream(x.device)
            stream.wait_event(batch["copied"])
            x.record_stream(stream)  # allocated on the copy stream, used on this one
            n_frames.record_stream(stream)
        out = (self.graphs or self.forward_batch)(x, n_frames)
        scores, frames = out[0], None
        if self.frames:
            y = out[1].float().cpu()  # before the next batch: the graph's outputs are overwritten
            frames = [y[i, :f] for i, f in enumerate(batch["frames_host"].tolist())]
        if not scores.is_cuda:
            return Scored(scores, frames, None, check)
        host = torch.empty(scores.shape, dtype=scores.dtype, pin_memory=True)
        host.copy_(scores, non_blocking=True)  # queued before the next replay overwrites scores
        return Scored(host, frames, torch.cuda.current_stream(scores.device).record_event(), check)


def result_rows(files: BatchFiles, out: Scored, bundle: Bundle) -> tuple[pa.Table, list[pd.DataFrame]]:
    """Rows of ``files`` (one or several batches) as a table in SCHEMA, built column-wise, and, with frames,
    one frame table per file. ``out``: their results, waited for (scores of the ok files, in order)."""
    n = len(files)
    ok = np.asarray(files.ok, dtype=bool)
    ok_pos = np.flatnonzero(ok)
    label: list[str | None] = [None] * n
    top = np.zeros(n)
    s = np.zeros((0, 0))
    frame_tables = []
    if len(ok_pos):
        s = out.scores.double().numpy()
        top[ok_pos] = s.max(axis=1)
        labels = clip_labels(s, bundle.config)
        if len(ok_pos) == n:
            label = labels
        else:
            for i, lab in zip(ok_pos.tolist(), labels, strict=True):
                label[i] = lab
        for j, i in enumerate(ok_pos if out.frames is not None else []):
            p = outputs_to_prediction(out.frames[j], bundle.config)
            df = pd.DataFrame(p.frame_scores, columns=bundle.labels or
                              [f"out{k}" for k in range(p.frame_scores.shape[1])])
            df.insert(0, "frame", np.arange(len(df)))
            df.insert(0, "path", files.path[i])
            frame_tables.append(df)
    # the scores column from one flat array: row i holds s[j] where ok, null where not
    counts = np.zeros(n, dtype=np.int32)
    counts[ok_pos] = s.shape[1] if len(ok_pos) else 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    scores = pa.ListArray.from_arrays(offsets, pa.array(s.reshape(-1), pa.float64()), mask=pa.array(~ok))
    table = pa.Table.from_pydict({
        "path": files.path,
        "status": np.where(ok, "ok", "error").tolist(),
        "error": files.error,
        "label": label, "score": pa.array(top, mask=~ok), "scores": scores,
        "duration_s": pa.array(files.duration, pa.float64()),
        "true_label": files.label,
        "model": [bundle.name] * n, "model_version": [bundle.version] * n,
    }, schema=SCHEMA)
    return table, frame_tables


SCHEMA = pa.schema([("path", pa.string()), ("status", pa.string()), ("error", pa.string()),
                    ("label", pa.string()), ("score", pa.float64()), ("scores", pa.list_(pa.float64())),
                    ("duration_s", pa.float64()), ("true_label", pa.string()), ("model", pa.string()),
                    ("model_version", pa.string())])


# Parquet options for tables in SCHEMA: dictionary encoding only for the columns of few distinct
# values (the default tries it on every column: on the per-label scores and the unique paths it is
# wasted work, half the cost of writing a part)
ROW_OPTIONS = {"use_dictionary": ["status", "error", "label", "true_label", "model", "model_version"]}


def write_atomic(table: pa.Table, path: Path, **options: Any) -> None:
    """``table`` to ``path`` as Parquet (``options``: pyarrow.parquet.write_table's), whole or not at all."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, **options)
    os.replace(tmp, path)  # a part either exists whole or not at all


class PartWriter(BasePredictionWriter):
    """Writes the predicted rows as Parquet parts (per rank), atomically, several batches to a part.

    Off the model's critical path: a batch's results are waited for one batch behind (when the next
    batch has been handed to the GPU; its scores were copied back asynchronously meanwhile, and its
    ring slot is checked then, before the slot can be reused) and added to the open part. A part is
    closed when it holds ``part_rows`` rows or its first batch is :attr:`PART_SECONDS` old, and at
    the end; one background thread builds its rows (:func:`result_rows`) and writes its files, at
    most :attr:`MAX_QUEUED` parts behind. Why several batches to a part: a part per 1024-file batch
    was ~4 ms of encoding and writing, with the writer thread taking the GIL from the main thread
    over and over, at GPU rates of 100+ batches per second. Everything is on disk when the epoch
    ends. A killed run loses at most the rows of the parts not yet renamed into place (the open one:
    at most ``part_rows`` rows or PART_SECONDS of work, and those in flight), which the rerun scores.
    """

    MAX_QUEUED = 4
    PART_SECONDS = 1.0  # a part is closed at its next batch once its first batch is this old

    def __init__(self, parts_dir: Path, frames_dir: Path | None, bundle: Bundle, lag: int = 1,
                 part_rows: int = 16384):
        super().__init__(write_interval="batch")
        self.parts_dir, self.frames_dir, self.bundle, self.lag = parts_dir, frames_dir, bundle, lag
        self.part_rows = part_rows
        # (files, results, rank) of batches not waited for yet: not the batch itself, whose samples may
        # be a large device tensor
        self.pending: collections.deque[tuple[BatchFiles, Scored, int]] = collections.deque()
        self.part: list[tuple[BatchFiles, Scored]] = []  # the open part's batches, results waited for
        self.part_len, self.part_t0 = 0, 0.0
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-parts")
        self.queued: collections.deque[concurrent.futures.Future] = collections.deque()
        self.seconds = 0.0
        self.first: float | None = None  # steady-state throughput: from the first batch written
        self.last = 0.0
        self.seconds_after_first = 0.0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.pending.append((batch["files"], prediction, trainer.global_rank))
        while len(self.pending) > self.lag:
            self._write(*self.pending.popleft())

    def on_predict_epoch_end(self, trainer, pl_module):
        while self.pending:
            self._write(*self.pending.popleft())
        self._close_part(trainer.global_rank)
        while self.queued:
            self.queued.popleft().result()  # re-raises a failed write
        self.last = time.time()
        super().on_predict_epoch_end(trainer, pl_module)

    def close(self) -> None:
        """Wait for the parts in flight and stop the writer thread (also after a failed run)."""
        self.io.shutdown(wait=True)

    def _write(self, files: BatchFiles, prediction: Scored, rank: int) -> None:
        prediction.wait()
        if not self.part:
            self.part_t0 = time.monotonic()
        self.part.append((files, prediction))
        self.part_len += len(files)
        if self.part_len >= self.part_rows or time.monotonic() - self.part_t0 >= self.PART_SECONDS:
            self._close_part(rank)
        batch_s = float(sum(files.duration))
        self.seconds += batch_s
        now = time.time()
        if self.first is None:
            self.first = now
        else:
            self.seconds_after_first += batch_s
        self.last = now

    def _close_part(self, rank: int) -> None:
        if not self.part:
            return
        batches, self.part, self.part_len = self.part, [], 0
        while self.queued and (self.queued[0].done() or len(self.queued) >= self.MAX_QUEUED):
            self.queued.popleft().result()
        self.queued.append(self.io.submit(self._write_part, batches, rank))

    def _write_part(self, batches: list[tuple[BatchFiles, Scored]], rank: int) -> None:
        files = BatchFiles.concat([f for f, _ in batches])
        table, frame_tables = result_rows(files, Scored.concat([s for _, s in batches]), self.bundle)
        for df in frame_tables:  # frames first: a finished row implies its frames exist
            key = _file_key(df["path"].iloc[0])
            out = self.frames_dir / f"file={key}"
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(pa.Table.from_pandas(df, preserve_index=False), out / "part-0.parquet")
        write_atomic(table, self.parts_dir / f"part-r{rank}-{uuid.uuid4().hex[:12]}.parquet", **ROW_OPTIONS)


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
    ring: bool | None = None  # batches through a BatchRing: None = on a GPU, for jobs large enough (make_ring)
    ring_bytes: int = 4 << 30  # at most this much page-locked host memory for the ring
    direct_wav: bool = True  # PCM16 WAV read by one os.read and a header walk (False: the wave module, as before)
    part_rows: int = 16384  # rows per Parquet part (several batches; 1: a part per batch, as before)
    cuda_graphs: bool = True  # on a GPU, the forward replayed as CUDA graphs (BatchGraphs); False: eager


PREFETCH = 2  # batches in flight per DataLoader worker (DataLoader's default, fixed: the ring is sized by it)


RING_MIN_REUSE = 2  # auto mode: the job moves at least this many times the ring's bytes
RING_STRATEGIES = ("auto", "ddp")  # each rank runs score() itself (Lightning's subprocess launcher)


def make_ring(sizes: list[int], batches: list[list[int]], cfg: ScoreConfig, pcm16_share: float = 1.0
              ) -> BatchRing | None:
    """The job's :class:`BatchRing`, or None where it would not pay or cannot work.

    Slots hold the largest batch of 16-bit PCM these file sizes imply (file bytes / 2 samples,
    headers included, so an upper bound), within ``cfg.ring_bytes``; a batch that still does not
    fit (compressed or longer files) takes DataLoader's ordinary path. Page-locking costs about
    as much per byte as one copy, paid once and in the main process (~0.3 s per GB on the H100
    host), while the ordinary path costs a few copies per byte spread over the workers. So with
    ``cfg.ring`` None (auto) the ring is made only when the job moves at least
    :data:`RING_MIN_REUSE` times its size, when at least half the files are 16-bit PCM at the
    model's rate (``pcm16_share``, from a sample of headers: other files never use the ring), and
    under a strategy whose ranks each make their own (:data:`RING_STRATEGIES`; spawned or forked
    ranks would share or inherit one ring).
    """
    slots = PREFETCH * max(cfg.num_workers, 1) + SLACK
    need = max(len(b) * max(sizes[i] for i in b) // 2 for b in batches)
    capacity = max(1, min(need, cfg.ring_bytes // (2 * slots)))
    if cfg.ring is None and (sum(sizes) < RING_MIN_REUSE * 2 * slots * capacity or pcm16_share < 0.5
                             or cfg.strategy not in RING_STRATEGIES):
        return None
    if capacity < need:
        log.info("batch ring: %d slots of %.0f MB (the largest batch needs %.0f MB; larger batches bypass it)",
                 slots, 2 * capacity / 1e6, 2 * need / 1e6)
    return BatchRing(slots, capacity)


def pcm16_share(paths: list[str], sample_rate: int, channels: int, sample: int = 32) -> float:
    """The share of ``sample`` evenly spaced files whose header says :func:`is_pcm16`."""
    picked = paths[:: max(1, len(paths) // sample)][:sample]
    return sum(is_pcm16(p, sample_rate, channels) for p in picked) / max(1, len(picked))


def score_loader(items: list[Item], bundle: Bundle, cfg: ScoreConfig, gpu: bool) -> tuple[DataLoader, BatchRing | None]:
    """The DataLoader of a scoring job (length-bucketed batches of ``items``) and its :class:`BatchRing`
    (None: the ordinary path). The ring is allocated here, before the workers fork, in the process
    that reads it (each DDP rank runs :func:`score`); ``gpu``: the job runs on a CUDA device."""
    sizes = [approx_length(it.path) for it in items]
    ds = ScoreDataset(items, bundle.sample_rate, bundle.channels, bundle.model.samples_per_frame, sizes,
                      cfg.direct_wav)
    sampler = BucketBatchSampler(sizes, cfg.batch_size)
    ring = None
    if cfg.ring or (cfg.ring is None and gpu):
        share = pcm16_share([it.path for it in items], bundle.sample_rate, bundle.channels)
        ring = make_ring(sizes, sampler.batches, cfg, share)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=Collate(ring),
                        pin_memory=gpu, prefetch_factor=PREFETCH if cfg.num_workers else None,
                        multiprocessing_context="fork" if ring is not None and cfg.num_workers else None)
    return loader, ring


def predict_batches(loader: Any, ring: BatchRing | None, bundle: Bundle, cfg: ScoreConfig, writer: PartWriter,
                    n_files: int) -> tuple[L.Trainer, Scorer]:
    """``Trainer.predict`` of the bundle's :class:`Scorer` over ``loader`` (batches as :class:`Collate`
    makes them, ``n_files`` files in all), ``writer`` writing the parts; returns the trainer and the
    scorer. The writer thread is stopped and the ring's page-locking undone also when it fails."""
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
                        logger=False, callbacks=[writer, _Progress(n_files, writer)], enable_model_summary=False,
                        enable_progress_bar=False, use_distributed_sampler=False)
    try:
        with torch.inference_mode():
            scorer = Scorer(bundle, cfg.frames, ring, cfg.cuda_graphs, cfg.batch_size)
            trainer.predict(scorer, dataloaders=loader, return_predictions=False)
    finally:
        writer.close()
        if ring is not None:
            ring.unregister()
    return trainer, scorer


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
    writer = PartWriter(parts_dir, frames_dir, bundle, part_rows=cfg.part_rows)
    graphs: dict[str, int] = {}
    if todo:
        gpu = cfg.accelerator != "cpu" and torch.cuda.is_available()
        loader, ring = score_loader(todo, bundle, cfg, gpu)
        trainer, scorer = predict_batches(loader, ring, bundle, cfg, writer, len(todo))
        graphs = dict(scorer.graphs.counts) if scorer.graphs is not None else {}
        trainer.strategy.barrier()  # every rank's parts are written before rank 0 merges
        if not trainer.is_global_zero:
            return {}
    table = pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in sorted(parts_dir.glob("part-*.parquet"))])
    # in arrow: pandas' isin on arrow-backed strings took 0.3 s per 50k rows
    table = table.filter(pc.is_in(table["path"], value_set=pa.array([it.path for it in items], pa.string())))
    df = table.to_pandas().drop_duplicates("path", keep="first").reset_index(drop=True)
    write_atomic(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False), out, **ROW_OPTIONS)
    wall = time.time() - t0
    summary = summarize(df, bundle, wall, len(todo), writer)
    if graphs:  # this rank's batches: replayed, captured (eager on a new shape), eager (past the limits)
        summary["cuda_graph_batches"] = graphs
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
        labels = set(bundle.labels)
        known = labelled[[v in labels for v in labelled["true_label"]]]
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
        self.bar.update(len(batch["files"]))
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
