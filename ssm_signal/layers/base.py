"""The streaming-module base class: the state contract in one place.

    state = m.init_state(batch_size, device=None, dtype=torch.float32)
    y, state = m(x, state)           # x: (B, L, D), any L >= 1; state None = zero state (x's precision)
    y_t, state = m.step(x_t, state)  # x_t: (B, D)

Subclasses implement ``init_state`` and the unchecked ``_forward`` (and, when a cheaper
single-step path exists, ``_step``). The public methods validate inputs and state once;
containers call their children's unchecked methods.

Serving (StreamPool's tick) has one exception to "states are values", used nowhere else:

    y_t = m.step_(x_t, state, active=None)   # state's tensors advanced IN PLACE; active: (B,) bool

the same step as ``step``, written over the caller's tensors, only in the rows where ``active``
is true (all rows when None); the other rows keep their state bit for bit, and their y_t is
finite but meaningless. The default ``_step_`` runs ``_step`` and writes the new state over the
old, so every module has it; layers whose state update has an in-place kernel (Mamba, Mamba2)
override it so that the large SSM state is read once and written once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssm_signal.kernels.reference import write_rows_
from ssm_signal.state import State
from ssm_signal.validation import check_active, check_sequence, check_state, check_step


def write_state_(dst: State, src: State, active: Tensor | None = None) -> None:
    """Write ``src``'s tensors over ``dst``'s (same structure), in place, in the rows (dim 0) where
    ``active`` (B,) is true; every row when None. A tensor that ``src`` shares with ``dst`` (a part
    of the state the step left as it was) is skipped: so a ``_step`` must never update its input state in
    place and return it (the functional contract), or inactive rows would advance unnoticed. ``src`` must
    not be a shifted view of ``dst``.
    """
    for d, s in zip(dst.tensors(), src.tensors(), strict=True):
        if s is not d:
            write_rows_(d, s, active)


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

    def step_(self, x_t: Tensor, state: State, active: Tensor | None = None) -> Tensor:
        """Serving only: one step written over ``state``'s tensors in place; returns y_t (B, d_output).

        x_t: (B, d_model); state: this module's state for B streams (required: it is the output);
        active: (B,) bool/uint8, None = every stream. Equals ``step`` followed by a masked write of
        the new state (tests compare them). The functional ``step`` stays the contract everywhere else.
        Inference only: it runs without autograd (a state written in place has no history to
        differentiate through).
        """
        check_step(x_t, self.d_model)
        if state is None:
            raise ValueError(f"{type(self).__name__}.step_ advances a state in place: pass one (init_state)")
        state = self._prepare_state(state, x_t)
        check_active(active, x_t.shape[0], x_t.device)
        with torch.no_grad():
            return self._step_(x_t, state, active)

    # -- unchecked, for containers ---------------------------------------------------------------
    def _forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self._forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), state

    def _step_(self, x_t: Tensor, state: State, active: Tensor | None) -> Tensor:
        y, new = self._step(x_t, state)
        write_state_(state, new, active)
        return y

    def _expected_signature(self, batch: int) -> tuple:
        cache = self.__dict__.setdefault("_signature_cache", {})
        if batch not in cache:
            cache[batch] = self.init_state(batch, device="meta").signature()
        return cache[batch]

    def _prepare_state(self, state: State | None, x: Tensor) -> State:
        batch = x.shape[0]
        if state is None:
            # the zero state in the input's precision (float64 in, float64 state: chunked float64 streams
            # would drift by float32 rounding otherwise); half-precision inputs keep float32 states
            return self.init_state(batch, device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
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
