"""Causal streaming feature extractors: log-mel for audio, standardisation for sensors.

Both follow the state contract of :class:`~ssm_signal.layers.base.StreamingModule`, with
one difference: an output step may need several input samples (a hop, a decimation
block), so ``forward`` returns only the frames a chunk completes (possibly none) and
``step`` consumes ``samples_per_step`` samples at a time.
"""

from __future__ import annotations

from ssm_signal.frontends.logmel import LogMel, LogMelState, RunningMoments
from ssm_signal.frontends.sensor import SensorFrontend, SensorFrontendState
from ssm_signal.layers.base import StreamingModule

FRONTENDS: dict[str, type[StreamingModule]] = {"logmel": LogMel, "sensor": SensorFrontend}


def build_frontend(kind: str, **kwargs) -> StreamingModule:
    """``build_frontend("logmel", n_mels=64)`` or ``build_frontend("sensor", channels=6, decimate=2)``."""
    if kind not in FRONTENDS:
        raise ValueError(f"unknown frontend kind {kind!r}; choose one of {sorted(FRONTENDS)}")
    return FRONTENDS[kind](**kwargs)


__all__ = [
    "FRONTENDS",
    "LogMel",
    "LogMelState",
    "RunningMoments",
    "SensorFrontend",
    "SensorFrontendState",
    "build_frontend",
]
