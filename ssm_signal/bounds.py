"""Numeric bounds of config fields: declared with the field, checked in one place.

    @dataclasses.dataclass
    class Settings:
        batch: int = bounded(256, ge=1)                         # an int field must hold an int (not a bool)
        gap_s: tuple[float, float] = bounded((0.1, 0.5), ge=0)  # a range: both ends bounded, low <= high

        def __post_init__(self):
            check_bounds(self)                                  # ValueError naming the first field out of bounds

A field annotated ``int`` (or ``tuple[int, int]``) must hold integers; any other bounded field, numbers.
Checks that relate fields to each other stay in the config's own ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from typing import Any

_KEY = "ssm_signal.bounds"


@dataclasses.dataclass(frozen=True)
class Bounds:
    """ge / gt / le: value >= ge, > gt, <= le (None: no such bound)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def describe(self) -> str:
        parts = [f"{op} {b}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le)) if b is not None]
        return " and ".join(parts)

    def holds(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le))


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A dataclass field with ``default`` and the bounds :func:`check_bounds` holds it to; a tuple default
    makes it a range (low, high)."""
    return dataclasses.field(default=default, metadata={_KEY: Bounds(ge, gt, le)})


def check_bounds(cfg: Any, label: str | Callable[[str], str] = "", error: type[ValueError] = ValueError) -> None:
    """Raise ``error`` for the first bounded field of the dataclass instance ``cfg`` that is out of its
    bounds, of the wrong type, or (a range) not a pair with low <= high. ``label`` names a field in the
    message: a prefix to its name (e.g. "frontend."), or a function of it (e.g. the option that sets it)."""
    integers = _integer_fields(type(cfg))
    for f in dataclasses.fields(cfg):
        bounds = f.metadata.get(_KEY)
        if bounds is None:
            continue
        name = label(f.name) if callable(label) else label + f.name
        value = getattr(cfg, f.name)
        kind = "integer" if f.name in integers else "number"
        if isinstance(f.default, tuple):
            ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(_is(kind, v) for v in value)
            if not (ok and all(bounds.holds(v) for v in value) and value[0] <= value[1]):
                within = f" of {kind}s {bounds.describe()}" if bounds.describe() else f" of {kind}s"
                raise error(f"{name} must be a range (low, high){within} with low <= high, got {value!r}")
        elif not _is(kind, value):
            raise error(f"{name} must be {'an integer' if kind == 'integer' else 'a number'}, got {value!r}")
        elif not bounds.holds(value):
            raise error(f"{name} must be {bounds.describe()}, got {value!r}")


def _is(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == "integer" else isinstance(value, int | float)


@functools.cache
def _integer_fields(cls: type) -> frozenset[str]:
    """The fields of ``cls`` annotated ``int`` or as a tuple of ints."""
    hints = typing.get_type_hints(cls)
    return frozenset(name for name, h in hints.items()
                     if h is int or (typing.get_origin(h) is tuple and set(typing.get_args(h)) == {int}))
