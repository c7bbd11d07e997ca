"""RMSNorm and the gated RMSNorm of Mamba-2.

Both are computed in float32 (or float64) whatever the input dtype, as mamba_ssm does,
and cast back. Parameter names match mamba_ssm (``weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.kernels import get_op, reference


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dim, in at least float32."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.rms_norm(x.float(), (x.shape[-1],), weight.float(), eps).to(x.dtype)
    return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps)


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight over the last dimension. x: (..., d)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class RMSNormGated(nn.Module):
    """Mamba-2's output norm: y = rmsnorm(x * silu(z)) * weight, per group of ``group_size``.

    This is mamba_ssm's ``RMSNormGated`` with ``norm_before_gate=False`` (its Mamba2 default):
    the gate is applied first, then each group of channels is normalised on its own.
    x, z: (..., d).
    """

    def __init__(self, d: int, eps: float = 1e-5, group_size: int | None = None):
        super().__init__()
        self.eps = eps
        self.group_size = group_size or d
        if d % self.group_size:
            raise ValueError(f"RMSNormGated: d={d} is not a multiple of group_size={self.group_size}")
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        # float64 (reference checks) always takes the plain path; the GPU backend fuses it
        op = reference.gated_rms_norm if x.dtype == torch.float64 else get_op("gated_rms_norm", x.device)
        return op(x, z, self.weight, self.eps, self.group_size)
