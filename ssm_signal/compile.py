"""Compiled single-step inference: the latency path for live streaming on CPU.

One time step of a stack is a few dozen tiny tensor ops, each costing microseconds of
dispatch overhead in eager PyTorch, which is most of the step's time. ``torch.compile`` traces
the whole step into one graph and fuses the elementwise work into a few generated C++ loops
(the timings are in docs/performance.md, "CPU: core layers"). The eager ``_step``
stays the reference twin, and tests compare the two.

The first call compiles (seconds, and it needs a C++ compiler on CPU); shapes are
specialised, so keep the batch size fixed per compiled step (StreamPool does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ssm_signal.state import State


def compile_step(module: torch.nn.Module, *, dynamic: bool = False) -> Callable[[Tensor, State], tuple[Tensor, State]]:
    """A compiled ``(x_t, state) -> (y_t, state)`` for a streaming module.

    Inputs are not validated (validate once at the boundary of your stream instead); the
    kernel backend active at the first call is baked in.
    """
    if not hasattr(module, "_step"):
        raise ValueError(f"{type(module).__name__} has no _step to compile")
    return torch.compile(module._step, fullgraph=True, dynamic=dynamic, options=inductor_options(module))


def inductor_options(module: torch.nn.Module) -> dict:
    """Inductor options for compiling a streaming step of ``module``. On CPU the generated kernels
    are called from a C++ wrapper instead of a Python one: less per-call overhead, which is most of
    a step this small (docs/performance.md, "Figures behind code choices")."""
    return {"cpp_wrapper": all(p.device.type == "cpu" for p in module.parameters())}
