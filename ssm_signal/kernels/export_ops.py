"""Ops written for graph exporters: the same functions as their ``reference`` twins, in forms that an
exporter lowers to a small, fast graph (the ``export`` backend, forced by ``kernels.use("export")``).

- ``mel_energy``: the log-mel's |rfft(w x)|^2 @ fbank as real matmuls: a two-stage DFT (20 x 20 points for
  400), a square and one matmul with the filterbank laid out by bin (it sums the real and imaginary
  parts' squares as it applies the bands). ONNX has no complex type; its DFT operator runs a 400-point
  transform as a direct sum (about 100 us on one CPU thread in onnxruntime 1.32, and 3e-5 relative
  error), the direct real basis as one matmul reads 640 KB of weights per frame (20-30 us).
- ``gated_rms_norm``: Mamba-2's gated norm through ``F.rms_norm``, which exports as one
  RMSNormalization node (opset 23) where the reference's written-out form is six.
- ``conv_step``: the causal conv's step as one product and sum over the (B, C, K) window, five nodes
  where the reference's K-1 multiply-adds over (B, C) slices (chosen for GPUs, whose reductions over a
  4-wide axis are slow) export as fifteen.
- ``ssd_step``: Mamba-2's step with B and C broadcast over the heads of their group (reshapes with a
  free batch dimension) instead of repeated per head (the reference's ``repeat_interleave``, which
  exports as shape arithmetic and expands).
- ``ssd_scan``: Mamba-2's SSD over a sequence in the chunked matrix form, every contraction a MatMul and
  the decay matrices built by triangles, where ``ssd_torch`` uses einsums (a generic loop in onnxruntime):
  the parallel chunk graph's scan (``pipelines.export.graphs``).

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


def mel_energy(frames: Tensor, window: Tensor, n_fft: int, fbank: Tensor) -> Tensor:
    """|rfft(window * frame)|^2 @ fbank by matmuls: frames (..., n_fft), fbank (K, n_mels) -> (..., n_mels).

    With n_fft = N1 N2 (both >= 4; 400 = 20 x 20) the DFT is taken in two stages (:func:`two_stage_dft`),
    a fifth of the direct basis' multiply-adds and a tenth of its weights to read per frame; otherwise by the
    direct basis (:func:`dft_basis`)."""
    factors = dft_factors(n_fft)
    if factors is None:
        z = frames @ dft_basis(n_fft, window)  # (..., 2 K): real parts, then imaginary parts (sign aside)
        return z.square() @ torch.cat([fbank, fbank], dim=0)  # re^2 @ fbank + im^2 @ fbank
    z, bins = two_stage_dft(frames * window, *factors)  # (..., N2 * 2 K1), and the bin of each entry
    # each entry's squared part goes to its bin's bands, by a 0/1 selection (entries past the last bin, K - 1,
    # select none); a product with the filterbank rather than an index into it, so that an int8 export stores
    # the filterbank as a matrix (int8), and the selection, computed from ranges, is folded at load
    select = (bins[:, None] == torch.arange(n_fft // 2 + 1, device=bins.device, dtype=bins.dtype)).to(fbank.dtype)
    return z.square() @ (select @ fbank)


def dft_factors(n: int) -> tuple[int, int] | None:
    """n = N1 * N2 with N2 the largest divisor <= sqrt(n), or None if N2 < 4 (the direct basis is then used)."""
    n2 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return (n // n2, n2) if n2 >= 4 else None


def two_stage_dft(x: Tensor, n1: int, n2: int) -> tuple[Tensor, Tensor]:
    """The real DFT X_k = sum_n x_n e^(-2 pi i n k / N), N = n1 n2, of bins k <= N / 2, by Cooley-Tukey in
    two matmuls: x (..., N) -> (Z (..., n2 * 2 * K1), bins (n2 * 2 * K1,) int32), Z's entries the real and
    imaginary parts of X at ``bins`` (a bin > N / 2 where the layout overshoots: the caller drops it).

    With n = a + n1 b (a < n1, b < n2) and k = c + n2 d (c < n2, d < K1 = (N / 2) // n2 + 1):

        Y[c, a]     = sum_b x[a + n1 b] e^(-2 pi i b c / n2)           n2-point DFTs (one real matmul on the left)
        X[c + n2 d] = sum_a Y[c, a] e^(-2 pi i a (c + n2 d) / N)       per c, twiddle and n1-point DFT in one
                                                                       (2 n1, 2 K1) real matrix (a batched matmul)

    Every angle is formed from an exact integer product mod N (or n2), as in :func:`dft_basis`; the tables are
    computed from ranges, so an exported graph folds them at load rather than storing them.
    """
    N = n1 * n2
    K1 = (N // 2) // n2 + 1
    dev, dt = x.device, x.dtype
    # int32 tables (products < N^2 / 2): the few an exporter folds into the file are half the size
    b = torch.arange(n2, device=dev, dtype=torch.int32)
    inner = torch.remainder(b[:, None] * b[None, :], n2).to(dt) * (2 * math.pi / n2)  # (c, b)
    F1 = torch.stack([torch.cos(inner), -torch.sin(inner)], dim=1).reshape(2 * n2, n2)  # rows (c, re|im)
    a = torch.arange(n1, device=dev, dtype=torch.int32)
    k = b[:, None] + n2 * torch.arange(K1, device=dev, dtype=torch.int32)[None, :]  # (c, d): the bin
    ang = torch.remainder(a[None, :, None] * k[:, None, :], N).to(dt) * (2 * math.pi / N)  # (c, a, d)
    tr, ti = torch.cos(ang), -torch.sin(ang)  # the factor e^(-i ang) = tr + i ti
    # (Yr + i Yi)(tr + i ti) = (Yr tr - Yi ti) + i (Yr ti + Yi tr): rows (re|im of Y, a), columns (re|im of X, d)
    G = torch.cat([torch.cat([tr, ti], dim=2), torch.cat([-ti, tr], dim=2)], dim=1)  # (n2, 2 n1, 2 K1)
    lead = x.shape[:-1]
    y = F1 @ x.reshape(*lead, n2, n1)  # (..., 2 n2, n1), rows (c, re|im)
    z = y.reshape(*lead, n2, 1, 2 * n1) @ G  # (..., n2, 1, 2 K1)
    bins = k[:, None, :].expand(n2, 2, K1).reshape(-1)  # (c, re|im, d) -> bin
    return z.reshape(*lead, n2 * 2 * K1), bins


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
    y = h_new @ C.to(cd).reshape(-1, *groups, N, 1)  # (B, *heads, P, 1): one MatMul, not a product and a sum
    if D is not None:
        y = y + D.to(cd).reshape(*heads, 1, 1) * x_
    # with one group h_new already has the state's shape (B, H, P, N): a reshape to it would still be a node
    return y.reshape(-1, H, P).to(x.dtype), (h_new if G == 1 else h_new.reshape(-1, H, P, N)).to(h.dtype)


def ssd_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, dt_bias: Tensor | None,
             h0: Tensor, chunk_size: int = 256) -> tuple[Tensor, Tensor]:
    """SSD over a sequence, as ``ssd_torch.ssd_scan`` (the same four steps of Dao & Gu 2024, section 6), with
    every contraction a batched MatMul: x (B, L, H, P); dt (B, L, H); A, D, dt_bias (H,); B, C (B, L, G, N);
    h0 (B, H, P, N) -> y (B, L, H, P), h_L.

    ``ssd_torch`` contracts with four-operand einsums, which onnxruntime runs as a generic loop (57% of a
    100-frame chunk graph's time on one CPU thread). Here time is laid out last but one, (B, G, H/G, n_c, Q, .),
    so each contraction is a MatMul over the last two axes and B and C broadcast over their group's heads
    (never repeated per head). Time is always cut into chunks of Q = ``chunk_size`` (the last padded with
    Δ = 0, exact), so that no shape depends on L beyond the number of chunks.
    """
    cd = torch.float64 if torch.float64 in (x.dtype, dt.dtype, A.dtype, h0.dtype) else torch.float32
    Bsz, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    Q = chunk_size
    n_c = (L + Q - 1) // Q
    pad = n_c * Q - L
    delta = F.softplus(dt.to(cd) + (dt_bias.to(cd) if dt_bias is not None else 0.0))  # Δ (B, L, H)
    # (B, L, ...) -> (B, G, H/G or 1, n_c, Q, ...): time padded to whole chunks, heads split into their groups
    xdt = F.pad(x.to(cd) * delta[..., None], (0, 0, 0, 0, 0, pad))
    xdt = xdt.reshape(Bsz, n_c, Q, G, H // G, P).permute(0, 3, 4, 1, 2, 5)
    Adt = F.pad(delta * A.to(cd), (0, 0, 0, pad)).reshape(Bsz, n_c, Q, G, H // G).permute(0, 3, 4, 1, 2)
    Bc = F.pad(B.to(cd), (0, 0, 0, 0, 0, pad)).reshape(Bsz, n_c, Q, G, 1, N).permute(0, 3, 4, 1, 2, 5)
    Cc = F.pad(C.to(cd), (0, 0, 0, 0, 0, pad)).reshape(Bsz, n_c, Q, G, 1, N).permute(0, 3, 4, 1, 2, 5)
    A_cum = torch.cumsum(Adt, dim=-1)  # (B, G, H/G, n_c, Q)

    # 1. diagonal blocks: (C B^T ∘ L) (Δ x)
    y = ((Cc @ Bc.transpose(-1, -2)) * _decays(Adt)) @ xdt  # (B, G, H/G, n_c, Q, P)
    # 2. each chunk's state at its end, from a zero start: sum_s decay(s -> end) (Δ x)_s B_s^T
    decay_to_end = torch.exp(A_cum[..., -1:] - A_cum)
    states = (xdt * decay_to_end[..., None]).transpose(-1, -2) @ Bc  # (B, G, H/G, n_c, P, N)
    # 3. carried across chunks from h0, one (n_c + 1) x (n_c + 1) decay matrix per head
    states = torch.cat([h0.to(cd).reshape(Bsz, G, H // G, 1, P, N), states], dim=3)
    decay_chunk = _decays(F.pad(A_cum[..., -1], (1, 0)))  # (B, G, H/G, n_c + 1, n_c + 1)
    states = (decay_chunk @ states.reshape(Bsz, G, H // G, n_c + 1, P * N)).reshape(Bsz, G, H // G, n_c + 1, P, N)
    # 4. off-diagonal blocks: the state entering each chunk read out through C and the decay from its start
    y = y + (Cc @ states[:, :, :, :-1].transpose(-1, -2)) * torch.exp(A_cum)[..., None]
    y = y.permute(0, 3, 4, 1, 2, 5).reshape(Bsz, n_c * Q, H, P)[:, :L]
    if D is not None:
        y = y + D.to(cd)[:, None] * x.to(cd)
    return y.to(x.dtype), states[:, :, :, -1].reshape(Bsz, H, P, N).to(h0.dtype)


def _decays(x: Tensor) -> Tensor:
    """exp(segsum(x)): out[..., i, j] = exp(sum_{k=j+1..i} x[..., k]) for i >= j, else 0; x (..., T) -> (..., T, T).
    A masked cumsum, as ``ssd_torch.segsum`` (a difference of cumsums would cancel), its masks triangles
    (``Trilu`` nodes): no mask is stored in the graph, and above the diagonal the cumsum's 0 is exponentiated
    and dropped rather than set to -inf first."""
    T = x.shape[-1]
    return torch.tril(torch.exp(torch.cumsum(torch.tril(x[..., None].expand(*x.shape, T), -1), dim=-2)))
