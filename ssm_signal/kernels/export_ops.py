"""Ops written for graph exporters: the same functions as their ``reference`` twins, in forms that an
exporter lowers to a small, fast graph (the ``export`` backend, forced by ``kernels.use("export")``).

- ``power_spectrum``: the log-mel's |rfft(w x)|^2 as one real matmul with a DFT basis. ONNX has no
  complex type; its DFT operator runs a 400-point transform as a direct sum (about 100 us on one CPU
  thread in onnxruntime 1.32, and 3e-5 relative error) where the matmul takes under 20 us (6e-7).
- ``gated_rms_norm``: Mamba-2's gated norm through ``F.rms_norm``, which exports as one
  RMSNormalization node (opset 23) where the reference's written-out form is six.
- ``conv_step``: the causal conv's step as one product and sum over the (B, C, K) window, five nodes
  where the reference's K-1 multiply-adds over (B, C) slices (chosen for GPUs, whose reductions over a
  4-wide axis are slow) export as fifteen.
- ``ssd_step``: Mamba-2's step with B and C broadcast over the heads of their group (reshapes with a
  free batch dimension) instead of repeated per head (the reference's ``repeat_interleave``, which
  exports as shape arithmetic and expands).

The graph of the default keyword model's frame step has a third fewer nodes for these, which is most
of its cost in onnxruntime on a CPU (a few tenths of a microsecond per node).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def dft_basis(n_fft: int, window: Tensor) -> Tensor:
    """The windowed real DFT as a matrix: (n_fft, 2 K), K = n_fft // 2 + 1, columns
    w[n] cos(2 pi n k / n_fft) then w[n] sin(2 pi n k / n_fft).

    Built from integer ranges, (n k) mod n_fft exactly in int64 before the angle is formed, so every
    angle is in [0, 2 pi) and float32 cos/sin are as accurate as they get. Nothing here is a stored
    constant: an exported graph computes the basis from ranges (onnxruntime folds it once, at load),
    so the model file does not carry it.
    """
    n = torch.arange(n_fft, device=window.device)
    k = torch.arange(n_fft // 2 + 1, device=window.device)
    angle = torch.remainder(n[:, None] * k[None, :], n_fft).to(window.dtype) * (2 * math.pi / n_fft)
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=1) * window[:, None]


def power_spectrum(frames: Tensor, window: Tensor, n_fft: int) -> Tensor:
    """|rfft(window * frame)|^2 by matmul: frames (..., n_fft) -> (..., n_fft // 2 + 1)."""
    z = frames @ dft_basis(n_fft, window)  # (..., 2 K): real parts, then imaginary parts (sign aside)
    re, im = z.chunk(2, dim=-1)
    return re.square() + im.square()


def gated_rms_norm(x: Tensor, z: Tensor, weight: Tensor, eps: float = 1e-5, group_size: int | None = None) -> Tensor:
    """rmsnorm(x * silu(z)) * weight per group of ``group_size`` channels: x, z (..., D), weight (D,)."""
    D = x.shape[-1]
    gs = group_size or D
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    g = x.to(cd) * F.silu(z.to(cd))
    if gs == D:  # one group: the weight is the norm's scale, one node (the grouped form below takes five more)
        return F.rms_norm(g, (D,), weight.to(cd), eps).to(x.dtype)
    g = F.rms_norm(g.reshape(*x.shape[:-1], D // gs, gs), (gs,), None, eps).reshape(x.shape)
    return (g * weight.to(cd)).to(x.dtype)


def conv_step(x_t: Tensor, weight: Tensor, bias: Tensor | None, buffer: Tensor) -> tuple[Tensor, Tensor]:
    """x_t (B, C), weight (C, 1, K), bias (C,), buffer (B, C, K-1) -> y_t (B, C), the new buffer."""
    window = torch.cat([buffer.to(x_t.dtype), x_t.unsqueeze(-1)], dim=2)  # (B, C, K), oldest first
    y = (window * weight[:, 0].to(x_t.dtype)).sum(-1)
    if bias is not None:
        y = y + bias.to(x_t.dtype)
    return y, window[:, :, 1:].to(buffer.dtype)


def ssd_step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, dt_bias: Tensor | None,
             h: Tensor) -> tuple[Tensor, Tensor]:
    """One SSD step, as ``reference.ssd_step``: x (B, H, P); dt (B, H); A, D, dt_bias (H,); B, C (B, G, N);
    h (B, H, P, N) -> y (B, H, P), h_t. Heads h of group g = h // (H / G) read B[:, g] and C[:, g]."""
    cd = torch.float64 if torch.float64 in (x.dtype, dt.dtype, A.dtype, h.dtype) else torch.float32
    _, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    # Everything is shaped once into (B, *heads, P or 1, N or 1), heads = (H,) when a single group's B and C
    # broadcast over all heads, else (G, H / G) so that they broadcast over their group's heads; the head
    # constants A and D are shaped to match at export (folded), and y is summed keeping its last axis, so
    # no tensor is reshaped twice (each reshape is a node of the graph: this form has a tenth fewer).
    heads, groups = ((H,), (1,)) if G == 1 else ((G, H // G), (G, 1))
    x_ = x.to(cd).reshape(-1, *heads, P, 1)
    delta = F.softplus(dt.to(cd) + (dt_bias.to(cd) if dt_bias is not None else 0.0)).reshape(-1, *heads, 1, 1)
    dA = torch.exp(delta * A.to(cd).reshape(*heads, 1, 1))  # Ā_t per head
    h_ = h.to(cd) if G == 1 else h.to(cd).reshape(-1, *heads, P, N)
    h_new = dA * h_ + (delta * x_) * B.to(cd).reshape(-1, *groups, 1, N)
    y = (h_new * C.to(cd).reshape(-1, *groups, 1, N)).sum(-1, keepdim=True)  # (B, *heads, P, 1)
    if D is not None:
        y = y + D.to(cd).reshape(*heads, 1, 1) * x_
    return y.reshape(-1, H, P).to(x.dtype), h_new.reshape(-1, H, P, N).to(h.dtype)
