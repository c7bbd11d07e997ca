"""Typed, explicit streaming state shared by every layer, block, backbone and model.

Every streaming module returns its state as a frozen dataclass of tensors (or of
nested states). The batch dimension is always dim 0 of every tensor, so the generic
operations below -- device/dtype moves, detaching, per-stream reset, selecting and
concatenating streams, flat snapshots -- are written once here for all of them.

States are values: every operation returns a new object and never mutates its input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

S = TypeVar("S", bound="State")

_REGISTRY: dict[str, type[State]] = {}


def _map(value: Any, fn) -> Any:
    """Apply ``fn`` to every tensor in a state field (tensor, nested state or tuple)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, State):
        return value._apply(fn)
    if isinstance(value, tuple):
        return tuple(_map(v, fn) for v in value)
    raise TypeError(f"state fields must be tensors, states or tuples of states, got {type(value)}")


@dataclasses.dataclass(frozen=True)
class State:
    """Base class of all streaming states.

    Subclasses are frozen dataclasses whose fields are tensors with the batch (stream)
    dimension first, nested states, or tuples of nested states. Floating tensors follow
    ``.to(dtype=...)``; integer tensors (counters) keep their dtype.
    """

    # Subclasses are registered by name so a flat state_dict can be rebuilt into the
    # right (possibly heterogeneous, nested) structure without pickling.
    _name: ClassVar[str] = "State"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._name = cls.__name__
        _REGISTRY[cls.__name__] = cls

    # -- generic traversal -------------------------------------------------------------
    def _apply(self: S, fn) -> S:
        return type(self)(**{f.name: _map(getattr(self, f.name), fn) for f in dataclasses.fields(self)})

    def tensors(self) -> Iterator[Tensor]:
        """All tensors of the state, depth first in field order."""
        for f in dataclasses.fields(self):
            yield from _iter_tensors(getattr(self, f.name))

    @property
    def batch_size(self) -> int:
        return next(self.tensors()).shape[0]

    @property
    def device(self) -> torch.device:
        return next(self.tensors()).device

    def signature(self) -> tuple:
        """Structure, shapes and float-ness of every tensor: equal signatures, compatible states."""
        return (self._name,) + tuple(_signature(getattr(self, f.name)) for f in dataclasses.fields(self))

    def nbytes(self) -> int:
        """Bytes held by the state (all streams)."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    # -- the operations of the state contract -----------------------------------------------
    def to(self: S, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> S:
        def move(t: Tensor) -> Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return self._apply(move)

    def detach(self: S) -> S:
        """Cut the autograd graph (truncated backprop through time)."""
        return self._apply(Tensor.detach)

    def clone(self: S) -> S:
        return self._apply(Tensor.clone)

    def reset(self: S, mask: Tensor | None = None) -> S:
        """Zero the streams where ``mask`` (bool, shape (B,)) is True; all streams if None."""
        if mask is None:
            return self._apply(torch.zeros_like)
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.device)
        if mask.shape != (self.batch_size,):
            raise ValueError(f"reset mask must have shape ({self.batch_size},), got {tuple(mask.shape)}")

        def zero(t: Tensor) -> Tensor:
            keep = (~mask).reshape((-1,) + (1,) * (t.dim() - 1))
            return torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))

        return self._apply(zero)

    def select(self: S, index: Tensor | Sequence[int] | slice | int) -> S:
        """The state of a subset of streams (index along the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return self._apply(lambda t: t[index])

    @classmethod
    def cat(cls: type[S], states: Sequence[S]) -> S:
        """Concatenate states of the same structure along the batch dimension."""
        if not states:
            raise ValueError("State.cat needs at least one state")
        first = states[0]
        for s in states[1:]:
            if type(s) is not type(first):
                raise ValueError(f"cannot concatenate {type(first).__name__} with {type(s).__name__}")
        flat = [s.state_dict() for s in states]
        keys = flat[0].keys()
        for d in flat[1:]:
            if d.keys() != keys:
                raise ValueError("cannot concatenate states of different structure")
        merged = {k: flat[0][k] if k.endswith(".__len__") else torch.cat([d[k] for d in flat]) for k in keys}
        return first.__class__.from_state_dict(merged)

    def state_dict(self) -> dict[str, Tensor]:
        """Flat ``{key: tensor}`` snapshot (safetensors-compatible; no pickling).

        Keys encode the structure: ``<field>`` for tensors, ``<field>.<Class>.<...>`` for
        nested states and ``<field>.<i>.<Class>.<...>`` for tuples of states.
        """
        out: dict[str, Tensor] = {}
        for f in dataclasses.fields(self):
            _flatten(getattr(self, f.name), f.name, out)
        return out

    @classmethod
    def from_state_dict(cls: type[S], d: dict[str, Tensor]) -> S:
        """Rebuild a state from :meth:`state_dict` output."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            kwargs[f.name] = _unflatten(d, f.name)
        return cls(**kwargs)


def _signature(value: Any) -> tuple:
    if isinstance(value, Tensor):
        return (tuple(value.shape), value.is_floating_point())
    if isinstance(value, State):
        return value.signature()
    return tuple(_signature(v) for v in value)


def _iter_tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, State):
        yield from value.tensors()
    else:
        for v in value:
            yield from _iter_tensors(v)


def _flatten(value: Any, prefix: str, out: dict[str, Tensor]) -> None:
    if isinstance(value, Tensor):
        out[prefix] = value
    elif isinstance(value, State):
        for k, t in value.state_dict().items():
            out[f"{prefix}.{value._name}.{k}"] = t
    else:
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}", out)
        out[f"{prefix}.__len__"] = torch.tensor(len(value))


def _unflatten(d: dict[str, Tensor], prefix: str) -> Any:
    if prefix in d:
        return d[prefix]
    if f"{prefix}.__len__" in d:
        n = int(d[f"{prefix}.__len__"])
        return tuple(_unflatten(d, f"{prefix}.{i}") for i in range(n))
    head = prefix + "."
    names = {k[len(head):].split(".", 1)[0] for k in d if k.startswith(head)}
    if len(names) != 1 or next(iter(names)) not in _REGISTRY:
        raise ValueError(f"state_dict has no entry for {prefix!r} (found classes {sorted(names)})")
    name = names.pop()
    sub_prefix = f"{head}{name}."
    sub = {k[len(sub_prefix):]: v for k, v in d.items() if k.startswith(sub_prefix)}
    return _REGISTRY[name].from_state_dict(sub)


def batch_value(t: Tensor, what: str) -> int:
    """The value a per-stream counter ``t`` (B,) holds for every stream of a batch, as an int (one
    device sync). Streams that disagree (different rates, pending samples, primed counts) cannot
    share one chunk-aligned step, so they are refused rather than silently misaligned."""
    if t.numel() == 1:
        return int(t)
    lo, hi = torch.stack([t.min(), t.max()]).tolist()
    if lo != hi:
        raise ValueError(f"all streams of a batch must agree on their {what} (got {lo}..{hi}); run them apart")
    return int(lo)
