"""Mamba-1: the selective SSM (S6) mixer of Gu & Dao (2023), "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", arXiv:2312.00752, Algorithm 2.

    x, z  = in_proj(u)                        expand to d_inner, z is the gate
    x     = silu(causal_conv1d(x))
    Δ, B, C = x_proj(x)                       selectivity: all three depend on the input
    Δ     = softplus(dt_proj(Δ) + dt_bias)
    y     = SSM(Ā = exp(Δ A), B̄ x = Δ B x, C)(x) + D x
    out   = out_proj(y * silu(z))

Parameter names and shapes follow ``mamba_ssm.modules.mamba_simple.Mamba`` so its
state_dicts load with ``strict=True``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.kernels import get_op
from ssm_signal.kernels.reference import write_rows_
from ssm_signal.layers.base import StreamingModule, upcast
from ssm_signal.layers.conv import causal_conv1d, causal_conv1d_step
from ssm_signal.state import State


@dataclasses.dataclass(frozen=True)
class MambaState(State):
    """conv: (B, d_inner, d_conv-1) last conv inputs; ssm: (B, d_inner, d_state) h."""

    conv: Tensor
    ssm: Tensor


def init_dt_bias(n: int, dt_min: float, dt_max: float, dt_init_floor: float) -> Tensor:
    """Bias such that softplus(bias) = Δ is log-uniform in [dt_min, dt_max] (Mamba's init)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus


class Mamba(StreamingModule):
    """Mamba-1 mixer, (B, L, d_model) -> (B, L, d_model).

    Args mirror mamba_ssm's ``Mamba``: d_state N (16), d_conv (4), expand (2),
    dt_rank ("auto" = ceil(d_model / 16)), dt_min/dt_max/dt_init/dt_scale/dt_init_floor,
    conv_bias (True), bias (False, for in_proj and out_proj).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: Literal["random", "constant"] = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand < 1:
            raise ValueError("Mamba: d_model, d_state, d_conv and expand must be positive")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"Mamba: dt_init must be 'random' or 'constant', got {dt_init!r}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)

        dt_init_std = self.dt_rank**-0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                nn.init.constant_(self.dt_proj.weight, dt_init_std)
            else:
                nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
            self.dt_proj.bias.copy_(init_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor))
        # S4D-Real initialisation: A = -(1, 2, ..., N) for every channel, stored as log(-A)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> MambaState:
        return MambaState(
            conv=torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype),
        )

    def _selective_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., d_inner) -> Δ before bias/softplus (..., d_inner), B and C (..., N)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def _forward(self, u: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, d_inner) each
        x, conv = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias, state.conv)
        x = F.silu(x)
        dt, B, C = self._selective_inputs(x)
        A = -torch.exp(upcast(self.A_log))
        scan = get_op("selective_scan", u.device)
        y, h = scan(x, dt, A, B, C, upcast(self.D), z, upcast(self.dt_proj.bias), state.ssm)
        return self.out_proj(y), MambaState(conv=conv, ssm=h)

    def _step_inputs(self, u_t: Tensor, conv: Tensor) -> tuple[tuple, Tensor]:
        """u_t (B, d_model), conv state -> the selective step's arguments (x, dt, A, B, C, D, z,
        dt_bias) before the state, and the new conv state."""
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, d_inner)
        x, conv = causal_conv1d_step(x, self.conv1d.weight, self.conv1d.bias, conv)
        x = F.silu(x)
        dt, B, C = self._selective_inputs(x)
        A = -torch.exp(upcast(self.A_log))
        return (x, dt, A, B, C, upcast(self.D), z, upcast(self.dt_proj.bias)), conv

    def _step(self, u_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        args, conv = self._step_inputs(u_t, state.conv)
        y, h = get_op("selective_step", u_t.device)(*args, state.ssm)
        return self.out_proj(y), MambaState(conv=conv, ssm=h)

    def _step_(self, u_t: Tensor, state: MambaState, active: Tensor | None) -> Tensor:
        # h advances in place inside the step kernel; the small conv buffer is written back
        args, conv = self._step_inputs(u_t, state.conv)
        write_rows_(state.conv, conv, active)
        return self.out_proj(get_op("selective_step_inplace", u_t.device)(*args, state.ssm, active))
