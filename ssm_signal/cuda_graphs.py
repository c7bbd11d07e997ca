"""Recording a function as a CUDA graph: the one helper under every graph cache of the project.

    warm_up(fn, times, device)              # fn() on a side stream: compilation, autotuning, allocator pools
    graph, out = capture(fn, stream, pool)  # fn() recorded on ``stream``; graph.replay() reruns it in place

A replay launches the recorded kernels on the same buffers with a few microseconds of host work,
where running the ops from Python costs one dispatch each. Two caches use it: the StreamPool's tick
(``ssm_signal/streaming/runners.py``: two graphs over fixed stream slots) and the scorer's batch
forward (``pipelines/batch_graphs.py``: one graph per padded batch shape). The eager call of ``fn``
is the reference twin of every replay; their tests compare the two.

``fn`` must not synchronise with the device (no ``.item()``, no host read of a device tensor) and
must write its outputs into memory it allocates during capture or into static buffers the caller
owns. A failed capture raises; the helper first closes the device generator's capture so that
random-number calls keep working afterwards (see :func:`_close_generator_capture`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def warm_up(fn: Callable[[], object], times: int, device: torch.device) -> None:
    """Run ``fn()`` ``times`` times on a side stream and wait for it: what capture needs first (Triton
    and Inductor compilation, cuBLAS handles, cuFFT plans, the allocator's pools)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(times):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)


def capture(fn: Callable[[], T], stream: torch.cuda.Stream, pool=None) -> tuple[torch.cuda.CUDAGraph, T]:
    """``fn()`` recorded as a graph on ``stream``; returns the graph and what ``fn`` returned (tensors
    that every replay overwrites). ``pool``: a memory pool shared with other graphs
    (``torch.cuda.graph_pool_handle()``; safe when their replays run one at a time and each replay's
    outputs are used before the next), None for the graph's own.

    Capture begins and ends by hand rather than through ``torch.cuda.graph``, whose ``__exit__``
    leaves the capture stream current when ``capture_end`` raises; ``thread_local`` lets other
    threads (a loader pinning memory, a writer) call CUDA meanwhile."""
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.stream(stream):
            graph.capture_begin(pool, capture_error_mode="thread_local")
            try:
                out = fn()
            finally:
                graph.capture_end()
    except Exception:
        del graph
        _close_generator_capture(stream)
        raise
    return graph, out


def _close_generator_capture(stream: torch.cuda.Stream) -> None:
    """After a failed capture: torch (2.11) ends the device generator's capture only once a capture
    has ended well, so after one that failed every random-number call on the device raises
    ("Offset increment outside graph capture"). A trivial capture, ended well, closes it."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        graph.capture_begin(capture_error_mode="thread_local")
        torch.zeros(1, device=stream.device)
        graph.capture_end()
