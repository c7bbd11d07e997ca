"""The single dispatch point for scan kernels.

Layers never import a kernel directly: they ask ``get_op(name, device)``, which returns
the implementation of the *active* backend. The active backend is ``auto`` unless a
caller (typically a test or a benchmark) forces one with ``use(name)``.

    with kernels.use("reference"):
        y, h = layer(x)          # every op of this call runs the sequential spec

A backend may implement only some ops; for the others it names a ``fallback`` backend
(all of them fall back, eventually, to ``reference``, which implements everything).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import torch

OPS = (
    "selective_scan",  # Mamba-1 / S6 over a sequence
    "selective_step",  # Mamba-1 / S6, one time step
    "ssd_scan",  # Mamba-2 SSD over a sequence
    "ssd_step",  # Mamba-2 SSD, one time step
    "selective_step_inplace",  # Mamba-1 step writing the state in place, masked rows (serving)
    "ssd_step_inplace",  # Mamba-2 step writing the state in place, masked rows (serving)
    "lti_scan",  # S4D: diagonal LTI SSM over a sequence
    "local_attention",  # causal sliding-window attention against a ring-buffer KV cache
    "gated_rms_norm",  # Mamba-2's output norm: rmsnorm(x * silu(z)) * weight per group
    "mel_energy",  # the log-mel's |rfft(window * frame)|^2 @ fbank
    "conv_step",  # Mamba's and Mamba-2's depthwise causal conv, one step against its input buffer
)


@dataclasses.dataclass
class Backend:
    """A named table of op implementations.

    ``devices`` lists the torch device types the backend runs on; ``priority`` orders the
    candidates of ``auto`` (higher first); ``fallback`` serves the ops it lacks.
    """

    name: str
    ops: dict[str, Callable]
    devices: tuple[str, ...]
    priority: int
    fallback: str | None = "reference"
    # Some ops are slower than the fallback's on small inputs or only correct in a
    # regime; ``auto`` skips a backend for an op when ``accepts(op, device)`` says no.
    accepts: Callable[[str, torch.device], bool] = lambda op, device: True


_BACKENDS: dict[str, Backend] = {}
_UNAVAILABLE: dict[str, str] = {}
# A plain module global rather than a ContextVar: torch.compile traces (and guards on) a
# global read, while ContextVar.get breaks the graph. The override is for tests and
# benchmarks, which force a backend around whole calls.
_ACTIVE = "auto"


def register(backend: Backend) -> None:
    unknown = set(backend.ops) - set(OPS)
    if unknown:
        raise ValueError(f"backend {backend.name!r} registers unknown ops {sorted(unknown)}")
    _BACKENDS[backend.name] = backend
    _UNAVAILABLE.pop(backend.name, None)


def mark_unavailable(name: str, reason: str) -> None:
    """Record why an optional backend is not there (shown by :func:`unavailable`)."""
    _UNAVAILABLE[name] = reason


def available(device: torch.device | str | None = None) -> list[str]:
    """Names of the registered backends (that run on ``device``'s type, if given)."""
    if device is None:
        return sorted(_BACKENDS)
    kind = torch.device(device).type
    return sorted(n for n, b in _BACKENDS.items() if kind in b.devices)


def unavailable() -> dict[str, str]:
    """Optional backends that are not registered, with the reason."""
    return dict(_UNAVAILABLE)


def active() -> str:
    return _ACTIVE


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Force backend ``name`` (or ``"auto"``) inside the ``with`` block."""
    if name != "auto" and name not in _BACKENDS:
        reason = _UNAVAILABLE.get(name)
        hint = f": {reason}" if reason else f"; registered: {sorted(_BACKENDS)}"
        raise ValueError(f"unknown or unavailable kernel backend {name!r}{hint}")
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, name
    try:
        yield
    finally:
        _ACTIVE = previous


def resolve(op: str, device: torch.device) -> Backend:
    """The backend that will run ``op`` on ``device`` under the active selection."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    name = _ACTIVE
    if name == "auto":
        candidates = sorted(_BACKENDS.values(), key=lambda b: -b.priority)
        for b in candidates:
            if device.type in b.devices and op in b.ops and b.accepts(op, device):
                return b
        raise RuntimeError(f"no kernel backend implements {op!r} on {device.type}")
    backend = _BACKENDS[name]
    seen = []
    while True:
        if device.type not in backend.devices:
            raise ValueError(f"kernel backend {backend.name!r} does not run on {device.type}")
        if op in backend.ops:
            return backend
        seen.append(backend.name)
        if backend.fallback is None or backend.fallback in seen:
            raise RuntimeError(f"kernel backend {name!r} has no {op!r} and no fallback")
        backend = _BACKENDS[backend.fallback]


def get_op(op: str, device: torch.device) -> Callable:
    return resolve(op, device).ops[op]
