"""Shared fixtures. Every test run draws fresh random weights and inputs; the seed is
printed so a failure can be replayed with SSM_SIGNAL_SEED=<seed>."""

from __future__ import annotations

import os
import random

import pytest
import torch


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
