"""Residual blocks and the layer stack (Backbone) built from a list of mixer names.

    Backbone(64, ["mamba2", "mamba2", "attention", "mamba2"])

Block: x + mixer(norm(x)), then optionally x + mlp(norm(x)) (pre-norm residual, as in
Mamba and Jamba). A Block's state is its mixer's state; a Backbone's state is the tuple
of its blocks' states. The stack validates input and state once at its boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.layers.attention import LocalAttention
from ssm_signal.layers.base import StreamingModule
from ssm_signal.layers.mamba import Mamba
from ssm_signal.layers.mamba2 import Mamba2
from ssm_signal.layers.norm import RMSNorm
from ssm_signal.layers.s4d import S4D
from ssm_signal.state import State

MIXERS: dict[str, type[StreamingModule]] = {
    "mamba": Mamba,
    "mamba2": Mamba2,
    "s4d": S4D,
    "attention": LocalAttention,
}


def make_mixer(kind: str, d_model: int, **kwargs: Any) -> StreamingModule:
    """A sequence mixer by name: one of ``MIXERS``."""
    if kind not in MIXERS:
        raise ValueError(f"unknown mixer {kind!r}; choose from {sorted(MIXERS)}")
    return MIXERS[kind](d_model, **kwargs)


class GatedMLP(nn.Module):
    """SwiGLU MLP: (…, d) -> (…, d) with hidden width ``hidden``."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 2 * hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a, g = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(a * F.silu(g))


class Block(StreamingModule):
    """Pre-norm residual block around one mixer, optionally followed by a gated MLP.

    Args: mixer (name or module), mlp_ratio (0 = no MLP, else hidden = ratio * d_model),
    norm_eps, and ``mixer_kwargs`` for the mixer's constructor.
    """

    def __init__(self, d_model: int, mixer: str | StreamingModule = "mamba2", mlp_ratio: float = 0.0,
                 norm_eps: float = 1e-5, **mixer_kwargs: Any):
        super().__init__()
        self.d_model = d_model
        self.norm = RMSNorm(d_model, eps=norm_eps)
        self.mixer = make_mixer(mixer, d_model, **mixer_kwargs) if isinstance(mixer, str) else mixer
        if self.mixer.d_model != d_model:
            raise ValueError(f"Block: mixer width {self.mixer.d_model} != d_model {d_model}")
        self.mlp = GatedMLP(d_model, int(mlp_ratio * d_model)) if mlp_ratio > 0 else None
        self.norm2 = RMSNorm(d_model, eps=norm_eps) if self.mlp is not None else None

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> State:
        return self.mixer.init_state(batch_size, device=device, dtype=dtype)

    def _residual(self, x: Tensor, y: Tensor) -> Tensor:
        """x + y (the mixer's output), then the MLP's residual branch: (..., d_model)."""
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x

    def _forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self.mixer._forward(self.norm(x), state)
        return self._residual(x, y), state

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self.mixer._step(self.norm(x_t), state)
        return self._residual(x_t, y), state

    def _step_(self, x_t: Tensor, state: State, active: Tensor | None) -> Tensor:
        return self._residual(x_t, self.mixer._step_(self.norm(x_t), state, active))


@dataclasses.dataclass(frozen=True)
class BackboneState(State):
    """layers: one state per block, in order."""

    layers: tuple[State, ...]


class Backbone(StreamingModule):
    """A stack of Blocks with a final RMSNorm, (B, L, d_model) -> (B, L, d_model).

    Args: layers (mixer names, e.g. ["mamba2", "mamba2", "attention", "mamba2"]),
    mixer_kwargs ({mixer name: constructor kwargs}), mlp_ratio, norm_eps.
    """

    def __init__(self, d_model: int, layers: Sequence[str] = ("mamba2", "mamba2", "mamba2", "mamba2"),
                 mixer_kwargs: Mapping[str, Mapping[str, Any]] | None = None, mlp_ratio: float = 0.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        if not layers:
            raise ValueError("Backbone needs at least one layer")
        mixer_kwargs = dict(mixer_kwargs or {})
        unknown = set(mixer_kwargs) - set(MIXERS)
        if unknown:
            raise ValueError(f"mixer_kwargs names unknown mixers {sorted(unknown)}; choose from {sorted(MIXERS)}")
        self.d_model = d_model
        self.layer_kinds = list(layers)
        self.blocks = nn.ModuleList(
            Block(d_model, kind, mlp_ratio=mlp_ratio, norm_eps=norm_eps, **mixer_kwargs.get(kind, {}))
            for kind in layers
        )
        self.norm_f = RMSNorm(d_model, eps=norm_eps)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> BackboneState:
        return BackboneState(tuple(b.init_state(batch_size, device=device, dtype=dtype) for b in self.blocks))

    def _forward(self, x: Tensor, state: BackboneState) -> tuple[Tensor, BackboneState]:
        return self._through("_forward", x, state)

    def _step(self, x_t: Tensor, state: BackboneState) -> tuple[Tensor, BackboneState]:
        return self._through("_step", x_t, state)

    def _through(self, method: str, x: Tensor, state: BackboneState) -> tuple[Tensor, BackboneState]:
        """Each block's ``method`` (``_forward`` on (B, L, d), ``_step`` on (B, d)) in turn, then the final norm."""
        new = []
        for block, s in zip(self.blocks, state.layers, strict=True):
            x, s = getattr(block, method)(x, s)
            new.append(s)
        return self.norm_f(x), BackboneState(tuple(new))

    def _step_(self, x_t: Tensor, state: BackboneState, active: Tensor | None) -> Tensor:
        for block, s in zip(self.blocks, state.layers, strict=True):
            x_t = block._step_(x_t, s, active)
        return self.norm_f(x_t)
