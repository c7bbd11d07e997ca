"""ssm-signal: streaming audio and time-series models with selective state-space models.

The names below are imported on first use, so that ``ssm_signal.runtime`` (numpy and onnxruntime
only) imports without torch: importing a subpackage runs this file first.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Bundle": "ssm_signal.bundle", "Prediction": "ssm_signal.bundle", "load_bundle": "ssm_signal.bundle",
    "save_bundle": "ssm_signal.bundle", "ModelConfig": "ssm_signal.models", "SignalModel": "ssm_signal.models",
}

__all__ = ["Bundle", "ModelConfig", "Prediction", "SignalModel", "__version__", "load_bundle", "save_bundle"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups find it without this hook
        return value
    raise AttributeError(f"module 'ssm_signal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
