"""The single dispatch point: listing, forcing, fallbacks and clear errors."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from ssm_signal import kernels
from ssm_signal.kernels import reference, ssd_torch
from ssm_signal.layers import Mamba


def test_cpu_backends_and_auto():
    assert {"reference", "torch"} <= set(kernels.available("cpu"))
    assert kernels.active() == "auto"
    # auto picks the fastest correct backend present: torch on CPU
    for op in kernels.OPS:
        assert kernels.resolve(op, torch.device("cpu")).name == "torch"


def test_use_forces_and_restores():
    with kernels.use("reference"):
        assert kernels.active() == "reference"
        assert kernels.get_op("selective_scan", torch.device("cpu")) is reference.selective_scan
    assert kernels.active() == "auto"


def test_use_actually_routes_layer_calls(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return reference.selective_scan(*args, **kwargs)

    kernels.register(kernels.Backend("spy", {"selective_scan": spy}, devices=("cpu",), priority=-1))
    try:
        m = Mamba(8, d_state=4)
        with kernels.use("spy"):
            m(torch.randn(1, 5, 8))
            m.step(torch.randn(1, 8))  # selective_step: falls back to reference
        assert calls == [1]
        assert kernels.resolve("selective_step", torch.device("cpu")).name == "torch"
    finally:
        kernels.registry._BACKENDS.pop("spy")


def test_unknown_or_unavailable_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown or unavailable kernel backend 'nope'"):
        with kernels.use("nope"):
            pass
    reasons = kernels.unavailable()
    # said once, with the reason (on a GPU machine triton registers instead)
    assert "mamba_ssm" in reasons and ("triton" in reasons or "triton" in kernels.available())
    if "triton" not in kernels.available():
        with pytest.raises(ValueError, match="triton"):
            with kernels.use("triton"):
                pass


def test_registering_an_unknown_op_fails():
    with pytest.raises(ValueError, match="unknown ops"):
        kernels.register(kernels.Backend("bad", {"not_an_op": lambda: None}, devices=("cpu",), priority=0))


def test_export_backend_mel_energy_equals_rfft(seed):
    """The export backend's DFT matmuls (two-stage at 400 = 20 x 20 and 512 = 32 x 16, the direct basis at the
    prime 401) are the reference's |rfft|^2 @ fbank (its twin), and auto never picks them."""
    from ssm_signal.kernels import export_ops

    assert export_ops.dft_factors(400) == (20, 20) and export_ops.dft_factors(401) is None
    for n in (400, 401, 512):
        frames = torch.randn(3, 5, n, dtype=torch.float64)
        window = torch.hann_window(n, periodic=True, dtype=torch.float64)
        fbank = torchaudio.functional.melscale_fbanks(n // 2 + 1, 20.0, 7600.0, 40, 16000).double()
        ref = reference.mel_energy(frames, window, n, fbank)
        assert ref.shape == (3, 5, 40)
        assert float((reference.power_spectrum(frames, window, n) @ fbank - ref).abs().max()) == 0
        got = export_ops.mel_energy(frames, window, n, fbank)
        assert got.shape == ref.shape
        assert float((got - ref).abs().max() / ref.abs().max()) < 1e-12, n
        f32 = export_ops.mel_energy(frames.float(), window.float(), n, fbank.float())
        assert float((f32.double() - ref).abs().max() / ref.abs().max()) < 1e-5, n
    assert kernels.resolve("mel_energy", torch.device("cpu")).name == "torch"
    with kernels.use("export"):
        assert kernels.get_op("mel_energy", torch.device("cpu")) is export_ops.mel_energy
        assert kernels.get_op("selective_step", torch.device("cpu")) is reference.selective_step  # the rest: torch


def test_export_backend_gated_norm_equals_reference(seed):
    from ssm_signal.kernels import export_ops

    x, z, w = torch.randn(2, 3, 24, dtype=torch.float64), torch.randn(2, 3, 24, dtype=torch.float64), torch.randn(24)
    for gs in (24, 8):
        ref = reference.gated_rms_norm(x, z, w, 1e-5, gs)
        assert float((export_ops.gated_rms_norm(x, z, w, 1e-5, gs) - ref).abs().max()) < 1e-12
        got32 = export_ops.gated_rms_norm(x.float(), z.float(), w, 1e-5, gs)
        assert got32.dtype == torch.float32 and float((got32.double() - ref).abs().max()) < 1e-5


def test_export_backend_conv_step_equals_reference(seed):
    from ssm_signal.kernels import export_ops

    for K in (1, 4):
        x, w, b = torch.randn(3, 6, dtype=torch.float64), torch.randn(6, 1, K, dtype=torch.float64), torch.randn(6)
        buf = torch.randn(3, 6, K - 1, dtype=torch.float64)
        (y, nb), (ry, rnb) = export_ops.conv_step(x, w, b.double(), buf), reference.conv_step(x, w, b.double(), buf)
        assert float((y - ry).abs().max()) < 1e-12 and torch.equal(nb, rnb) and nb.shape == (3, 6, K - 1)


@pytest.mark.parametrize("G", [1, 2])
def test_export_backend_ssd_step_equals_reference(seed, G):
    from ssm_signal.kernels import export_ops

    Bsz, H, P, N = 3, 4, 5, 6
    d = dict(dtype=torch.float64)
    args = (torch.randn(Bsz, H, P, **d), torch.randn(Bsz, H, **d), -torch.rand(H, **d), torch.randn(Bsz, G, N, **d),
            torch.randn(Bsz, G, N, **d), torch.randn(H, **d), torch.randn(H, **d), torch.randn(Bsz, H, P, N, **d))
    (y, h), (ry, rh) = export_ops.ssd_step(*args), reference.ssd_step(*args)
    assert float((y - ry).abs().max()) < 1e-12 and float((h - rh).abs().max()) < 1e-12 and h.shape == rh.shape


@pytest.mark.parametrize("L,chunk,G", [(1, 4, 1), (4, 4, 2), (13, 4, 1), (13, 4, 2), (30, 7, 2), (13, 64, 1)])
def test_export_backend_ssd_scan_equals_reference(seed, L, chunk, G):
    """The export SSD (MatMuls over chunks; the chunk graph's) against the sequential recurrence: any L, a chunk
    that L fills, overruns or does not reach, one group or two, a nonzero start state, strong decays."""
    from ssm_signal.kernels import export_ops

    Bsz, H, P, N = 2, 4, 3, 5
    f = dict(dtype=torch.float64)
    args = (torch.randn(Bsz, L, H, P, **f), torch.randn(Bsz, L, H, **f), -torch.rand(H, **f) * 8,
            torch.randn(Bsz, L, G, N, **f), torch.randn(Bsz, L, G, N, **f), torch.randn(H, **f),
            torch.randn(H, **f), torch.randn(Bsz, H, P, N, **f))
    (y, h), (ry, rh) = export_ops.ssd_scan(*args, chunk_size=chunk), reference.ssd_scan(*args)
    assert y.shape == ry.shape and h.shape == rh.shape
    assert float((y - ry).abs().max()) <= 1e-12 * float(ry.abs().max()) and float((h - rh).abs().max()) <= 1e-12 * float(rh.abs().max())
    with kernels.use("export"):
        assert kernels.get_op("ssd_scan", torch.device("cpu")) is export_ops.ssd_scan


def test_export_decays_are_stable_and_lower_triangular():
    """exp(segsum): long runs of strong decay underflow to 0 rather than cancel, nothing above the diagonal,
    ones on it."""
    from ssm_signal.kernels import export_ops

    d = export_ops._decays(torch.full((6,), -30.0, dtype=torch.float64))
    assert d[5, 0] == torch.exp(torch.tensor(-150.0, dtype=torch.float64)) and d[3, 3] == 1.0 and d[0, 3] == 0.0
    assert torch.equal(d, torch.exp(ssd_torch.segsum(torch.full((6,), -30.0, dtype=torch.float64))))
