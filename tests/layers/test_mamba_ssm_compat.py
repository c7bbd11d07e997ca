"""Our Mamba and Mamba2 against mamba_ssm's own modules: the same parameters, the same outputs.

The reference is the real mamba-ssm source package, at the version the ``mamba`` extra pins (and by
SHA-256), downloaded once into the project cache. On a machine without CUDA it is what a ``MAMBA_SKIP_CUDA_BUILD=TRUE``
install gives: Python files without the CUDA extension. Two things stand in for what cannot load:

- ``selective_scan_cuda`` (the Mamba-1 CUDA extension, imported at module level) is an empty
  module; no test reaches it.
- The package ``__init__`` (it imports the language model, which needs ``transformers``) is not run;
  ``mamba_ssm`` is registered as a bare package over the source folder, so its submodules import
  as they are.

Its GPU kernels are switched to the pure-PyTorch paths the package itself ships: ``selective_scan_ref``
for the Mamba-1 scan, ``rms_norm_ref`` for the gated norm, and the modules' own PyTorch branches
of ``step`` (taken when ``selective_state_update`` and ``causal_conv1d`` are absent). Those are
mamba_ssm's reference semantics; our layers are checked against them: a whole sequence, and a token at
a time through both modules' recurrent steps.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import tarfile
import types
import urllib.request
from pathlib import Path

import pytest
import torch

from ssm_signal.cache import cache_dir
from ssm_signal.layers import Mamba, Mamba2

VERSION = "2.3.2.post1"
SDIST = (f"https://files.pythonhosted.org/packages/af/48/aa7bec0efc7453fa0512276c0069c854bf684219050294266534bfef34bb/"
         f"mamba_ssm-{VERSION}.tar.gz")
SHA256 = "104cc47e9101e5401a675fa2b784f2952b9b037f3b1dd83b5ac544394e95d028"


def source_tree() -> Path:
    """The ``mamba_ssm`` folder of the pinned source package, downloaded and checked once."""
    root = cache_dir("mamba_ssm", VERSION)
    pkg = root / "mamba_ssm"
    if (pkg / "modules" / "mamba2.py").is_file():
        return pkg
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"mamba_ssm-{VERSION}.tar.gz"
    try:
        urllib.request.urlretrieve(SDIST, archive)
    except OSError as e:
        pytest.fail(f"could not download mamba-ssm {VERSION} from PyPI ({e}); these tests need it once, then it is cached")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SHA256:
        archive.unlink()
        pytest.fail(f"mamba-ssm {VERSION}: SHA-256 {digest}, expected {SHA256}")
    prefix = f"mamba_ssm-{VERSION}/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix + "mamba_ssm/")]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(root, members=members, filter="data")
    archive.unlink()
    return pkg


@pytest.fixture(scope="module")
def upstream():
    """mamba_ssm's ``mamba_simple`` and ``mamba2`` modules on their PyTorch paths; sys.modules restored after."""
    pkg = source_tree()
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
        bare = types.ModuleType("mamba_ssm")
        bare.__path__ = [str(pkg)]
        mp.setitem(sys.modules, "mamba_ssm", bare)
        from mamba_ssm.modules import mamba2, mamba_simple
        from mamba_ssm.ops import selective_scan_interface
        from mamba_ssm.ops.triton import layernorm_gated

        mp.setattr(mamba_simple, "selective_scan_fn", selective_scan_interface.selective_scan_ref)
        for mod in (mamba_simple, mamba2):
            mp.setattr(mod, "selective_state_update", None)
            mp.setattr(mod, "causal_conv1d_fn", None)
            mp.setattr(mod, "causal_conv1d_update", None)

        def rms_norm(self, x, z=None):
            return layernorm_gated.rms_norm_ref(x, self.weight, self.bias, z=z, eps=self.eps,
                                                group_size=self.group_size, norm_before_gate=self.norm_before_gate)

        mp.setattr(layernorm_gated.RMSNorm, "forward", rms_norm)
        yield types.SimpleNamespace(Mamba=mamba_simple.Mamba, Mamba2=mamba2.Mamba2)
    for name in set(sys.modules) - before:
        if name.startswith("mamba_ssm"):
            del sys.modules[name]


MAMBA_CONFIGS = [dict(d_model=64), dict(d_model=48, d_state=8, d_conv=3, expand=3), dict(d_model=256, dt_rank=8)]
MAMBA2_CONFIGS = [dict(d_model=64), dict(d_model=128, d_state=64, headdim=32, ngroups=2),
                  dict(d_model=96, d_state=16, expand=4, headdim=48, ngroups=4, d_conv=2)]


# float64 throughout, but mamba_ssm's reference casts A (``A_log.float()``) and the gated norm's input
# (``rms_norm_ref(upcast=True)``) to float32: agreement to float32 rounding, where a wrong or missing
# term moves outputs by 1e-2 or more
TOL = dict(rtol=5e-5, atol=5e-6)


def shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("cfg", MAMBA_CONFIGS)
def test_mamba_parameters_are_mamba_ssms(upstream, cfg):
    assert shapes(Mamba(**cfg)) == shapes(upstream.Mamba(**cfg))


@pytest.mark.parametrize("cfg", MAMBA2_CONFIGS)
def test_mamba2_parameters_are_mamba_ssms(upstream, cfg):
    assert shapes(Mamba2(**cfg)) == shapes(upstream.Mamba2(**cfg))


def _loaded(ours, theirs):
    """Both in float64, ours carrying theirs' (randomised) weights, loaded strictly."""
    theirs = theirs.double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))  # D = 1 and zero biases would hide a swapped or missing term
    ours.double().load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def _steps(theirs, x, conv, ssm):
    """Their recurrent step over x (B, L, D) a token at a time -> (B, L, D)."""
    return torch.cat([theirs.step(x[:, t:t + 1], conv, ssm)[0] for t in range(x.shape[1])], dim=1)


def _our_steps(ours, x):
    state, ys = None, []
    for t in range(x.shape[1]):
        y, state = ours.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1)


@torch.no_grad()
def test_mamba_outputs_are_mamba_ssms(upstream, seed):
    cfg = dict(d_model=32, d_state=8, d_conv=4, expand=2, dt_rank=4)
    ours, theirs = _loaded(Mamba(**cfg), upstream.Mamba(**cfg, use_fast_path=False))
    x = torch.randn(2, 23, 32, dtype=torch.float64)
    want = theirs(x)
    torch.testing.assert_close(ours(x)[0], want, **TOL)
    d_inner = 2 * 32
    conv = torch.zeros(2, d_inner, 4, dtype=torch.float64)
    ssm = torch.zeros(2, d_inner, 8, dtype=torch.float64)
    torch.testing.assert_close(_steps(theirs, x, conv, ssm), want, **TOL)
    torch.testing.assert_close(_our_steps(ours, x), want, **TOL)


@torch.no_grad()
def test_mamba2_outputs_are_mamba_ssms(upstream, seed):
    # mamba_ssm's PyTorch step supports one group only; its chunked scan is Triton (GPU), so the
    # whole-sequence reference is its own recurrent step
    cfg = dict(d_model=32, d_state=8, d_conv=4, expand=2, headdim=16, ngroups=1)
    ours, theirs = _loaded(Mamba2(**cfg, chunk_size=8), upstream.Mamba2(**cfg, chunk_size=8))
    x = torch.randn(2, 21, 32, dtype=torch.float64)
    conv = torch.zeros(2, 64 + 2 * 8, 4, dtype=torch.float64)
    ssm = torch.zeros(2, 64 // 16, 16, 8, dtype=torch.float64)
    want = _steps(theirs, x, conv, ssm)
    torch.testing.assert_close(ours(x)[0], want, **TOL)
    torch.testing.assert_close(_our_steps(ours, x), want, **TOL)
    torch.testing.assert_close(ours(x)[1].ssm, ssm, **TOL)  # the same state h_L


@pytest.mark.parametrize("name", ["Mamba", "Mamba2"])
def test_arguments_are_mamba_ssms_in_its_order_with_its_defaults(upstream, name):
    """Every argument we take is one of mamba_ssm's, in the same order and with the same default, so a
    mamba_ssm configuration (keywords or positions) builds the same layer wherever we support its options."""
    ours = dict(inspect.signature({"Mamba": Mamba, "Mamba2": Mamba2}[name]).parameters)
    theirs = dict(inspect.signature(getattr(upstream, name)).parameters)
    assert set(ours) <= set(theirs), set(ours) - set(theirs)
    order = [k for k in theirs if k in ours]
    assert list(ours) == order
    for k, p in ours.items():
        want = theirs[k].default
        assert p.default == (tuple(float(v) for v in want) if isinstance(want, tuple) else want), k


def test_conv_init_is_mamba_ssms():
    m = Mamba2(64, conv_init=0.05)
    assert m.conv1d.weight.abs().max() <= 0.05 and m.conv1d.weight.std() > 0.02  # uniform in +-0.05: std 0.029
    with pytest.raises(ValueError, match="conv_init must be > 0"):
        Mamba2(64, conv_init=0.0)


def test_mamba_initialisation_follows_mamba_ssm():
    m = Mamba(64, d_state=16)
    A = -torch.exp(m.A_log)
    assert torch.allclose(A[0], -torch.arange(1, 17, dtype=torch.float32))  # S4D-Real: exp(log n) ~ n
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    m2 = Mamba2(64)
    A2 = torch.exp(m2.A_log)
    assert A2.min() >= 1 and A2.max() <= 16


def test_wrong_checkpoint_is_rejected(upstream):
    sd = upstream.Mamba2(64, d_state=64).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        Mamba2(64).load_state_dict(sd, strict=True)


def test_reference_is_the_version_the_extra_pins():
    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["mamba"] == [f"mamba-ssm=={VERSION}"]
