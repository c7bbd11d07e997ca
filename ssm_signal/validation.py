"""Input and state checks at the public boundary of every streaming module.

Public ``forward``/``step`` methods validate once and then call the unchecked
``_forward``/``_step``; containers (Block, Backbone, models) validate at their own
boundary and call their children's unchecked paths, so a deep stack pays for the
checks once per call, not once per layer.

The NaN/Inf scan is one reduction over the input; on a GPU it synchronises, so a hot
loop that has already checked its data passes ``values=False`` (see :func:`check_sequence`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssm_signal.state import State


def check_sequence(x: Tensor, width: int, name: str = "x", values: bool = True) -> None:
    """Check a (B, L, D) sequence input with D == ``width`` and L >= 1; ``values``: also scan for
    NaN/Inf (False: the caller has checked them, and nothing here synchronises with the device)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, length, {width}), got {tuple(x.shape)}")
    if x.shape[-1] != width:
        raise ValueError(f"{name} has width {x.shape[-1]}, expected {width} (shape {tuple(x.shape)})")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have batch >= 1 and length >= 1, got {tuple(x.shape)}")
    _check_values(x, name, scan=values)


def check_step(x: Tensor, width: int, name: str = "x_t") -> None:
    """Check a (B, D) single-step input."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != width:
        raise ValueError(f"{name} must have shape (batch, {width}), got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must have batch >= 1, got {tuple(x.shape)}")
    _check_values(x, name)


def _check_values(x: Tensor, name: str, scan: bool = True) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if scan and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_state(state: State, expected: State, owner: str) -> None:
    """Check that ``state`` has the type, structure and tensor shapes of ``expected``.

    ``expected`` is a template, typically ``module.init_state(batch, device="meta")``.
    """
    if type(state) is not type(expected):
        raise ValueError(
            f"{owner} expects a {type(expected).__name__}, got {type(state).__name__} "
            "(a state from another kind of layer?)"
        )
    got, want = state.state_dict(), expected.state_dict()
    if got.keys() != want.keys():
        raise ValueError(f"{owner}: state structure differs from this module's configuration")
    for k, w in want.items():
        g = got[k]
        if not isinstance(g, Tensor) or g.shape != w.shape:
            shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
            raise ValueError(
                f"{owner}: state tensor {k!r} has shape {shape}, expected {tuple(w.shape)} "
                "(a state from another configuration or batch size?)"
            )
        if g.is_floating_point() != w.is_floating_point():
            raise ValueError(f"{owner}: state tensor {k!r} has dtype {g.dtype}, expected {w.dtype}")


def check_active(active: Tensor | None, n_rows: int, device: torch.device) -> None:
    """active: None, or a (n_rows,) bool/uint8 mask on ``device`` (shape checks only: no device sync)."""
    if active is None:
        return
    if active.dtype not in (torch.bool, torch.uint8):
        raise ValueError(f"active must be bool or uint8, got {active.dtype}")
    if tuple(active.shape) != (n_rows,):
        raise ValueError(f"active must have shape ({n_rows},), got {tuple(active.shape)}")
    if active.device != device:
        raise ValueError(f"active is on {active.device}, the state on {device}")
