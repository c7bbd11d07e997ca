"""Mamba-2 SSD in its chunked matrix form, in plain PyTorch, with initial and final states.

Dao & Gu (2024), section 6: with A a scalar per head, the SSM is a semiseparable matrix
M[t, s] = C_t · B_s · exp(sum_{k=s+1..t} Δ_k A). Cut time into chunks of Q steps:

1. intra-chunk (diagonal blocks): a masked "attention" Y_diag = (C B^T ∘ L) (Δ x), with
   L[t, s] = exp(segsum(ΔA))[t, s] the decay from s to t inside the chunk;
2. chunk states: the state each chunk contributes at its end;
3. inter-chunk recurrence on the chunk states (a scan over n_c chunks, here as one small
   n_c x n_c decay matrix), starting from the initial state h0;
4. off-diagonal blocks: each chunk's incoming state read out through C and the decay.

Same signature and semantics as :func:`ssm_signal.kernels.reference.ssd_scan`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_signal.kernels.reference import compute_dtype


def segsum(x: Tensor) -> Tensor:
    """Stable segment sums: out[..., i, j] = sum_{k=j+1..i} x[..., k] for i >= j, else -inf.

    x: (..., T) -> (..., T, T). Built by a masked cumsum rather than a difference of
    cumsums, which would cancel catastrophically for long chunks.
    """
    T = x.shape[-1]
    x = x[..., None].expand(*x.shape, T)  # x[..., k, j]
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~strict, 0)
    out = torch.cumsum(x, dim=-2)
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
    return out.masked_fill(~keep, -torch.inf)


def ssd_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h0: Tensor, chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """x: (B, L, H, P); dt: (B, L, H); A, D, dt_bias: (H,); B, C: (B, L, G, N); h0: (B, H, P, N)."""
    cd = compute_dtype(x, dt, A, h0)
    Bsz, L, H, P = x.shape
    G = B.shape[2]
    x_ = x.to(cd)
    delta = F.softplus(dt.to(cd) + (dt_bias.to(cd) if dt_bias is not None else 0.0))  # Δ (B, L, H)
    Q = min(chunk_size, L)
    n_c = -(-L // Q)
    pad = n_c * Q - L
    # Padding with Δ = 0 is exact: Ā = exp(0) = 1 and Δ x = 0 leave the state unchanged.
    xdt = F.pad(x_ * delta.unsqueeze(-1), (0, 0, 0, 0, 0, pad))
    Adt = F.pad(delta * A.to(cd), (0, 0, 0, pad))
    Bc = F.pad(B.to(cd), (0, 0, 0, 0, 0, pad)).repeat_interleave(H // G, dim=2)
    Cc = F.pad(C.to(cd), (0, 0, 0, 0, 0, pad)).repeat_interleave(H // G, dim=2)

    # (B, n_c, Q, ...) chunked views
    xdt = xdt.reshape(Bsz, n_c, Q, H, P)
    Bc = Bc.reshape(Bsz, n_c, Q, H, -1)
    Cc = Cc.reshape(Bsz, n_c, Q, H, -1)
    Adt = Adt.reshape(Bsz, n_c, Q, H).permute(0, 3, 1, 2)  # (B, H, n_c, Q)
    A_cum = torch.cumsum(Adt, dim=-1)

    # 1. diagonal blocks
    Lmat = torch.exp(segsum(Adt))  # (B, H, n_c, Q, Q)
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, Lmat, xdt)

    # 2. state at the end of each chunk, from a zero start
    decay_to_end = torch.exp(A_cum[..., -1:] - A_cum)  # (B, H, n_c, Q)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_to_end, xdt)

    # 3. carry across chunks, from h0
    states = torch.cat([h0.to(cd).unsqueeze(1), states], dim=1)  # (B, n_c+1, H, P, N)
    decay_chunk = torch.exp(segsum(F.pad(A_cum[..., -1], (1, 0))))  # (B, H, n_c+1, n_c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    entering, final = states[:, :-1], states[:, -1]

    # 4. off-diagonal blocks: the entering state read out at every position
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, entering, torch.exp(A_cum))

    y = (y_diag + y_off).reshape(Bsz, n_c * Q, H, P)[:, :L]
    if D is not None:
        y = y + D.to(cd)[:, None] * x_
    return y.to(x.dtype), final.to(h0.dtype)
