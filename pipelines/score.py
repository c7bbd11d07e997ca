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
rows as atomic Parquet parts of several batches. Files too long to hold whole are read in blocks
with the state carried (``pipelines.score_long``: memory bounded by the window). A rerun skips
the files already in the parts, matched by the model's fingerprint and each file's identity
(path, size, modification time): a killed or SIGTERM-ed run resumes and ends with exactly one
row per input row, a changed file is rescored, and rows of another model are never mixed in (the
job refuses). Bad inputs (unreadable, not a regular file, not what the model reads, non-finite
model output) get an error row and scoring goes on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import signal
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pipelines.batch_ring import SLACK, BatchRing, pad_batch
from pipelines.errors import Interrupted, UsageError
from pipelines.score_inputs import (  # noqa: F401  (Item, list_inputs: this module's names before the split)
    AUDIO_EXT,
    TABLE_EXT,
    Item,
    check_output,
    display_path,
    list_inputs,
    path_key,
    soundfile_source,
)
from pipelines.score_long import LONG_BYTES, score_long_file, split_long
from ssm_signal.bundle import (
    Bundle,
    clip_labels,
    load_bundle,
    outputs_to_prediction,
    pcm_to_float,
    prepare_signal,
)
from ssm_signal.data.file_checks import file_problem, os_error_words
from ssm_signal.data.wav_pcm16 import read_pcm16_wav
from ssm_signal.events import DetectorConfig, EventDetector

log = logging.getLogger("ssm_signal.pipelines")


# ---------------------------------------------------------------------------------------------
# inputs (listing and identities: pipelines.score_inputs)
# ---------------------------------------------------------------------------------------------
def read_signal(path: str, audio: bool = True, model_rate: int | None = None) -> tuple[np.ndarray, int]:
    """An input file as ``(samples, rate)``: audio through soundfile ((L,) or (L, C)) for an audio model;
    a sensor table for a sensor model (.npy (L, C), or a .csv/.parquet of channel columns), at
    ``model_rate`` (a table has no rate of its own: it is read as the model's, as in training).
    A file of the other kind is an error, never a guess."""
    suffix = os.path.splitext(path)[1].lower()
    if audio and suffix not in AUDIO_EXT:
        raise ValueError(f"not an audio file ({suffix or 'no suffix'}): this model reads audio "
                         f"({', '.join(sorted(AUDIO_EXT))})")
    if not audio and suffix not in TABLE_EXT:
        raise ValueError(f"not a sensor table ({suffix or 'no suffix'}): this model reads "
                         f"{', '.join(sorted(TABLE_EXT))}")
    if suffix == ".npy":
        return np.load(path, allow_pickle=False), model_rate or 1
    if suffix in (".csv", ".parquet", ".pq"):
        df = pd.read_parquet(path) if suffix != ".csv" else pd.read_csv(path)
        df = df.drop(columns=[c for c in ("time", "series_id", "label", "split") if c in df.columns])
        return df.to_numpy(dtype=np.float32), model_rate or 1
    import soundfile as sf

    x, rate = sf.read(soundfile_source(path), dtype="float32", always_2d=False)
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
        with sf.SoundFile(soundfile_source(path)) as f:
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
        info = sf.info(soundfile_source(path))
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
                 sizes: list[int] | None = None, direct_wav: bool = True, audio: bool = True):
        self.paths, self.labels = [it.path for it in items], [it.label for it in items]
        # why a path cannot be read, found at listing: such a file is never opened (a FIFO would block)
        self.problems = [it.problem for it in items]
        self.sample_rate, self.channels, self.min_samples = sample_rate, channels, min_samples
        self.sizes = sizes if sizes is not None else [approx_length(p) for p in self.paths]
        self.direct_wav, self.audio = direct_wav, audio
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
            if self.problems[i] is not None:
                error[j] = f"FileError: {self.problems[i]}"
                continue
            # os.path.splitext, as read_pcm16: the same files take the int16 path as before
            if buf is not None and self.audio and os.path.splitext(path)[1].lower() == ".wav":
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
        problem = file_problem(path)  # one stat: never open what is not a regular file (a FIFO blocks)
        if problem is not None:
            return None, seconds, f"FileError: {problem}"
        try:
            pcm = read_pcm16(path, self.sample_rate, self.channels, self.min_samples) if self.audio else None
            if pcm is not None:
                return pcm, pcm.shape[0] / self.sample_rate, None
            raw, rate = read_signal(path, self.audio, self.sample_rate)
            seconds = raw.shape[0] / rate if raw.ndim else 0.0
            x = prepare_signal(raw, rate, self.sample_rate, self.channels)[0]
            if x.shape[0] < self.min_samples:
                raise ValueError(f"too short: {x.shape[0]} samples, need at least {self.min_samples}")
            return x, seconds, None
        except OSError as e:  # soundfile's "System error." says less than the errno does
            return None, seconds, f"FileError: {os_error_words(e)}"
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


@dataclasses.dataclass(frozen=True)
class RowIdentity:
    """What each row records of what it was scored from: the model's fingerprint and, per path, the
    input's ``(size, mtime_ns)`` at listing (-1 where unknown). A resumed job trusts a row only when
    all of these still hold."""

    fingerprint: str = ""
    files: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, bundle: Bundle, items: list[Item]) -> RowIdentity:
        return cls(bundle.fingerprint, {it.path: (it.size, it.mtime_ns) for it in items})


NON_FINITE = "NonFiniteOutput: the model's output is NaN or Inf for this input"


def result_rows(files: BatchFiles, out: Scored, bundle: Bundle, identity: RowIdentity | None = None
                ) -> tuple[pa.Table, list[pd.DataFrame]]:
    """Rows of ``files`` (one or several batches) as a table in SCHEMA, built column-wise, and, with frames,
    one frame table per file. ``out``: their results, waited for (scores of the ok files, in order).
    A file whose scores (or frames) are not finite gets an error row: a NaN is never reported "ok"."""
    identity = identity or RowIdentity()
    n = len(files)
    ok = np.asarray(files.ok, dtype=bool)
    error = list(files.error)
    ok_pos = np.flatnonzero(ok)
    label: list[str | None] = [None] * n
    top = np.zeros(n)
    s = np.zeros((0, 0))
    frame_tables = []
    if len(ok_pos):
        s = out.scores.double().numpy()
        finite = np.isfinite(s).all(axis=1)
        if out.frames is not None:
            finite &= np.array([bool(torch.isfinite(f).all()) for f in out.frames], dtype=bool)
        if not finite.all():
            for i in ok_pos[~finite].tolist():
                ok[i], error[i] = False, NON_FINITE
            s = s[finite]
            out = Scored(None, [f for f, keep in zip(out.frames, finite, strict=True) if keep]
                         if out.frames is not None else None)
            ok_pos = ok_pos[finite]
    if len(ok_pos):
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
            df.insert(0, "path", display_path(files.path[i]))
            df.attrs["source"] = files.path[i]  # the path as listed: the frames folder's key
            frame_tables.append(df)
    detected = np.zeros(n, dtype=bool)
    if len(ok_pos):
        detected[ok_pos] = detections(s, bundle)
    # the scores column from one flat array: row i holds s[j] where ok, null where not
    counts = np.zeros(n, dtype=np.int32)
    counts[ok_pos] = s.shape[1] if len(ok_pos) else 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    scores = pa.ListArray.from_arrays(offsets, pa.array(s.reshape(-1), pa.float64()), mask=pa.array(~ok))
    shown = [display_path(p) for p in files.path]
    ident = [identity.files.get(p, (-1, -1)) for p in files.path]
    table = pa.Table.from_pydict({
        "path": shown,
        # the exact bytes of a name that is not UTF-8 (the path column holds it with \x escapes)
        "path_bytes": [None if d == p else os.fsencode(p) for d, p in zip(shown, files.path, strict=True)],
        "status": np.where(ok, "ok", "error").tolist(),
        "error": [None if e is None else display_path(e) for e in error],
        "label": label, "score": pa.array(top, mask=~ok), "scores": scores, "detected": pa.array(detected, mask=~ok),
        "duration_s": pa.array(files.duration, pa.float64()),
        "true_label": files.label,
        "model": [bundle.name] * n, "model_version": [bundle.version] * n,
        "fingerprint": [identity.fingerprint] * n,
        "size": pa.array([i[0] for i in ident], pa.int64()), "mtime_ns": pa.array([i[1] for i in ident], pa.int64()),
    }, schema=SCHEMA)
    return table, frame_tables


SCHEMA = pa.schema([("path", pa.string()), ("path_bytes", pa.binary()), ("status", pa.string()),
                    ("error", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                    ("scores", pa.list_(pa.float64())), ("detected", pa.bool_()), ("duration_s", pa.float64()),
                    ("true_label", pa.string()),
                    ("model", pa.string()), ("model_version", pa.string()), ("fingerprint", pa.string()),
                    ("size", pa.int64()), ("mtime_ns", pa.int64())])


def detections(scores: np.ndarray, bundle: Bundle) -> np.ndarray:
    """(B, K) clip scores -> (B,) whether each clip passes the bundle's detector thresholds (its
    ``detector`` section, e.g. calibrated per keyword; else the defaults): a keyword model's clip label,
    read at the last frame, is a reportable keyword at or above its threshold; an anomaly model's
    maximum frame score is above its threshold. Other heads: False."""
    kind = bundle.config.head.kind
    if kind not in ("classify", "anomaly"):
        return np.zeros(len(scores), dtype=bool)
    labels = bundle.labels or [str(i) for i in range(scores.shape[1])]
    det = EventDetector("keyword" if kind == "classify" else "anomaly", labels if kind == "classify" else ["anomaly"],
                        1.0, DetectorConfig().over(bundle.detector), default_threshold=bundle.config.head.threshold)
    if kind == "anomaly":
        return scores[:, 0] > det.thresholds[0]
    theta = np.full(len(labels), np.inf)
    theta[det.reportable] = det.thresholds
    top = scores.argmax(axis=1)
    return scores[np.arange(len(scores)), top] >= theta[top]


def is_score_output(path: Path) -> bool:
    """Whether an existing file is a scoring output (a Parquet file with this scorer's columns)."""
    try:
        names = set(pq.read_schema(path).names)
    except Exception:  # not Parquet, unreadable: not ours
        return False
    return {"path", "status", "scores", "model", "model_version"} <= names


# Parquet options for tables in SCHEMA: dictionary encoding only for the columns of few distinct
# values (the default tries it on every column: on the per-label scores and the unique paths it is
# wasted work, half the cost of writing a part)
ROW_OPTIONS = {"use_dictionary": ["status", "error", "label", "true_label", "model", "model_version", "fingerprint"]}


def write_atomic(table: pa.Table, path: Path, **options: Any) -> None:
    """``table`` to ``path`` as Parquet (``options``: pyarrow.parquet.write_table's), whole or not at all."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, **options)
    os.replace(tmp, path)  # a part either exists whole or not at all


class PartWriter:
    """Writes the scored rows as Parquet parts (per rank), atomically, several batches to a part.

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
                 part_rows: int = 16384, identity: RowIdentity | None = None):
        self.parts_dir, self.frames_dir, self.bundle, self.lag = parts_dir, frames_dir, bundle, lag
        self.identity = identity or RowIdentity()
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

    def add(self, files: BatchFiles, prediction: Scored, rank: int = 0) -> None:
        """One predicted batch: ``files`` and their results, possibly still on their way from the device
        (waited for ``lag`` batches later)."""
        self.pending.append((files, prediction, rank))
        while len(self.pending) > self.lag:
            self._write(*self.pending.popleft())

    def write_file(self, files: BatchFiles, prediction: Scored, rank: int = 0) -> None:
        """Rows scored outside the batch path (long files, read in blocks), results at hand: into the open part."""
        self._write(files, prediction, rank)

    def finish(self, rank: int) -> None:
        """Write every row received so far (also when a run stops early), and wait until they are on disk."""
        while self.pending:
            self._write(*self.pending.popleft())
        self._close_part(rank)
        while self.queued:
            self.queued.popleft().result()  # re-raises a failed write
        self.last = time.time()

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
        table, frame_tables = result_rows(files, Scored.concat([s for _, s in batches]), self.bundle, self.identity)
        for df in frame_tables:  # frames first: a finished row implies its frames exist
            key = _file_key(df.attrs["source"])
            out = self.frames_dir / f"file={key}"
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(pa.Table.from_pandas(df, preserve_index=False), out / "part-0.parquet")
        write_atomic(table, self.parts_dir / f"part-r{rank}-{uuid.uuid4().hex[:12]}.parquet", **ROW_OPTIONS)


def _file_key(path: str) -> str:
    import hashlib

    return hashlib.sha1(os.fsencode(path)).hexdigest()[:16]


IDENTITY_COLUMNS = ["path", "path_bytes", "fingerprint", "size", "mtime_ns", "model", "model_version"]


def row_keys(table: pa.Table) -> list[bytes]:
    """Each row's input as :func:`path_key` gives it: the exact bytes where the name is not UTF-8."""
    return [b if b is not None else p.encode() for p, b in zip(table.column("path").to_pylist(),
                                                                 table.column("path_bytes").to_pylist(), strict=True)]


def read_parts(parts_dir: Path, output: Path, fingerprint: str, columns: list[str] | None = None) -> pa.Table:
    """The rows already in ``parts_dir`` (``columns`` of SCHEMA, all by default), all of this model.

    Raises UsageError when a part is not this scorer's (an older version's, or damaged) or holds rows
    of another model (another fingerprint: retrained, or another bundle): they are never mixed.
    """
    files = sorted(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else []
    schema = pa.schema([SCHEMA.field(c) for c in columns]) if columns else SCHEMA
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, columns=columns, schema=schema))
        except Exception as e:
            raise UsageError(f"--output {output}: {f} is not a part of this scorer's output ({type(e).__name__}); "
                             f"name another --output, or delete {output} and {parts_dir} to start afresh") from e
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    others = set(pc.unique(table["fingerprint"]).to_pylist()) - {fingerprint}
    if others:
        rows = table.filter(pc.not_equal(table["fingerprint"], fingerprint))
        raise UsageError(
            f"--output {output} holds rows of another model ({_model_names(rows)}, fingerprint "
            f"{sorted(others, key=str)[0]}), not of this one (fingerprint {fingerprint}); name another --output, "
            f"or delete {output} and {parts_dir} to start afresh")
    return table


def _model_names(rows: pa.Table) -> str:
    if "model" not in rows.column_names:
        return "an unknown model"
    return ", ".join(sorted({f"{m} v{v}" for m, v in zip(rows["model"].to_pylist(),
                                                          rows["model_version"].to_pylist(), strict=True)}))


def finished_keys(parts_dir: Path, output: Path, fingerprint: str) -> set[tuple[bytes, int, int]]:
    """``(path key, size, mtime_ns)`` of every input already scored by this model."""
    table = read_parts(parts_dir, output, fingerprint, IDENTITY_COLUMNS)
    return set(zip(row_keys(table), table["size"].to_pylist(), table["mtime_ns"].to_pylist(), strict=True))


def item_key(it: Item) -> tuple[bytes, int, int]:
    return path_key(it.path), it.size, it.mtime_ns


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
    long_bytes: int = LONG_BYTES  # audio decoding to more than this is read in blocks (pipelines.score_long)

    def __post_init__(self):
        for name, least in (("batch_size", 1), ("num_workers", 0), ("part_rows", 1), ("ring_bytes", 0),
                            ("long_bytes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {least}, got {value!r}")


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
    sizes = [it.size if it.size >= 0 else approx_length(it.path) for it in items]
    ds = ScoreDataset(items, bundle.sample_rate, bundle.channels, bundle.model.samples_per_frame, sizes,
                      cfg.direct_wav, is_audio(bundle))
    sampler = BucketBatchSampler(sizes, cfg.batch_size)
    ring = None
    if cfg.ring or (cfg.ring is None and gpu):
        # headers of regular files only: opening a FIFO blocks
        share = pcm16_share([it.path for it in items if it.problem is None], bundle.sample_rate, bundle.channels)
        ring = make_ring(sizes, sampler.batches, cfg, share)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=Collate(ring),
                        pin_memory=gpu, prefetch_factor=PREFETCH if cfg.num_workers else None,
                        multiprocessing_context="fork" if ring is not None and cfg.num_workers else None)
    return loader, ring


def is_audio(bundle: Bundle) -> bool:
    """Whether the bundle's model reads audio (else sensor tables)."""
    return bundle.config.frontend.kind == "logmel"


class SignalStop:
    """SIGTERM during a job: remembered by the handler, acted on between batches and blocks
    (:meth:`check` raises :class:`Interrupted`), so the finished part is written before the job ends.
    Lightning's own SIGTERM handler only logs and goes on; it calls this one too (it chains them)."""

    SIGNALS = (signal.SIGTERM,)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():  # handlers are set from the main thread only
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        log.warning("received %s: stopping after the current batch", signal.Signals(signum).name)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, f"stopped by {signal.Signals(self.signum).name}")


def score(cfg: ScoreConfig) -> dict[str, Any]:
    """Run (or resume) a scoring job; returns the summary.

    Raises UsageError (bad input spec or output, rows of another model in the output), BundleError,
    or Interrupted (SIGTERM: the rows scored so far are kept, a rerun resumes).
    """
    with SignalStop() as stop:
        try:
            return _score(cfg, stop)
        except Interrupted as e:
            out = Path(cfg.output)
            raise Interrupted(e.signum, f"{e}; the finished rows are kept in {out.with_name(out.name + '.parts')}: "
                                        "rerun the same command to resume") from None


def _score(cfg: ScoreConfig, stop: SignalStop) -> dict[str, Any]:
    t0 = time.time()
    if cfg.mlflow:  # an unreachable server is said now, not after the whole job
        from pipelines.tracking import check_tracking_server

        check_tracking_server()
    bundle = load_bundle(cfg.model)
    audio = is_audio(bundle)
    out = Path(cfg.output)
    check_output(out, cfg.input, is_score_output)
    skipped: collections.Counter = collections.Counter()
    items = list_inputs(cfg.input, audio, skipped)
    parts_dir = out.with_name(out.name + ".parts")
    frames_dir = out.with_name(out.stem + "_frames") if cfg.frames else None
    try:
        parts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--output {out}: cannot write there ({os_error_words(e)})") from e
    fingerprint = bundle.fingerprint
    done = finished_keys(parts_dir, out, fingerprint)
    todo, seen = [], set()
    for it in items:  # each input once (a manifest may list a path twice), and only if not scored as it is now
        key = item_key(it)
        if key not in done and key not in seen:
            seen.add(key)
            todo.append(it)
    log.info("scoring %d files (%d of %d already done) with %s v%s", len(todo), len(items) - len(todo), len(items),
             bundle.name, bundle.version)
    writer = PartWriter(parts_dir, frames_dir, bundle, part_rows=cfg.part_rows, identity=RowIdentity.of(bundle, todo))
    graphs: dict[str, int] = {}
    gpu = cfg.accelerator != "cpu" and torch.cuda.is_available()
    todo, long = split_long(todo, audio, bundle.sample_rate, cfg.long_bytes)
    if long and os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        _score_long(long, bundle, cfg, writer, torch.device("cuda", 0) if gpu else torch.device("cpu"), stop)
    if todo:
        from pipelines.score_predict import predict_batches  # Lightning: only for a job with batch-path files

        loader, ring = score_loader(todo, bundle, cfg, gpu)
        trainer, scorer = predict_batches(loader, ring, bundle, cfg, writer, len(todo), stop)
        graphs = dict(scorer.graphs.counts) if scorer.graphs is not None else {}
        trainer.strategy.barrier()  # every rank's parts are written before rank 0 merges
        if not trainer.is_global_zero:
            return {}
    else:
        writer.close()
    df = merge_rows(read_parts(parts_dir, out, fingerprint), items)
    write_atomic(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False), out, **ROW_OPTIONS)
    wall = time.time() - t0
    summary = summarize(df, bundle, wall, len(todo) + len(long), writer)
    if skipped:
        summary["skipped_files"] = dict(skipped.most_common())
    if graphs:  # this rank's batches: replayed, captured (eager on a new shape), eager (past the limits)
        summary["cuda_graph_batches"] = graphs
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    if cfg.mlflow:
        _track(cfg, bundle, summary, out)
    return summary


def _score_long(items: list[Item], bundle: Bundle, cfg: ScoreConfig, writer: PartWriter, device: torch.device,
                stop: SignalStop) -> None:
    """The long files, one at a time in blocks (pipelines.score_long), their rows through ``writer``."""
    bundle.model.to(device)
    try:
        for it in items:
            log.info("scoring %s in blocks (too long to read whole)", display_path(it.path))
            r = score_long_file(it.path, bundle, device, cfg.frames, stop.check)
            files = BatchFiles([it.path], [it.label], [r.error], [r.seconds], [r.error is None])
            writer.write_file(files, Scored(r.scores, r.frames))
            writer.finish(0)  # a long file is many batches' work: on disk at once
    except Interrupted:
        writer.finish(0)
        writer.close()
        raise


def merge_rows(table: pa.Table, items: list[Item]) -> pd.DataFrame:
    """One row per input row, in the inputs' order: each input's latest row for its current identity
    (path, size, mtime), with that input row's own true label (a manifest may list a path twice)."""
    rows = table.to_pandas()
    rows["_key"] = row_keys(table)
    rows = rows.drop_duplicates(["_key", "size", "mtime_ns"], keep="last").set_index(["_key", "size", "mtime_ns"], drop=False)
    keys = [item_key(it) for it in items]
    at = rows.index.get_indexer(keys)
    if (at < 0).any():
        missing = [display_path(items[i].path) for i in np.flatnonzero(at < 0)[:3]]
        raise RuntimeError(f"{int((at < 0).sum())} inputs have no row after scoring (e.g. {missing}); "
                           "rerun to score them")
    df = rows.iloc[at].reset_index(drop=True)
    df["true_label"] = [it.label for it in items]
    return df[SCHEMA.names]


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
