"""ssm-signal: streaming audio and time-series models with selective state-space models."""

from ssm_signal.bundle import Bundle, Prediction, load_bundle, save_bundle
from ssm_signal.models import ModelConfig, SignalModel

__version__ = "0.1.0"

__all__ = ["Bundle", "ModelConfig", "Prediction", "SignalModel", "__version__", "load_bundle", "save_bundle"]
