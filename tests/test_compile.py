"""The compiled step (latency path) equals the eager step (its reference twin)."""

from __future__ import annotations

import pytest
import torch

from ssm_signal.compile import compile_step
from ssm_signal.layers import Backbone
from tests.helpers import rel_err, state_rel_err


def test_compiled_step_equals_eager(seed):
    b = Backbone(16, ["mamba", "mamba2", "attention", "s4d"],
                 mixer_kwargs={"mamba2": {"headdim": 8, "d_state": 8}, "attention": {"window": 4},
                               "s4d": {"d_state": 8}}).eval()
    step = compile_step(b)
    s_e = s_c = b.init_state(2)
    with torch.inference_mode():
        for _ in range(6):
            x = torch.randn(2, 16)
            y_e, s_e = b._step(x, s_e)
            y_c, s_c = step(x, s_c)
            assert rel_err(y_c, y_e) <= 1e-5
            assert state_rel_err(s_c, s_e) <= 1e-5


def test_compile_step_rejects_modules_without_step():
    with pytest.raises(ValueError, match="no _step"):
        compile_step(torch.nn.Linear(2, 2))
