"""Mamba-2: the SSD mixer of Dao & Gu (2024), "Transformers are SSMs: Generalized Models and
Efficient Algorithms Through Structured State Space Duality", arXiv:2405.21060.

    z, xBC, Δ = in_proj(u)                    one projection, split
    x, B, C   = split(silu(causal_conv1d(xBC)))
    Δ         = softplus(Δ + dt_bias)         one step size per head
    y         = SSD(Ā = exp(Δ A), A scalar per head; B, C shared within each of G groups)(x) + D x
    out       = out_proj(rmsnorm(y * silu(z)))  gated RMSNorm, per group

Parameter names and shapes follow ``mamba_ssm.modules.mamba2.Mamba2`` so its state_dicts
load with ``strict=True`` (with its defaults rmsnorm=True, norm_before_gate=False,
D_has_hdim=False, d_ssm=None, learnable_init_states=False).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.kernels import get_op
from ssm_signal.kernels.reference import write_rows_
from ssm_signal.layers.base import StreamingModule, upcast
from ssm_signal.layers.conv import causal_conv1d, causal_conv1d_step
from ssm_signal.layers.mamba import init_dt_bias
from ssm_signal.layers.norm import RMSNormGated
from ssm_signal.state import State


@dataclasses.dataclass(frozen=True)
class Mamba2State(State):
    """conv: (B, d_inner + 2 G N, d_conv-1) last conv inputs; ssm: (B, H, P, N) h."""

    conv: Tensor
    ssm: Tensor


class Mamba2(StreamingModule):
    """Mamba-2 mixer, (B, L, d_model) -> (B, L, d_model).

    Args mirror mamba_ssm's ``Mamba2``, in its order: d_state N (128), d_conv (4), conv_init (None: PyTorch's
    conv initialisation; else uniform in +-conv_init), expand (2), headdim P (64; heads H = d_inner / P),
    ngroups G (1), A_init_range ((1, 16)), dt_min/dt_max/dt_init_floor, bias, conv_bias, chunk_size (256,
    for the chunked scan).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
    ):
        super().__init__()
        d_inner = expand * d_model
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand < 1 or chunk_size < 1:
            raise ValueError("Mamba2: d_model, d_state, d_conv, expand and chunk_size must be positive")
        if d_inner % headdim:
            raise ValueError(f"Mamba2: d_inner = expand * d_model = {d_inner} is not a multiple of headdim={headdim}")
        nheads = d_inner // headdim
        if nheads % ngroups:
            raise ValueError(f"Mamba2: nheads={nheads} is not a multiple of ngroups={ngroups}")
        if conv_init is not None and not conv_init > 0:
            raise ValueError(f"Mamba2: conv_init must be > 0 (or None for PyTorch's default), got {conv_init}")
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"Mamba2: A_init_range must satisfy 0 < lo <= hi, got {A_init_range}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner, self.headdim, self.nheads, self.ngroups = d_inner, headdim, nheads, ngroups
        self.chunk_size = chunk_size
        self.conv_dim = d_inner + 2 * ngroups * d_state

        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * ngroups * d_state + nheads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        self.dt_bias = nn.Parameter(init_dt_bias(nheads, dt_min, dt_max, dt_init_floor))
        # A = -exp(A_log), one scalar per head, uniform in A_init_range
        A = torch.empty(nheads).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(nheads))
        self.norm = RMSNormGated(d_inner, eps=1e-5, group_size=d_inner // ngroups)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> Mamba2State:
        return Mamba2State(
            conv=torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device, dtype=dtype),
        )

    def _split(self, zxbcdt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return zxbcdt.split([self.d_inner, self.conv_dim, self.nheads], dim=-1)  # z, xBC, Δ

    def _split_xbc(self, xBC: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(..., conv_dim) -> x (..., H, P), B and C (..., G, N)."""
        GN = self.ngroups * self.d_state
        x, B, C = xBC.split([self.d_inner, GN, GN], dim=-1)
        lead = x.shape[:-1]
        return (x.reshape(*lead, self.nheads, self.headdim),
                B.reshape(*lead, self.ngroups, self.d_state),
                C.reshape(*lead, self.ngroups, self.d_state))

    def _forward(self, u: Tensor, state: Mamba2State) -> tuple[Tensor, Mamba2State]:
        Bsz, L, _ = u.shape
        z, xBC, dt = self._split(self.in_proj(u))
        xBC, conv = causal_conv1d(xBC, self.conv1d.weight, self.conv1d.bias, state.conv)
        x, B, C = self._split_xbc(F.silu(xBC))
        A = -torch.exp(upcast(self.A_log))
        scan = get_op("ssd_scan", u.device)
        y, h = scan(x, dt, A, B, C, upcast(self.D), upcast(self.dt_bias), state.ssm, self.chunk_size)
        y = self.norm(y.reshape(Bsz, L, self.d_inner), z)
        return self.out_proj(y), Mamba2State(conv=conv, ssm=h)

    def _step_inputs(self, u_t: Tensor, conv: Tensor) -> tuple[Tensor, tuple, Tensor]:
        """u_t (B, d_model), conv state -> z (B, d_inner), the SSD step's arguments
        (x, dt, A, B, C, D, dt_bias) before the state, and the new conv state."""
        z, xBC, dt = self._split(self.in_proj(u_t))
        xBC, conv = causal_conv1d_step(xBC, self.conv1d.weight, self.conv1d.bias, conv)
        x, B, C = self._split_xbc(F.silu(xBC))
        A = -torch.exp(upcast(self.A_log))
        return z, (x, dt, A, B, C, upcast(self.D), upcast(self.dt_bias)), conv

    def _step_output(self, y: Tensor, z: Tensor) -> Tensor:
        return self.out_proj(self.norm(y.reshape(z.shape[0], self.d_inner), z))

    def _step(self, u_t: Tensor, state: Mamba2State) -> tuple[Tensor, Mamba2State]:
        z, args, conv = self._step_inputs(u_t, state.conv)
        y, h = get_op("ssd_step", u_t.device)(*args, state.ssm)
        return self._step_output(y, z), Mamba2State(conv=conv, ssm=h)

    def _step_(self, u_t: Tensor, state: Mamba2State, active: Tensor | None) -> Tensor:
        # h, the largest state, advances in place inside the step kernel (one read, one write);
        # the small conv buffer is shifted out of place and written back
        z, args, conv = self._step_inputs(u_t, state.conv)
        write_rows_(state.conv, conv, active)
        y = get_op("ssd_step_inplace", u_t.device)(*args, state.ssm, active)
        return self._step_output(y, z)

