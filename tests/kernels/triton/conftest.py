"""Shared set-up for the Triton kernel tests.

Two ways these tests run:
- on the CPU under ``TRITON_INTERPRET=1`` (CI, ``make test-interpret``): unmarked tests on tiny
  shapes, the kernels executed by Triton's interpreter;
- on a CUDA GPU (``pytest -m gpu`` on the device machine): the same tiny tests compiled, plus the
  ``gpu``-marked full-size ones.

Without either, the kernels cannot run at all; ``triton_device`` then skips with that reason
(CI covers them through the interpreter run, so this is no hidden failure).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
HAS_TRITON = importlib.util.find_spec("triton") is not None
CAN_RUN = HAS_TRITON and (INTERPRET or torch.cuda.is_available())
DEVICE = "cpu" if INTERPRET else "cuda"
WHY_NOT = ("the triton package is not installed" if not HAS_TRITON else
           "Triton kernels need a CUDA GPU, or TRITON_INTERPRET=1 on the CPU (make test-interpret)")


@pytest.fixture
def triton_device() -> str:
    """The device the kernels run on here ("cpu" under the interpreter, else "cuda")."""
    if not CAN_RUN:
        pytest.skip(WHY_NOT)
    return DEVICE


@pytest.fixture
def cuda_device() -> str:
    """For ``gpu``-marked tests: compiled kernels on a real GPU."""
    if not torch.cuda.is_available() or not HAS_TRITON:
        pytest.skip("needs a CUDA GPU and triton")
    if INTERPRET:
        pytest.skip("full-size GPU tests do not run under the interpreter")
    return "cuda"
