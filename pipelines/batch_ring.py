"""Reusable shared-memory batch buffers between DataLoader workers and the scoring process.

Why: at GPU scoring rates the host, not the model, is the limit. A batch returned by a
DataLoader worker the ordinary way is a fresh shared-memory tensor: the worker copies the
batch into new shared memory, the main process maps it and page-faults on every 4 KiB page,
the pinning thread copies it again into pinned memory, and the mapping is torn down after
one use. For 1024 one-second clips that is 64 MiB per batch through three copies and 16k page
faults in the main process (benchmarks/results/score_gpu_loader_diag_20261125.json: the loader
alone delivered 46k files/s unpinned, 14k pinned).

A :class:`BatchRing` is allocated once, before the workers are forked: ``slots`` buffers of
``capacity`` int16 samples in shared memory, registered with CUDA as page-locked memory in the
scoring process. A worker writes batch ``j`` (the j-th batch of its DataLoader, zero-padded
(n, L, C) 16-bit PCM) straight into slot ``j % slots``; the main process copies that view to
the GPU by DMA, with nothing mapped, faulted or pinned per batch. torch's DataLoader, which
has no hook for caller-owned buffers, is kept for everything else (workers, ordering, errors).

Reuse is safe by construction and checked at run time:

- a DataLoader keeps at most ``prefetch_factor * num_workers`` batches in flight and returns
  them in order, so when batch ``j + slots`` is written, batch ``j`` was received at least
  ``slots - prefetch_factor * num_workers`` batches ago; the ring keeps :data:`SLACK` slots
  more than that, and the scorer finishes each batch's copy within two batches;
- each slot records which batch owns it (written by the worker before the samples); after
  the copy of batch ``j`` completed, :meth:`BatchRing.check` raises if the slot belongs to a
  later batch already. A violation is an error, never silently corrupted scores.

Batches that do not fit (other sample formats, rates or channel counts, which need decoding
to float; files longer than the slot allows) take the ordinary DataLoader path.
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import torch
from torch import Tensor

# slots beyond the DataLoader's in-flight bound: the consumer's own lag (Lightning fetches one batch
# ahead, the writer checks a batch's slot one batch later), with margin for a writer lag up to 3
SLACK = 6


def pad_batch(signals: list[np.ndarray], length: int, channels: int, out: np.ndarray | None = None) -> np.ndarray:
    """n arrays (L_i, C) -> one zero-padded (n, length, C) array, written into ``out`` (flat, at
    least n * length * C elements of the same dtype) when given. numpy row copies: a third of the
    cost of torch's indexing at 1024 files per batch."""
    n = len(signals)
    x = (np.empty(n * length * channels, signals[0].dtype) if out is None else out).reshape(n, length, channels)
    for i, s in enumerate(signals):
        k = s.shape[0]
        x[i, :k] = s
        if k < length:  # most rows of a length-bucketed batch have no tail: ~1 us per file saved
            x[i, k:] = 0
    return x


class RingOverrun(RuntimeError):
    """A worker wrote a slot whose previous batch had not been copied yet."""


class BatchRing:
    """``slots`` shared int16 buffers of ``capacity`` samples each, plus each slot's owner batch.

    buf: (slots, capacity) int16, shared memory; owner: (slots,) int64, shared memory.
    A batch (n, L, C) of slot s is ``buf[s, : n * L * C].view(n, L, C)``.
    """

    def __init__(self, slots: int, capacity: int):
        if slots < 1 or capacity < 1:
            raise ValueError(f"a batch ring needs at least one slot and one sample, got {slots} x {capacity}")
        self.slots, self.capacity = slots, capacity
        # one anonymous shared mapping: forked workers share it, nothing is named or left behind,
        # and pages appear on first touch (torch's share_memory_() would allocate, then copy into
        # a new segment: ~1 s per GB on these hosts)
        samples = slots * capacity + (-(slots * capacity) % 4)  # owners start 8-byte aligned
        self._mmap = mmap.mmap(-1, 2 * samples + 8 * slots, flags=mmap.MAP_SHARED)
        self.buf = torch.frombuffer(self._mmap, dtype=torch.int16, count=slots * capacity).view(slots, capacity)
        self.owner = torch.frombuffer(self._mmap, dtype=torch.int64, count=slots, offset=2 * samples)
        self.owner.fill_(-1)
        self.creator = os.getpid()  # the process that reads the ring (see :meth:`view`)
        self._registered = False

    def __reduce__(self):
        raise TypeError("a BatchRing reaches DataLoader workers by fork only (multiprocessing_context='fork'); "
                        "it cannot be pickled into another process")

    @property
    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()

    def fits(self, n: int, length: int, channels: int) -> bool:
        return n * length * channels <= self.capacity

    def write(self, batch_no: int, signals: list[np.ndarray]) -> tuple[int, tuple[int, int, int]]:
        """Worker side: zero-padded (n, L_max, C) int16 batch ``batch_no`` into its slot.

        signals: n arrays (L_i, C) int16. Returns (slot, shape). The owner is written first, so a
        reader that still sees its own batch number after its copy knew no writer had begun.
        """
        slot = batch_no % self.slots
        n, length, channels = len(signals), max(s.shape[0] for s in signals), signals[0].shape[1]
        self.owner[slot] = batch_no
        pad_batch(signals, length, channels, out=self.buf[slot, : n * length * channels].numpy())
        return slot, (n, length, channels)

    def view(self, slot: int, shape: tuple[int, int, int]) -> Tensor:
        """Reader side: the batch in ``slot`` as an (n, L, C) int16 view (no copy)."""
        if os.getpid() != self.creator:  # e.g. a rank forked from the process that made the ring
            raise RuntimeError("a BatchRing is read only by the process that created it (each DDP rank runs "
                               "score() and makes its own: use strategy ddp, not ddp_fork)")
        n, length, channels = shape
        return self.buf[slot, : n * length * channels].view(n, length, channels)

    def check(self, slot: int, batch_no: int) -> None:
        """Reader side, after batch ``batch_no``'s copy out of ``slot`` completed."""
        owner = int(self.owner[slot])
        if owner != batch_no:
            raise RingOverrun(f"batch ring slot {slot} was rewritten (by batch {owner}) before batch {batch_no} "
                              f"was copied out; the ring has {self.slots} slots for this DataLoader")

    def register(self) -> bool:
        """Page-lock the buffers for CUDA (DMA copies straight from them). Returns False where that fails."""
        if self._registered or not torch.cuda.is_available():
            return self._registered
        err = int(torch.cuda.cudart().cudaHostRegister(self.buf.data_ptr(), self.nbytes, 0))
        if err != 0:
            getattr(torch.cuda.cudart(), "cudaGetLastError", lambda: None)()  # else the next launch check reports it
        self._registered = err == 0
        return self._registered

    def unregister(self) -> None:
        """Undo :meth:`register` once no copy out of the ring is running (it synchronises the device)."""
        if self._registered:
            torch.cuda.synchronize()
            torch.cuda.cudart().cudaHostUnregister(self.buf.data_ptr())
            self._registered = False
