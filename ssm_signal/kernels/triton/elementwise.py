"""Elementwise helpers the Triton kernels share: softplus (and its gradient) as torch computes it, log2(e)
for exp2-based decays, and :func:`device_fn`, which makes a helper callable from a kernel both on the GPU
and under ``TRITON_INTERPRET=1``."""

from __future__ import annotations

import triton
import triton.language as tl

from ssm_signal.kernels.triton._interpret import interpreting

LOG2E = tl.constexpr(1.4426950408889634)  # a constexpr: kernels may read it


def _softplus_body(v):
    """F.softplus(v) with its threshold 20, written as max(v, 0) + log1p(exp(-|v|))."""
    e = tl.exp(-tl.abs(v))
    log1p_e = tl.where(e < 1e-4, e * (1.0 - 0.5 * e), tl.log(1.0 + e))
    return tl.where(v > 20.0, v, tl.maximum(v, 0.0) + log1p_e)


def _softplus_and_grad_body(v):
    """softplus(v) and its derivative sigmoid(v) (exactly 1 above the threshold, as torch),
    sharing one exp: three special-function instructions instead of four."""
    e = tl.exp(-tl.abs(v))
    log1p_e = tl.where(e < 1e-4, e * (1.0 - 0.5 * e), tl.log(1.0 + e))
    r = 1.0 / (1.0 + e)
    sig = tl.where(v >= 0.0, r, e * r)
    return tl.where(v > 20.0, v, tl.maximum(v, 0.0) + log1p_e), tl.where(v > 20.0, 1.0, sig)


def device_fn(fn):
    """A helper the kernels call: @triton.jit on the GPU, plain Python under the interpreter.

    Under the interpreter every call of a @triton.jit helper re-patches the language (about 5 ms, per
    step of every program); the plain function runs as ordinary Python on the interpreter's tensors.
    """
    return fn if interpreting() else triton.jit(fn)


softplus = device_fn(_softplus_body)
softplus_and_grad = device_fn(_softplus_and_grad_body)
