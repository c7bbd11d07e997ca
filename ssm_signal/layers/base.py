"""The streaming-module base class: the state contract in one place.

    state = m.init_state(batch_size, device=None, dtype=torch.float32)
    y, state = m(x, state)           # x: (B, L, D), any L >= 1; state None = zero state
    y_t, state = m.step(x_t, state)  # x_t: (B, D)

Subclasses implement ``init_state`` and the unchecked ``_forward`` (and, when a cheaper
single-step path exists, ``_step``). The public methods validate inputs and state once;
containers call their children's unchecked methods.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssm_signal.state import State
from ssm_signal.validation import check_sequence, check_state, check_step


def upcast(t: Tensor) -> Tensor:
    """Half-precision parameters to float32 for the SSM arithmetic; float32/64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class StreamingModule(nn.Module):
    """A module mapping (B, L, d_model) -> (B, L, d_output) with an explicit carried state."""

    d_model: int

    @property
    def d_output(self) -> int:
        return self.d_model

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> State:
        raise NotImplementedError

    # -- public, checked ---------------------------------------------------------------------
    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        check_sequence(x, self.d_model)
        return self._forward(x, self._prepare_state(state, x))

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        check_step(x_t, self.d_model)
        return self._step(x_t, self._prepare_state(state, x_t))

    # -- unchecked, for containers ---------------------------------------------------------------
    def _forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self._forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), state

    def _expected_signature(self, batch: int) -> tuple:
        cache = self.__dict__.setdefault("_signature_cache", {})
        if batch not in cache:
            cache[batch] = self.init_state(batch, device="meta").signature()
        return cache[batch]

    def _prepare_state(self, state: State | None, x: Tensor) -> State:
        batch = x.shape[0]
        if state is None:
            return self.init_state(batch, device=x.device)
        # Fast path: compare a cached signature of the expected state; the detailed
        # (slower) check runs only to explain a mismatch.
        expected = self._expected_signature(batch)
        if not isinstance(state, State) or state.signature() != expected:
            if not isinstance(state, State):
                raise ValueError(f"{type(self).__name__}: state must be a State, got {type(state).__name__}")
            check_state(state, self.init_state(batch, device="meta"), type(self).__name__)
            raise ValueError(f"{type(self).__name__}: state does not match this module's configuration")
        if state.device != x.device:
            raise ValueError(f"{type(self).__name__}: state is on {state.device}, input on {x.device}")
        return state
