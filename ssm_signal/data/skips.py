"""Recorded skips: bad inputs are logged and counted, never silently dropped.

Readers that meet an unreadable, empty or invalid item either raise a ``DataError`` with a
clear message (when the whole input is unusable) or record the item here and go on.
"""

from __future__ import annotations

import collections
import dataclasses
import logging

log = logging.getLogger("ssm_signal.data")


class DataError(ValueError):
    """An input that cannot be used, with the path and the reason in the message."""


@dataclasses.dataclass
class SkipLog:
    """Items skipped by a reader: (source, reason) pairs, counted by reason."""

    items: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def add(self, source: str, reason: str) -> None:
        log.warning("skipping %s: %s", source, reason)
        self.items.append((str(source), reason))

    def counts(self) -> dict[str, int]:
        return dict(collections.Counter(reason.split(":")[0] for _, reason in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self) -> str:
        if not self.items:
            return "no items skipped"
        parts = ", ".join(f"{n} {r}" for r, n in sorted(self.counts().items()))
        return f"{len(self.items)} items skipped ({parts})"
