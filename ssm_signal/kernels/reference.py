"""The readable spec: every op as a plain sequential recurrence over time.

Each ``*_scan`` is literally a fold of the matching ``*_step`` over the time axis, so
"the step loop equals the scan" holds by construction here, and every fast backend is
tested against these functions (in float64 where it matters).

Glossary (Gu & Dao 2023, "Mamba"; Dao & Gu 2024, "Transformers are SSMs"):
    x   input u_t of the SSM (after the causal conv)     shape (B, L, D) or (B, L, H, P)
    dt  Δ_t, the input-dependent step size (pre-softplus) shape (B, L, D) or (B, L, H)
    A   continuous state matrix, diagonal (Mamba-1: (D, N)) or scalar per head (Mamba-2: (H,))
    B   input matrix B_t (selective: depends on the input)  shape (B, L, N) or (B, L, G, N)
    C   output matrix C_t                                   same shape as B
    D   skip connection                                     shape (D,) or (H,)
    h   hidden state h_t                                    (B, D, N) or (B, H, P, N)
    Ā = exp(Δ A) (zero-order hold), B̄ x ≈ Δ B x (the simplification Mamba uses)
    h_t = Ā_t h_{t-1} + B̄_t x_t,   y_t = C_t · h_t + D x_t

Arithmetic runs in float64 when any input is float64, else float32; outputs are cast
back to the input dtype and the final state to the initial state's dtype.

The ``*_step_inplace`` twins are the serving form of the steps (StreamPool's tick): they write
h_t over h_{t-1} in the caller's tensor, only in the rows an ``active`` mask selects, and return
y_t alone. Here they are the pure step followed by a masked write; the GPU kernels do the same
with one read and one write of the state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_signal.validation import check_active


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any tensor is float64, else float32 (bf16/fp16 inputs are upcast)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def write_rows_(dst: Tensor, src: Tensor, active: Tensor | None = None) -> None:
    """dst[i] = src[i] in place for every row i (dim 0) where ``active`` (B,) is true; all rows if None.

    The masked form is one elementwise ``where`` written over ``dst``: rows left out keep their bits.
    """
    if active is None:
        dst.copy_(src)
    else:
        keep_new = active.to(torch.bool).reshape((-1,) + (1,) * (dst.dim() - 1))
        torch.where(keep_new, src.to(dst.dtype), dst, out=dst)


# ---------------------------------------------------------------------------------------
# The depthwise causal convolution of Mamba and Mamba-2, one step (the sequence form is a conv1d)
# ---------------------------------------------------------------------------------------
def conv_step(x_t: Tensor, weight: Tensor, bias: Tensor | None, buffer: Tensor) -> tuple[Tensor, Tensor]:
    """One step: x_t (B, C), buffer (B, C, K-1) of the last K-1 inputs -> y_t (B, C), new buffer.

    y_t = bias + w_{K-1} x_t + sum_k w_k buffer_k, as K-1 fused multiply-adds over (B, C) slices
    rather than a (B, C, K) window reduced over its last axis: reductions over a 4-wide innermost
    axis run far below memory speed on a GPU (docs/performance.md, "H100: serving").
    """
    w = weight[:, 0].to(x_t.dtype)  # (C, K)
    K = w.shape[1]
    y = x_t * w[:, K - 1]
    if bias is not None:
        y = y + bias.to(x_t.dtype)
    past = buffer.to(x_t.dtype)
    for k in range(K - 1):
        y = torch.addcmul(y, past[:, :, k], w[:, k])
    return y, torch.cat([buffer, x_t.unsqueeze(-1).to(buffer.dtype)], dim=2)[:, :, 1:]  # K=1: an empty buffer


# ---------------------------------------------------------------------------------------
# Mamba-1 / S6
# ---------------------------------------------------------------------------------------
def selective_step(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h: Tensor,
) -> tuple[Tensor, Tensor]:
    """One step of the selective SSM.

    x, dt, z: (B, D_in); A: (D_in, N); B, C: (B, N); D, dt_bias: (D_in,); h: (B, D_in, N).
    Returns y_t (B, D_in) and h_t.
    """
    cd = compute_dtype(x, dt, A, h)
    x_, A_, B_, C_ = x.to(cd), A.to(cd), B.to(cd), C.to(cd)
    delta = dt.to(cd) + (dt_bias.to(cd) if dt_bias is not None else 0.0)
    delta = F.softplus(delta)  # Δ_t > 0
    dA = torch.exp(delta.unsqueeze(-1) * A_)  # Ā_t = exp(Δ_t A)
    dBx = (delta * x_).unsqueeze(-1) * B_.unsqueeze(1)  # B̄_t x_t = Δ_t B_t x_t
    h_new = dA * h.to(cd) + dBx
    y = (h_new * C_.unsqueeze(1)).sum(-1)
    if D is not None:
        y = y + D.to(cd) * x_
    if z is not None:
        y = y * F.silu(z.to(cd))
    return y.to(x.dtype), h_new.to(h.dtype)


def selective_step_inplace(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h: Tensor, active: Tensor | None = None,
) -> Tensor:
    """:func:`selective_step` writing h_t over ``h`` (B, D_in, N) in place; returns y_t (B, D_in).

    active: (B,) bool or uint8, None = every row. Rows with active False keep their state bit for
    bit; their y is finite but meaningless (the caller ignores it).
    """
    check_active(active, x.shape[0], h.device)
    y, h_new = selective_step(x, dt, A, B, C, D, z, dt_bias, h)
    write_rows_(h, h_new, active)
    return y


def selective_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, dt_bias: Tensor | None, h0: Tensor,
) -> tuple[Tensor, Tensor]:
    """Selective scan over a sequence: x, dt, z (B, L, D_in); B, C (B, L, N); h0 (B, D_in, N)."""
    h, ys = h0, []
    for t in range(x.shape[1]):
        y, h = selective_step(x[:, t], dt[:, t], A, B[:, t], C[:, t], D,
                              None if z is None else z[:, t], dt_bias, h)
        ys.append(y)
    return torch.stack(ys, dim=1), h


# ---------------------------------------------------------------------------------------
# Mamba-2 / SSD: A is a scalar times identity per head
# ---------------------------------------------------------------------------------------
def _expand_groups(M: Tensor, nheads: int) -> Tensor:
    """(..., G, N) -> (..., H, N): head h reads group h // (H // G)."""
    return M.repeat_interleave(nheads // M.shape[-2], dim=-2)


def ssd_step(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h: Tensor,
) -> tuple[Tensor, Tensor]:
    """One SSD step. x: (B, H, P); dt: (B, H); A, D, dt_bias: (H,); B, C: (B, G, N); h: (B, H, P, N)."""
    cd = compute_dtype(x, dt, A, h)
    H = x.shape[1]
    x_ = x.to(cd)
    delta = F.softplus(dt.to(cd) + (dt_bias.to(cd) if dt_bias is not None else 0.0))  # (B, H)
    dA = torch.exp(delta * A.to(cd))  # Ā_t: a scalar per head
    Bh, Ch = _expand_groups(B.to(cd), H), _expand_groups(C.to(cd), H)  # (B, H, N)
    h_new = dA[..., None, None] * h.to(cd) + (delta[..., None] * x_).unsqueeze(-1) * Bh.unsqueeze(2)
    y = (h_new * Ch.unsqueeze(2)).sum(-1)  # (B, H, P)
    if D is not None:
        y = y + D.to(cd)[:, None] * x_
    return y.to(x.dtype), h_new.to(h.dtype)


def ssd_step_inplace(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h: Tensor, active: Tensor | None = None,
) -> Tensor:
    """:func:`ssd_step` writing h_t over ``h`` (B, H, P, N) in place; returns y_t (B, H, P).

    active: (B,) bool or uint8, None = every row; inactive rows as in :func:`selective_step_inplace`.
    """
    check_active(active, x.shape[0], h.device)
    y, h_new = ssd_step(x, dt, A, B, C, D, dt_bias, h)
    write_rows_(h, h_new, active)
    return y


def ssd_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    dt_bias: Tensor | None, h0: Tensor, chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """SSD over a sequence: x (B, L, H, P); dt (B, L, H); B, C (B, L, G, N); h0 (B, H, P, N).

    ``chunk_size`` is accepted for signature parity with the chunked backends and unused.
    """
    h, ys = h0, []
    for t in range(x.shape[1]):
        y, h = ssd_step(x[:, t], dt[:, t], A, B[:, t], C[:, t], D, dt_bias, h)
        ys.append(y)
    return torch.stack(ys, dim=1), h


# ---------------------------------------------------------------------------------------
# S4D: diagonal linear time-invariant SSM with complex modes in conjugate pairs
# ---------------------------------------------------------------------------------------
def lti_scan(u: Tensor, dtA: Tensor, B_bar: Tensor, C: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """S4D recurrence h_t = Ā h_{t-1} + B̄ u_t, y_t = 2 Re(C h_t), with Ā = exp(Δ A).

    u: (B, L, H) real; dtA = Δ A, B_bar, C: (H, N2) complex; h0: (B, H, N2) complex.
    The factor 2 Re(.) adds each mode's complex conjugate, so N2 = N / 2 modes stand for a
    real state of size N. Returns y (B, L, H) real and h_L (B, H, N2) complex.
    """
    A_bar = torch.exp(dtA)
    h, ys = h0, []
    for t in range(u.shape[1]):
        h = A_bar * h + B_bar * u[:, t, :, None]
        ys.append(2 * (C * h).real.sum(-1))
    return torch.stack(ys, dim=1).to(u.dtype), h


# ---------------------------------------------------------------------------------------
# Causal sliding-window attention against a ring-buffer KV cache
# ---------------------------------------------------------------------------------------
def local_attention(
    q: Tensor, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, t0: Tensor, window: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Each query at absolute time t attends to the keys at times t-window+1 .. t.

    q, k, v: (B, nh, L, hd); k_cache, v_cache: (B, nh, window-1, hd), slot s holding the key
    of the latest time tau < t0 with tau % (window-1) == s; t0: (B,) tokens seen so far.
    Returns y (B, nh, L, hd) and the updated caches. No positional encoding: the SSM
    layers around it carry position (as in Jamba).
    """
    Bsz, nh, L, hd = q.shape
    slots = window - 1
    y = torch.empty_like(q)
    k_new, v_new = k_cache.clone(), v_cache.clone()
    for b in range(Bsz):
        start = int(t0[b])
        # the window as an explicit list of (time, key, value), oldest first
        past = [(tau, k_cache[b, :, tau % slots], v_cache[b, :, tau % slots])
                for tau in range(max(0, start - slots), start)]
        for i in range(L):
            t = start + i
            past.append((t, k[b, :, i], v[b, :, i]))
            past = [p for p in past if p[0] > t - window]
            keys = torch.stack([p[1] for p in past], dim=1)  # (nh, n, hd)
            vals = torch.stack([p[2] for p in past], dim=1)
            w = torch.softmax((q[b, :, i, None, :] * keys).sum(-1) / math.sqrt(hd), dim=-1)  # (nh, n)
            y[b, :, i] = (w.unsqueeze(-1) * vals).sum(1)
        for tau, kk, vv in past:
            if tau >= start + L - slots:  # the newest `slots` times stay cached
                k_new[b, :, tau % slots] = kk
                v_new[b, :, tau % slots] = vv
    return y, k_new, v_new


# ---------------------------------------------------------------------------------------
# Mamba-2's gated RMSNorm (not a scan, but on the layer's hot path: the GPU backend fuses it)
# ---------------------------------------------------------------------------------------
def gated_rms_norm(x: Tensor, z: Tensor, weight: Tensor, eps: float = 1e-5, group_size: int | None = None) -> Tensor:
    """rmsnorm(x * silu(z)) * weight, each group of ``group_size`` channels normalised on its own.

    x, z: (..., D); weight: (D,). Computed in float32 (float64 for float64 input) and cast back
    to x's dtype; mamba_ssm's ``RMSNormGated`` with norm_before_gate=False.
    """
    D = x.shape[-1]
    gs = group_size or D
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    g = x.to(cd) * F.silu(z.to(cd))
    g = g.reshape(*g.shape[:-1], D // gs, gs)
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
    return (g.reshape(*x.shape) * weight.to(cd)).to(x.dtype)


# ---------------------------------------------------------------------------------------
# The log-mel's mel energies (not a scan either: the export backend replaces it)
# ---------------------------------------------------------------------------------------
def power_spectrum(frames: Tensor, window: Tensor, n_fft: int) -> Tensor:
    """|rfft(window * frame)|^2: frames (..., n_fft), window (n_fft,) -> (..., n_fft // 2 + 1)."""
    spec = torch.fft.rfft(frames * window, n=n_fft)
    return spec.real.square() + spec.imag.square()


def mel_energy(frames: Tensor, window: Tensor, n_fft: int, fbank: Tensor) -> Tensor:
    """The power spectrum through the mel filterbank: frames (..., n_fft), fbank (n_fft // 2 + 1, n_mels)
    -> (..., n_mels)."""
    return power_spectrum(frames, window, n_fft) @ fbank
