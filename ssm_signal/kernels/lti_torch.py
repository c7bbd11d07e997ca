"""S4D by the convolution/recurrence duality, in plain PyTorch, with a carried state.

A linear time-invariant SSM unrolls into a convolution with the kernel
K_l = 2 Re(sum_n C_n Ā_n^l B̄_n), l = 0..L-1 (Gu et al. 2022, "On the Parameterization and
Initialization of Diagonal State Space Models"). Training uses it through an FFT in
O(L log L); streaming uses the recurrence (``reference.lti_scan``). With an initial state
h0 the output gains the free response 2 Re(C Ā^{t+1} h0), and the final state is
h_L = Ā^L h0 + sum_s Ā^{L-1-s} B̄ u_s, a Vandermonde product. Powers are formed as
exp(l · ΔA) rather than by repeated multiplication.

Same signature and semantics as :func:`ssm_signal.kernels.reference.lti_scan`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lti_scan(u: Tensor, dtA: Tensor, B_bar: Tensor, C: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """u: (B, L, H) real; dtA, B_bar, C: (H, N2) complex; h0: (B, H, N2) complex."""
    L = u.shape[1]
    real = torch.float64 if dtA.dtype == torch.complex128 else torch.float32
    ar = torch.arange(L, device=u.device, dtype=real)
    powers = torch.exp(dtA.unsqueeze(-1) * ar)  # Ā^l: (H, N2, L)
    K = 2 * torch.einsum("hn,hnl->hl", C * B_bar, powers).real  # (H, L)

    uu = u.to(real).transpose(1, 2)  # (B, H, L)
    n = 2 * L  # zero padding turns the FFT's circular convolution into a causal linear one
    y = torch.fft.irfft(torch.fft.rfft(uu, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]

    # free response of the initial state: 2 Re(C Ā^{t+1} h0), t = 0..L-1
    A_bar = torch.exp(dtA)
    y = y + 2 * torch.einsum("hn,bhn,hnl->bhl", C * A_bar, h0, powers).real

    # final state: Ā^L h0 + B̄ sum_s Ā^{L-1-s} u_s
    hL = torch.exp(dtA * L) * h0 + B_bar * torch.einsum("bhl,hnl->bhn", uu.to(powers.dtype), powers.flip(-1))
    return y.transpose(1, 2).to(u.dtype), hL
