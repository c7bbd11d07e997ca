"""Shared fixtures. Every test run draws fresh random weights and inputs; the seed is
printed so a failure can be replayed with SSM_SIGNAL_SEED=<seed>."""

from __future__ import annotations

import os
import random

import pytest
import torch

from tests.exports import exported  # noqa: F401  (a fixture: exported models, once per session)


@pytest.fixture
def seed() -> int:
    s = int(os.environ.get("SSM_SIGNAL_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(s)
    random.seed(s)
    print(f"seed={s}  (replay with SSM_SIGNAL_SEED={s})")
    return s


@pytest.fixture(autouse=True)
def _few_threads():
    # CI machines have 2 cores; small ops are faster without oversubscription
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test (streaming runs many tiny ops: faster so, and immune to a busy
    machine's stragglers), the previous count restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
