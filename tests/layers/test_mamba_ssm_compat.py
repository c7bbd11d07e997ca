"""Parameter names and shapes match mamba_ssm's modules, so their checkpoints load strictly.

The expected tables are written out by hand from mamba_ssm 2.3 (modules/mamba_simple.py
``Mamba`` and modules/mamba2.py ``Mamba2``): in_proj packs [x, z] (Mamba) or
[z, x, B, C, Δ] (Mamba2); conv1d is depthwise over x (Mamba) or xBC (Mamba2).
"""

from __future__ import annotations

import pytest
import torch

from ssm_signal.layers import Mamba, Mamba2


def mamba_ssm_mamba_keys(d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto"):
    d_inner = expand * d_model
    r = -(-d_model // 16) if dt_rank == "auto" else dt_rank
    return {
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (r + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, r),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


def mamba_ssm_mamba2_keys(d_model, d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1):
    d_inner = expand * d_model
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * ngroups * d_state
    return {
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (nheads,),
        "in_proj.weight": (2 * d_inner + 2 * ngroups * d_state + nheads, d_model),
        "conv1d.weight": (conv_dim, 1, d_conv),
        "conv1d.bias": (conv_dim,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


MAMBA_CONFIGS = [dict(d_model=64), dict(d_model=48, d_state=8, d_conv=3, expand=3), dict(d_model=256, dt_rank=8)]
MAMBA2_CONFIGS = [dict(d_model=64), dict(d_model=128, d_state=64, headdim=32, ngroups=2),
                  dict(d_model=96, d_state=16, expand=4, headdim=48, ngroups=4, d_conv=2)]


def _check(module, expected):
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert got == expected
    # a foreign checkpoint with exactly these keys loads strictly and is used as given
    sd = {k: torch.randn(shape) for k, shape in expected.items()}
    module.load_state_dict(sd, strict=True)
    for k, v in module.state_dict().items():
        assert torch.equal(v, sd[k])


@pytest.mark.parametrize("cfg", MAMBA_CONFIGS)
def test_mamba_keys_match_mamba_ssm(cfg):
    _check(Mamba(**cfg), mamba_ssm_mamba_keys(**cfg))


@pytest.mark.parametrize("cfg", MAMBA2_CONFIGS)
def test_mamba2_keys_match_mamba_ssm(cfg):
    _check(Mamba2(**cfg), mamba_ssm_mamba2_keys(**cfg))


def test_mamba_initialisation_follows_mamba_ssm():
    m = Mamba(64, d_state=16)
    A = -torch.exp(m.A_log)
    assert torch.allclose(A[0], -torch.arange(1, 17, dtype=torch.float32))  # S4D-Real: exp(log n) ~ n
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    m2 = Mamba2(64)
    A2 = torch.exp(m2.A_log)
    assert A2.min() >= 1 and A2.max() <= 16


def test_wrong_checkpoint_is_rejected():
    m = Mamba2(64)
    sd = {k: torch.randn(s) for k, s in mamba_ssm_mamba2_keys(64, d_state=64).items()}
    with pytest.raises(RuntimeError, match="size mismatch"):
        m.load_state_dict(sd, strict=True)
