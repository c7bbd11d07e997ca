"""Sequence mixers and building blocks, all under the streaming-state contract."""

from ssm_signal.layers.attention import AttentionState, LocalAttention
from ssm_signal.layers.base import StreamingModule
from ssm_signal.layers.block import MIXERS, Backbone, BackboneState, Block, make_mixer
from ssm_signal.layers.conv import CausalConv1d, ConvState
from ssm_signal.layers.mamba import Mamba, MambaState
from ssm_signal.layers.mamba2 import Mamba2, Mamba2State
from ssm_signal.layers.norm import RMSNorm, RMSNormGated
from ssm_signal.layers.s4d import S4D, S4DState

__all__ = [
    "MIXERS", "AttentionState", "Backbone", "BackboneState", "Block", "CausalConv1d", "ConvState",
    "LocalAttention", "Mamba", "Mamba2", "Mamba2State", "MambaState", "RMSNorm", "RMSNormGated", "S4D",
    "S4DState", "StreamingModule", "make_mixer",
]
