"""SignalModel = streaming frontend + input projection + Backbone + head.

The whole model obeys the state contract: raw samples in any chunking give the same
frame outputs as the whole signal, because every stage carries its state.

    model = SignalModel(ModelConfig(...))
    y, state = model(x, state)     # x: (B, L, channels) raw samples -> y: (B, F, out_dim)
    y_t, state = model.step(x_t, state)  # x_t: (B, samples_per_frame, channels) -> (B, out_dim)

F = number of frames completed by this chunk (possibly 0). One "step" of a whole model is
one frame: hop_length samples for audio, ``decimate`` samples for sensors.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ssm_signal.frontends import LogMel, SensorFrontend
from ssm_signal.layers.base import StreamingModule
from ssm_signal.layers.block import Backbone, BackboneState
from ssm_signal.models.config import ModelConfig
from ssm_signal.models.heads import AnomalyHead, ClassifierHead, ForecastHead
from ssm_signal.state import State
from ssm_signal.validation import check_sequence


@dataclasses.dataclass(frozen=True)
class SignalModelState(State):
    """frontend: the frontend's state; backbone: per-block states; head: () or (AnomalyState,)."""

    frontend: State
    backbone: BackboneState
    head: tuple[State, ...]


@dataclasses.dataclass
class ModelParts:
    """Everything one forward computes, for training losses and diagnostics.

    feats: (B, F, feature_dim) frontend output; hidden: (B, F, d_model) backbone output;
    out: (B, F, out_dim) the head's output (logits, forecasts or anomaly scores);
    pred: (B, F, feature_dim) next-frame forecasts (forecast and anomaly heads), else None.
    """

    feats: Tensor
    hidden: Tensor
    out: Tensor
    pred: Tensor | None
    state: SignalModelState


def build_frontend(cfg) -> StreamingModule:
    if cfg.kind == "logmel":
        return LogMel(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                      n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max)
    return SensorFrontend(cfg.channels, decimate=cfg.decimate)


class SignalModel(StreamingModule):
    """Frontend -> Linear(feature_dim, d_model) -> Backbone -> head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        fc, bc, hc = config.frontend, config.backbone, config.head
        self.d_model = fc.channels  # the contract's input width: raw channels
        self.frontend = build_frontend(fc)
        self.input_proj = nn.Linear(fc.feature_dim, bc.d_model)
        self.backbone = Backbone(bc.d_model, bc.layers, mixer_kwargs=bc.mixer_kwargs, mlp_ratio=bc.mlp_ratio)
        if hc.kind == "classify":
            self.head = ClassifierHead(bc.d_model, hc.num_classes)
        elif hc.kind == "forecast":
            self.head = ForecastHead(bc.d_model, fc.feature_dim)
        else:
            self.head = AnomalyHead(bc.d_model, fc.feature_dim)

    @property
    def d_output(self) -> int:
        return self.head.out_dim

    @property
    def samples_per_frame(self) -> int:
        return self.config.frontend.samples_per_frame

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> SignalModelState:
        head = (self.head.init_state(batch_size, device=device, dtype=dtype),) if isinstance(
            self.head, AnomalyHead) else ()
        return SignalModelState(
            frontend=self.frontend.init_state(batch_size, device=device, dtype=dtype),
            backbone=self.backbone.init_state(batch_size, device=device, dtype=dtype),
            head=head,
        )

    # -- the parts, for training ------------------------------------------------------------------
    def forward_parts(self, x: Tensor, state: SignalModelState | None = None) -> ModelParts:
        """Checked forward returning features, hidden frames, outputs and forecasts."""
        check_sequence(x, self.d_model)
        return self._parts(x, self._prepare_state(state, x))

    def _parts(self, x: Tensor, state: SignalModelState, phase: int | None = None) -> ModelParts:
        feats, fs = self.frontend._forward(x, state.frontend, phase)
        return self._from_features(feats, fs, state)

    def _from_features(self, feats: Tensor, fs: State, state: SignalModelState) -> ModelParts:
        if feats.shape[1] == 0:  # no frame completed in this chunk: only the frontend moved
            out = feats.new_zeros(feats.shape[0], 0, self.d_output)
            return ModelParts(feats, feats.new_zeros(feats.shape[0], 0, self.input_proj.out_features), out,
                              None, dataclasses.replace(state, frontend=fs))
        hidden, bs = self.backbone._forward(self.input_proj(feats), state.backbone)
        pred, head_state = None, state.head
        if isinstance(self.head, ClassifierHead):
            out = self.head(hidden)
        elif isinstance(self.head, ForecastHead):
            out = pred = self.head(hidden)
        else:
            pred = self.head.forecast(hidden)
            out, hs = self.head.score(feats, pred, state.head[0])
            head_state = (hs,)
        return ModelParts(feats, hidden, out, pred, SignalModelState(fs, bs, head_state))

    # -- the contract -----------------------------------------------------------------------------
    def _forward(self, x: Tensor, state: SignalModelState, phase: int | None = None
                 ) -> tuple[Tensor, SignalModelState]:
        """``phase``: the frontend's phase (samples seen mod ``samples_per_frame``) where the caller
        knows it, e.g. 0 for chunks of whole frames from a fresh state; then nothing in the call reads
        the device (no synchronisation: it can be captured in a CUDA graph). None: read from the state."""
        parts = self._parts(x, state, phase)
        return parts.out, parts.state

    def step(self, x_t: Tensor, state: SignalModelState | None = None) -> tuple[Tensor, SignalModelState]:
        """One frame: x_t (B, samples_per_frame, channels) -> (B, out_dim). Needs frame phase 0."""
        if x_t.dim() != 3 or x_t.shape[1] != self.samples_per_frame:
            raise ValueError(f"SignalModel.step takes one frame of samples, shape (batch, {self.samples_per_frame}, "
                             f"{self.d_model}); got {tuple(x_t.shape)}")
        y, state = self.forward(x_t, state)
        if y.shape[1] != 1:
            raise ValueError("SignalModel.step: the stream is not at a frame boundary (use forward for "
                             "arbitrary chunks)")
        return y[:, 0], state

    def clip_logits(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Clip-level output: the per-frame output read at each clip's last frame.

        x: (B, L, channels) from a zero state; lengths: (B,) valid samples per clip (padded
        batches), None = all of L. Returns (B, out_dim).
        """
        y, _ = self(x)
        if lengths is None:
            return y[:, -1]
        frames = torch.div(lengths, self.samples_per_frame, rounding_mode="floor").clamp(min=1)
        return y[torch.arange(y.shape[0], device=y.device), frames - 1]
