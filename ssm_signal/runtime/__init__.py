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

import importlib

# name -> submodule. Loaded on first use (PEP 562), so that reading the export format's names
# (``ssm_signal.runtime.sidecar``: PRECISIONS, RUNTIMES) does not need onnxruntime, an optional extra.
_EXPORTS = {"FrameLoop": "model", "OnnxModel": "model", "RuntimeConfig": "model", "find_export": "model",
            "OnnxSession": "session", "ExportedModelError": "sidecar", "Sidecar": "sidecar", "read_sidecar": "sidecar"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ssm_signal.runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ssm_signal.runtime' has no attribute {name!r}")
