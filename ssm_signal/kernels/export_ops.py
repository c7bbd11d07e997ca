"""Ops written for graph exporters: the same functions as their ``reference`` twins, in forms that an
exporter lowers to a small, fast graph (the ``export`` backend, forced by ``kernels.use("export")``).

- ``power_spectrum``: the log-mel's |rfft(w x)|^2 as one real matmul with a DFT basis. ONNX has no
  complex type; its DFT operator runs a 400-point transform as a direct sum (about 100 us on one CPU
  thread in onnxruntime 1.32, and 3e-5 relative error) where the matmul takes under 20 us (6e-7).
"""

from __future__ import annotations

import math

import torch
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
