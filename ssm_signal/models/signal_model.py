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

from ssm_signal.frontends import LogMel, SensorFrontend, SpeechEmbedding
from ssm_signal.layers.base import StreamingModule, write_state_
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
    if cfg.kind == "speech_embedding":
        return SpeechEmbedding()
    if cfg.kind == "logmel":
        return LogMel(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                      n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max, pcen=cfg.pcen,
                      cepstra=cfg.cepstra)
    return SensorFrontend(cfg.in_channels, decimate=cfg.decimate, spread=cfg.spread)


class SignalModel(StreamingModule):
    """Frontend -> Linear(feature_dim, d_model) -> Backbone -> head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        fc, bc, hc = config.frontend, config.backbone, config.head
        # the raw signal's channels: what forward and step take (x: (B, L, in_channels)); the backbone's
        # own width is config.backbone.d_model
        self.in_channels = fc.in_channels
        self.frontend = build_frontend(fc)
        self.input_proj = nn.Linear(fc.feature_dim, bc.d_model)
        self.backbone = Backbone(bc.d_model, bc.layers, mixer_kwargs=bc.mixer_kwargs, mlp_ratio=bc.mlp_ratio)
        if hc.kind == "classify":
            self.head = ClassifierHead(bc.d_model, hc.num_classes)
        elif hc.kind == "forecast":
            self.head = ForecastHead(bc.d_model, fc.feature_dim)
        else:
            self.head = AnomalyHead(bc.d_model, fc.feature_dim, hc.horizons, hc.score_window, hc.memory)

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

    def forward(self, x: Tensor, state: SignalModelState | None = None) -> tuple[Tensor, SignalModelState]:
        """Checked forward: x (B, L, in_channels) samples -> outputs (B, F, d_output) of the F frames the
        chunk completes, and the final state (the state contract, with samples in and frames out)."""
        check_sequence(x, self.in_channels)
        return self._forward(x, self._prepare_state(state, x))

    # -- the parts, for training ------------------------------------------------------------------
    def forward_parts(self, x: Tensor, state: SignalModelState | None = None) -> ModelParts:
        """Checked forward returning features, hidden frames, outputs and forecasts."""
        check_sequence(x, self.in_channels)
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
        out, pred, head_state = self.head.apply(feats, hidden, state.head)
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
        """One frame: x_t (B, samples_per_frame, channels) -> (B, out_dim), the frame x_t completes.

        At frame phase 0 (every stream that has seen whole frames only) the unchecked :meth:`_step`;
        otherwise the general forward (one device read decides)."""
        if x_t.dim() != 3 or x_t.shape[1] != self.samples_per_frame:
            raise ValueError(f"SignalModel.step takes one frame of samples, shape (batch, {self.samples_per_frame}, "
                             f"{self.in_channels}); got {tuple(x_t.shape)}")
        check_sequence(x_t, self.in_channels, "x_t")
        state = self._prepare_state(state, x_t)
        if bool((state.frontend.phase != 0).any()):  # mid-frame: the frame completes inside x_t all the same
            y, state = self._forward(x_t, state)
            return y[:, 0], state
        return self._step(x_t, state)

    # -- one frame, unchecked: what every fast runner wraps ---------------------------------------
    def _frontend_input(self, x_t: Tensor) -> Tensor:
        """One frame (B, samples_per_frame, C) -> what the frontend's ``_step`` takes: a hop (B, hop)
        for log-mel, 1280 samples (B, 1280) for the speech embedding, a sample (B, C) or a block (B, decimate, C)
        for sensors."""
        if isinstance(self.frontend, (LogMel, SpeechEmbedding)):
            return x_t[..., 0]
        return x_t[:, 0] if self.frontend.decimate == 1 else x_t

    def _step(self, x_t: Tensor, state: SignalModelState) -> tuple[Tensor, SignalModelState]:
        """One frame at phase 0: x_t (B, samples_per_frame, C) -> y_t (B, out_dim), new state.

        The frontend's, backbone's and head's own steps, with no device read and no data-dependent
        branch, so it compiles (``torch.compile``, AOTInductor) and captures in a CUDA graph: the
        streaming runners wrap exactly this. Equals ``forward`` on the frame (tests compare them).
        """
        feats, fs = self.frontend._step(self._frontend_input(x_t), state.frontend)  # (B, feature_dim)
        hidden, bs = self.backbone._step(self.input_proj(feats), state.backbone)  # (B, d_model)
        y, head_state = self.head.step(feats, hidden, state.head)
        return y, SignalModelState(fs, bs, head_state)

    def _step_(self, x_t: Tensor, state: SignalModelState, active: Tensor | None) -> Tensor:
        """:meth:`_step` written over ``state``'s tensors in place, only in the rows where ``active``
        (B,) is true (all when None) -> y_t (B, out_dim). The serving tick (see ``StreamingModule.step_``):
        the backbone advances through the layers' ``_step_`` (Mamba/Mamba-2 SSM states updated inside
        their step kernels), the small frontend and head states are computed anew and written back."""
        feats, fs = self.frontend._step(self._frontend_input(x_t), state.frontend)
        hidden = self.backbone._step_(self.input_proj(feats), state.backbone, active)
        y, head_state = self.head.step(feats, hidden, state.head)
        write_state_(state.frontend, fs, active)
        for dst, src in zip(state.head, head_state, strict=True):
            write_state_(dst, src, active)
        return y

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
