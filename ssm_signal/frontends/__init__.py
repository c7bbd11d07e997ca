"""Causal streaming feature extractors: log-mel or a pre-trained speech embedding for audio, standardisation for
sensors.

Both follow the state contract of :class:`~ssm_signal.layers.base.StreamingModule`, with
one difference: an output step may need several input samples (a hop, a decimation
block), so ``forward`` returns only the frames a chunk completes (possibly none) and
``step`` consumes ``samples_per_frame`` samples at a time.
"""

from __future__ import annotations

from ssm_signal.frontends.base import FramedFrontend, RunningMoments
from ssm_signal.frontends.logmel import LogMel, LogMelState, PcenMelState
from ssm_signal.frontends.sensor import SensorFrontend, SensorFrontendState, SpreadState
from ssm_signal.frontends.speech_embedding import SpeechEmbedding, SpeechEmbeddingState

# a model's frontend is built from its config by ssm_signal.models.signal_model.build_frontend
__all__ = [
    "FramedFrontend",
    "LogMel",
    "LogMelState",
    "PcenMelState",
    "RunningMoments",
    "SensorFrontend",
    "SensorFrontendState",
    "SpeechEmbedding",
    "SpeechEmbeddingState",
    "SpreadState",
]
