"""A batch function replayed as CUDA graphs, one per padded batch shape (the scorer's forward).

Why: the default model's forward is 98 small kernels (four Mamba-2 layers and the log-mel
frontend), 4.98 ms of GPU time per batch of 1024 one-second clips on the H200, and launching them
from Python costs the main thread about as much (5.9 ms per call back to back there, against
0.07 ms for a graph replay: benchmarks/results/score_gpu_1s_forward_20261201.json). That thread
also takes each batch from the loader, copies it and hands results to the writer, so an eager
scorer ran at the main thread's pace: 0.51 of the model's graph-replayed forward, and 0.81 with
graphs (score_gpu_1s_graphs_20261201.json; ``python benchmarks/bench_score.py --parts score
--variants new,eager ...``, docs/performance.md).

Shapes: a graph is fixed to the shapes it was captured with, and real collections come in many
lengths. So each batch is zero-padded to a bucket: rows to :func:`bucket` (n) (at most the batch
size), frames to :func:`bucket` (frames) x ``samples_per_frame`` samples, 16 steps per octave
(at most 1/16 of padding). Padding cannot change a file's results: the model is causal (samples
after a file's end never reach its frames) and its rows are independent; padded rows are dropped.

The first batch of a shape runs ``fn`` eagerly on the padded buffers (its result is used; it is
also the warm-up capture needs: Triton compilation, cuBLAS handles), then ``fn`` is captured for
the shape's later batches, so a shape seen once costs one capture on the host and nothing on the
GPU. ``fn`` on the unpadded batch is the eager twin: what runs off CUDA, past the limits
(:data:`MAX_GRAPHS`, :data:`MAX_GRAPH_BYTES` per graph and :data:`MAX_INPUT_BYTES` in all of
static input; long recordings stay eager, their launches are few per second of audio), and for
a shape whose capture failed (something in ``fn`` synchronised: logged once). Tests compare
the two.

Capture goes through the project's one graph helper (``ssm_signal.cuda_graphs.capture``, which the
StreamPool's tick graphs use too). The graphs share one memory pool. That is safe here because replays run one at a time on one
stream and the caller copies a call's outputs (views into the graph's static outputs) before the
next call: a later replay may reuse the memory of an earlier graph's outputs.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable

import torch
from torch import Tensor

from ssm_signal.cuda_graphs import capture

log = logging.getLogger("ssm_signal.pipelines")

STEPS = 16  # bucket steps per octave: at most 1/16 of padding
MAX_GRAPHS = 32
MAX_GRAPH_BYTES = 256 << 20  # static input per graph: larger batches (long recordings) stay eager
MAX_INPUT_BYTES = 1 << 30  # static inputs of all graphs together


def bucket(n: int, steps: int = STEPS) -> int:
    """The smallest m * 2**k >= n with ``steps`` <= m < 2 * ``steps`` (n itself below 2 * steps):
    a grid of ``steps`` values per octave, so at most n / steps of padding."""
    if n < 1:
        raise ValueError(f"bucket: need n >= 1, got {n}")
    k = max(0, n.bit_length() - steps.bit_length())  # n / 2**k lies in [steps, 2 * steps)
    return -(-n >> k) << k


@dataclasses.dataclass
class _Shape:
    """A bucket's static buffers and, once captured, its graph and the outputs it writes."""

    x: Tensor  # (B, L, C) the padded batch
    frames: Tensor  # (B,) int64 valid frames per row (1 in padded rows)
    graph: torch.cuda.CUDAGraph | None = None
    out: tuple[Tensor, ...] = ()


class BatchGraphs:
    """``fn(x, frames) -> tuple of (n, ...) tensors`` replayed as CUDA graphs per padded shape.

    fn: x (n, L, C) a batch (any dtype), frames (n,) int64 valid frames per row (>= 1), on the
    device; returns tensors whose first axis is the row; it must not synchronise with the device.
    batch_size: the job's rows per batch (rows are padded to at most this); samples_per_frame: the
    length quantum. ``__call__`` returns fn's outputs for the n rows, possibly views into static
    memory that the next call overwrites: use or copy them first. ``counts``: batches "replayed",
    "captured" (run eagerly on the padded buffers, then captured), "eager" (the twin).
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], tuple[Tensor, ...]], batch_size: int, samples_per_frame: int,
                 *, max_graphs: int = MAX_GRAPHS, max_graph_bytes: int = MAX_GRAPH_BYTES,
                 max_input_bytes: int = MAX_INPUT_BYTES):
        self.fn, self.batch_size, self.spf = fn, batch_size, samples_per_frame
        self.max_graphs, self.max_graph_bytes, self.max_input_bytes = max_graphs, max_graph_bytes, max_input_bytes
        self.shapes: dict[tuple, _Shape] = {}
        self.refused: set[tuple] = set()  # shapes whose capture failed: eager from then on
        self.input_bytes = 0
        self.pool = None  # the graphs' shared memory pool
        self._stream: torch.cuda.Stream | None = None  # the capture stream
        self.counts: collections.Counter[str] = collections.Counter()

    def padded(self, n: int, length: int) -> tuple[int, int]:
        """(rows, samples) of the bucket a batch of n rows of ``length`` samples is padded to."""
        return min(bucket(n), max(n, self.batch_size)), bucket(-(-length // self.spf)) * self.spf

    def __call__(self, x: Tensor, frames: Tensor) -> tuple[Tensor, ...]:
        n, length, channels = x.shape
        if x.device.type != "cuda":
            return self._eager(x, frames)
        rows, samples = self.padded(n, length)
        key = (rows, samples, channels, x.dtype, x.device)
        shape = self.shapes.get(key)
        if shape is None:
            nbytes = rows * samples * channels * x.element_size()
            if (key in self.refused or len(self.shapes) >= self.max_graphs or nbytes > self.max_graph_bytes
                    or self.input_bytes + nbytes > self.max_input_bytes):
                return self._eager(x, frames)
            shape = _Shape(x.new_zeros(rows, samples, channels), frames.new_ones(rows))
            self._fill(shape, x, frames)
            out = self.fn(shape.x, shape.frames)  # the warm-up, and this batch's result
            self.counts["captured" if self._capture(key, shape, nbytes) else "eager"] += 1
            return tuple(o[:n] for o in out)
        self._fill(shape, x, frames)
        shape.graph.replay()
        self.counts["replayed"] += 1
        return tuple(o[:n] for o in shape.out)

    def _eager(self, x: Tensor, frames: Tensor) -> tuple[Tensor, ...]:
        self.counts["eager"] += 1
        return self.fn(x, frames)

    @staticmethod
    def _fill(shape: _Shape, x: Tensor, frames: Tensor) -> None:
        """The batch into the static buffers, zeros around it (padded rows: one frame)."""
        n, length, _ = x.shape
        shape.x[:n, :length].copy_(x)
        shape.x[:n, length:].zero_()
        shape.x[n:].zero_()
        shape.frames[:n].copy_(frames)
        shape.frames[n:].fill_(1)

    def _capture(self, key: tuple, shape: _Shape, nbytes: int) -> bool:
        """Capture ``fn`` on the shape's buffers; False (and the shape refused) where it cannot be."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        if self._stream is None:
            self._stream = torch.cuda.Stream(shape.x.device)
        try:
            graph, out = capture(lambda: self.fn(shape.x, shape.frames), self._stream, self.pool)
        except Exception as e:  # something in fn cannot be captured (a synchronisation): this shape runs eagerly
            if not self.refused:
                first = str(e).splitlines()[0] if str(e) else ""
                log.warning("could not capture the batch forward as a CUDA graph (%s: %s); shapes that fail run "
                            "eagerly", type(e).__name__, first)
            self.refused.add(key)
            return False
        shape.graph, shape.out = graph, tuple(out)
        self.shapes[key] = shape
        self.input_bytes += nbytes
        return True
