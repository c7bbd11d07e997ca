"""Real-time streaming: one live stream (StreamingSession) or many in one batched step (StreamPool).

The core is functional -- :meth:`StreamEngine.process` maps ``(chunk, state) -> (out, state)``
with every bit of memory in a typed :class:`EngineState` -- and the session (one stream) and
the pool (one EngineState of many stream slots, one batched model step per tick) are thin
stateful shells around it. Every fast runner wraps the model's own frame step,
``SignalModel._step``. Imports torch, numpy and safetensors (soundfile only when a
LiveStream reads an uploaded file); never gradio, mlflow or lightning.
"""

from ssm_signal.events import DetectorConfig, Event, EventDetector
from ssm_signal.signal_input import MAX_AUDIO_RATE, MIN_AUDIO_RATE, as_samples, check_sample_rate
from ssm_signal.streaming.engine import DetectorState, EngineOutput, EngineState, StreamConfig, StreamEngine
from ssm_signal.streaming.live import Admission, Limits, LiveStream, LiveView, find_bundles
from ssm_signal.streaming.pool import StreamPool
from ssm_signal.streaming.session import StreamingSession, Timing, Update
from ssm_signal.streaming.step import compiled, pool_step

__all__ = [
    "MAX_AUDIO_RATE", "MIN_AUDIO_RATE", "Admission", "DetectorConfig", "DetectorState", "EngineOutput", "EngineState", "Event",
    "EventDetector", "Limits", "LiveStream", "LiveView", "StreamConfig", "StreamEngine", "StreamPool", "StreamingSession", "Timing", "Update",
    "as_samples", "check_sample_rate", "compiled", "find_bundles", "pool_step",
]
