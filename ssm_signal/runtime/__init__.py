"""The torch-free streaming runtime: an exported model (``ssm-signal export --format onnx``) streamed with
numpy and onnxruntime only.

    from ssm_signal.runtime import OnnxSession
    session = OnnxSession("artifacts/kws_default/onnx")
    update = session.push(chunk, 48000)          # the push/flush/events/snapshot of StreamingSession

- ``sidecar``: the export's ``model.json`` (names, shapes, rates, labels, detector settings);
- ``model``: :class:`OnnxModel`, the graphs in onnxruntime, the scores and the detector; :class:`FrameLoop`,
  one stream's frame-by-frame steps with the state bound to onnxruntime;
- ``session``: :class:`OnnxSession`, one live stream.

Nothing here imports torch (a test runs it with torch made unimportable); the pieces it shares with
the torch sessions are torch-free too: the input rules, the resampler's design and numpy twin, the
event detector, the update types and the snapshot format. Install without torch: docs/export.md.
"""

from ssm_signal.runtime.model import FrameLoop, OnnxModel, RuntimeConfig, find_export
from ssm_signal.runtime.session import OnnxSession
from ssm_signal.runtime.sidecar import ExportedModelError, Sidecar, read_sidecar

__all__ = ["ExportedModelError", "FrameLoop", "OnnxModel", "OnnxSession", "RuntimeConfig", "Sidecar", "find_export", "read_sidecar"]
