"""Issue 17, point 19: ``m(x, None)`` starts from a zero state in x's precision, for every layer,
frontend and whole model, so a float64 stream folded over chunks from None equals the whole pass
to float64 precision (a float32 zero state made it drift by ~1e-8)."""

from __future__ import annotations

import random

import pytest
import torch

from ssm_signal.frontends.logmel import LogMel
from ssm_signal.frontends.sensor import SensorFrontend
from ssm_signal.models import SignalModel
from tests.helpers import random_splits, rel_err
from tests.layers.test_contract import FACTORIES, D
from tests.test_bundle import small_model

MODULES = {
    **{name: (f, D) for name, f in FACTORIES.items()},
    "logmel": (lambda: LogMel(sample_rate=8000, n_fft=64, hop_length=32, n_mels=8, f_max=4000), None),
    "sensor": (lambda: SensorFrontend(channels=3, decimate=2), None),
    "model_logmel": (lambda: small_model("classify"), None),
    "model_sensor": (lambda: small_model("anomaly"), None),
}


def _width(m) -> int:
    return m.in_channels if isinstance(m, SignalModel) else m.d_model


@pytest.mark.parametrize("name", sorted(MODULES))
def test_zero_state_in_the_inputs_precision(name, seed):
    factory, _ = MODULES[name]
    m = factory().double().eval()
    L = 32 * 7 if name.startswith("model_logmel") or name == "logmel" else 28
    x = torch.randn(2, L, _width(m), dtype=torch.float64)
    with torch.no_grad():
        y, s = m(x, None)
        assert all(t.dtype == torch.float64 for t in s.tensors() if t.is_floating_point()), name
        # chunks folded from None (the first chunk) equal the whole pass to float64 precision
        sizes = [32] * (L // 32) if L % 32 == 0 else random_splits(L, 8, random.Random(seed))
        state, ys, t = None, [], 0
        for n in sizes:
            yc, state = m(x[:, t:t + n], state)
            ys.append(yc)
            t += n
        assert rel_err(torch.cat(ys, 1), y) <= 1e-10
        y32, s32 = m.float()(x.float(), None)  # float32 in: float32 state, as before
    assert all(t.dtype == torch.float32 for t in s32.tensors() if t.is_floating_point())
