"""Model configs, heads and SignalModel (frontend + backbone + head)."""

from ssm_signal.models.config import BackboneConfig, FrontendConfig, HeadConfig, ModelConfig
from ssm_signal.models.heads import AnomalyHead, AnomalyState, ClassifierHead, ForecastHead
from ssm_signal.models.signal_model import ModelParts, SignalModel, SignalModelState

__all__ = [
    "AnomalyHead", "AnomalyState", "BackboneConfig", "ClassifierHead", "ForecastHead", "FrontendConfig",
    "HeadConfig", "ModelConfig", "ModelParts", "SignalModel", "SignalModelState",
]
