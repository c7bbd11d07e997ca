"""Mamba-1 selective scan in plain PyTorch: vectorised discretisation + chunked linear scan.

Same signature and semantics as :func:`ssm_signal.kernels.reference.selective_scan`.
Memory is O(B L D_in N): Ā_t and B̄_t x_t are materialised for every step (a fused GPU
kernel keeps them in registers; see the ``triton`` backend).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_signal.kernels.linear_scan import linear_scan
from ssm_signal.kernels.reference import compute_dtype


def selective_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h0: Tensor,
) -> tuple[Tensor, Tensor]:
    """x, dt, z: (B, L, D_in); A: (D_in, N); B, C: (B, L, N); D, dt_bias: (D_in,); h0: (B, D_in, N)."""
    cd = compute_dtype(x, dt, A, h0)
    x_ = x.to(cd)
    delta = dt.to(cd) + (dt_bias.to(cd) if dt_bias is not None else 0.0)
    delta = F.softplus(delta)  # Δ: (B, L, D_in)
    dA = torch.exp(delta.unsqueeze(-1) * A.to(cd))  # Ā: (B, L, D_in, N)
    dBx = (delta * x_).unsqueeze(-1) * B.to(cd).unsqueeze(2)  # B̄ x: (B, L, D_in, N)
    h = linear_scan(dA, dBx, h0.to(cd))  # (B, L, D_in, N)
    y = torch.einsum("bldn,bln->bld", h, C.to(cd))
    if D is not None:
        y = y + D.to(cd) * x_
    if z is not None:
        y = y * F.silu(z.to(cd))
    return y.to(x.dtype), h[:, -1].to(h0.dtype)
