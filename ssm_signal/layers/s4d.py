"""S4D: the diagonal linear time-invariant SSM of Gu, Gupta, Goel & Ré (2022), "On the
Parameterization and Initialization of Diagonal State Space Models", arXiv:2206.11893.

Per channel h (of H = d_model), N/2 complex modes n (their conjugates implied):

    continuous:  h'(t) = A h(t) + B u(t),   y(t) = 2 Re(C h(t)) + D u(t)
    ZOH:         Ā = exp(Δ A),   B̄ = (exp(Δ A) - 1) / A · B        (B = 1, absorbed in C)
    recurrence:  h_t = Ā h_{t-1} + B̄ u_t                             (streaming)
    convolution: y = K * u,  K_l = 2 Re(C B̄ Ā^l)                     (training, by FFT)

Initialisation of A = -exp(log_A_real) + i A_imag, both derived from HiPPO:
    S4D-Lin: A_n = -1/2 + i π n                 (the default)
    S4D-Inv: A_n = -1/2 + i N/π (N/(2n+1) - 1)

The layer is the S4D block of that paper: y = GELU(SSM(u) + D u) -> Linear(H, 2H) -> GLU.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.kernels import get_op
from ssm_signal.layers.base import StreamingModule
from ssm_signal.state import State


@dataclasses.dataclass(frozen=True)
class S4DState(State):
    """h: (B, H, N/2, 2), the complex modes stored as (real, imag) pairs."""

    h: Tensor


def s4d_init_A(d_model: int, d_state: int, init: str) -> tuple[Tensor, Tensor]:
    """(log_A_real, A_imag), each (H, N/2), for init in {"lin", "inv"}."""
    n = torch.arange(d_state // 2, dtype=torch.float32)
    log_A_real = torch.log(0.5 * torch.ones(d_model, d_state // 2))
    if init == "lin":
        A_imag = math.pi * n
    elif init == "inv":
        A_imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
    else:
        raise ValueError(f"S4D: init must be 'lin' or 'inv', got {init!r}")
    return log_A_real, A_imag.repeat(d_model, 1)


class S4D(StreamingModule):
    """S4D block, (B, L, d_model) -> (B, L, d_model).

    Args: d_state N (64: N/2 complex modes per channel), dt_min/dt_max (range of the
    log-uniform Δ initialisation), init ("lin" = S4D-Lin, "inv" = S4D-Inv).
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1,
                 init: str = "lin"):
        super().__init__()
        if d_model < 1 or d_state < 2 or d_state % 2:
            raise ValueError(f"S4D: d_model must be >= 1 and d_state even and >= 2, got {d_model}, {d_state}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"S4D: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_model, self.d_state, self.init = d_model, d_state, init
        N2 = d_state // 2
        log_A_real, A_imag = s4d_init_A(d_model, d_state, init)
        self.log_A_real = nn.Parameter(log_A_real)
        self.A_imag = nn.Parameter(A_imag)
        self.log_dt = nn.Parameter(torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        # C ~ N(0, 1/2) + i N(0, 1/2), stored as (real, imag) pairs
        self.C = nn.Parameter(torch.randn(d_model, N2, 2) * 0.5**0.5)
        self.D = nn.Parameter(torch.randn(d_model))
        self.output_linear = nn.Linear(d_model, 2 * d_model)

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> S4DState:
        return S4DState(torch.zeros(batch_size, self.d_model, self.d_state // 2, 2, device=device, dtype=dtype))

    def discretize_pairs(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(Δ A, Ā, B̄, C), each (H, N/2, 2): complex numbers as (real, imag) pairs, in float64 for
        float64 ``dtype``, else float32. Real arithmetic throughout, so the streaming step has no
        complex tensor (an exported step runs where complex types do not exist, e.g. ONNX)."""
        real = torch.float64 if dtype == torch.float64 else torch.float32
        dt = torch.exp(self.log_dt.to(real)).unsqueeze(-1)  # Δ (H, 1)
        a_re, a_im = -torch.exp(self.log_A_real.to(real)), self.A_imag.to(real)  # A (H, N/2)
        x, y = a_re * dt, a_im * dt  # Δ A = x + i y
        mag = torch.exp(x)
        ab_re, ab_im = mag * torch.cos(y), mag * torch.sin(y)  # Ā = exp(Δ A)
        # B̄ = (Ā - 1) / A with B = 1 (ZOH), the division written out: (p + i q) / (a + i b)
        # = ((p a + q b) + i (q a - p b)) / (a² + b²)
        p, q, den = ab_re - 1, ab_im, a_re.square() + a_im.square()
        bb_re, bb_im = (p * a_re + q * a_im) / den, (q * a_re - p * a_im) / den
        pair = lambda re, im: torch.stack([re, im], dim=-1)  # noqa: E731
        return pair(x, y), pair(ab_re, ab_im), pair(bb_re, bb_im), self.C.to(real)

    def discretize(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """(Δ A, B̄, C), each (H, N/2) complex of ``dtype`` precision (complex64 or complex128):
        :meth:`discretize_pairs` as complex tensors, for the scans."""
        dtA, _, B_bar, C = self.discretize_pairs(dtype)
        return tuple(torch.view_as_complex(t.contiguous()) for t in (dtA, B_bar, C))

    def _output(self, y: Tensor, u: Tensor) -> Tensor:
        """The block around the SSM: GELU(y + D u) -> Linear(H, 2H) -> GLU. y, u: (..., H)."""
        y = F.gelu(y + self.D.to(u.dtype) * u)
        return F.glu(self.output_linear(y), dim=-1)

    def _forward(self, u: Tensor, state: S4DState) -> tuple[Tensor, S4DState]:
        dtA, B_bar, C = self.discretize(u.dtype)
        h0 = torch.view_as_complex(state.h.to(dtA.real.dtype).contiguous())
        y, h = get_op("lti_scan", u.device)(u, dtA, B_bar, C, h0)
        return self._output(y, u), S4DState(torch.view_as_real(h).to(state.h.dtype))

    def _step(self, u_t: Tensor, state: S4DState) -> tuple[Tensor, S4DState]:
        """One step of the recurrence, h_t = Ā h_{t-1} + B̄ u_t, y_t = 2 Re(C h_t), in (real, imag)
        pairs: a multiply-add per mode, no FFT and no complex type (the scans' complex ``lti_scan``
        is its twin: the contract tests compare them). u_t: (B, H)."""
        _, A_bar, B_bar, C = self.discretize_pairs(u_t.dtype)  # (H, N/2, 2)
        h = state.h.to(A_bar.dtype)
        u = u_t.to(A_bar.dtype).unsqueeze(-1)  # (B, H, 1)
        h_re, h_im = h[..., 0], h[..., 1]  # (B, H, N/2)
        re = A_bar[..., 0] * h_re - A_bar[..., 1] * h_im + B_bar[..., 0] * u
        im = A_bar[..., 0] * h_im + A_bar[..., 1] * h_re + B_bar[..., 1] * u
        y = 2 * (C[..., 0] * re - C[..., 1] * im).sum(-1)  # (B, H)
        return self._output(y.to(u_t.dtype), u_t), S4DState(torch.stack([re, im], dim=-1).to(state.h.dtype))
