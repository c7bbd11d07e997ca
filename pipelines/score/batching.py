"""The batch path's reading side: files -> length-bucketed, zero-padded batches, in DataLoader workers.

:class:`ScoreDataset` reads a batch of files at a time (:mod:`pipelines.score.readers`; a file that
cannot be read becomes an error entry), :class:`Collate` pads it into one (n, L_max, C) tensor or a
:class:`~pipelines.batch_ring.BatchRing` slot, :class:`BucketBatchSampler` groups files of similar
length (little padding), and :func:`score_loader` wires them into the job's DataLoader.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pipelines.batch_ring import SLACK, BatchRing, pad_batch
from pipelines.score.config import ScoreConfig
from pipelines.score.inputs import Item
from pipelines.score.readers import approx_length, is_pcm16, read_pcm16, read_signal
from ssm_signal.bundle import Bundle, pcm_to_float, prepare_signal
from ssm_signal.data.file_checks import file_problem, os_error_words
from ssm_signal.data.wav_pcm16 import read_pcm16_wav

log = logging.getLogger("ssm_signal.pipelines")


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
    fraction of a general reader's per-file cost, which at GPU rates is the scorer's limit for
    short clips. What it declines takes :meth:`read`, the general path (soundfile), which handles
    every other case (other formats and rates, error rows); ``direct_wav=False`` sends every file there.
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
            # os.path.splitext, as read_pcm16: a suffix test the same for both readers
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
            x = prepare_signal(raw, rate, self.sample_rate, self.channels, self.audio)[0]
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
    ds = ScoreDataset(items, bundle.sample_rate, bundle.in_channels, bundle.model.samples_per_frame, sizes,
                      cfg.direct_wav, is_audio(bundle))
    sampler = BucketBatchSampler(sizes, cfg.batch_size)
    ring = None
    if cfg.ring or (cfg.ring is None and gpu):
        # headers of regular files only: opening a FIFO blocks
        share = pcm16_share([it.path for it in items if it.problem is None], bundle.sample_rate, bundle.in_channels)
        ring = make_ring(sizes, sampler.batches, cfg, share)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=Collate(ring),
                        pin_memory=gpu, prefetch_factor=PREFETCH if cfg.num_workers else None,
                        multiprocessing_context="fork" if ring is not None and cfg.num_workers else None)
    return loader, ring


def is_audio(bundle: Bundle) -> bool:
    """Whether the bundle's model reads audio (else sensor tables)."""
    return bundle.config.frontend.audio
