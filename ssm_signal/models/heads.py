"""Per-frame output heads. Each maps the backbone's hidden frames h (B, F, d_model) to outputs.

- ``ClassifierHead``: class logits at every frame. The clip prediction is the logits at the
  clip's last frame: the same rule a live stream applies at any moment.
- ``ForecastHead``: the prediction of the next frame's features x_{t+1} from h_t.
- ``AnomalyHead``: a forecaster whose output is the anomaly score of frame t, the squared
  error of the prediction made at t-1, normalised per feature by the error variance
  measured on normal data (``err_var``, fitted after training). It carries the previous
  prediction as its state, so streaming scores equal offline scores.

Every head has one entry point, ``apply(feats, hidden, state) -> (out, pred, state)``, for any
number of frames F >= 1 (one frame is F = 1): the chunked forward and the single frame step
(``SignalModel._forward`` / ``_step``) both go through it, so neither dispatches on the head's
type. ``state`` is the head's part of the model state: () or (AnomalyState,).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ssm_signal.state import State


class LinearHead(nn.Module):
    """A linear map of the backbone's output, h (B, F, d_model) -> (B, F, out_dim)."""

    def __init__(self, d_model: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(d_model, out_dim)
        self.out_dim = out_dim

    def forward(self, h: Tensor) -> Tensor:
        return self.proj(h)


class ClassifierHead(LinearHead):
    """hidden (B, F, d_model) -> logits (B, F, num_classes)."""

    def __init__(self, d_model: int, num_classes: int):
        super().__init__(d_model, num_classes)

    def apply(self, feats: Tensor, hidden: Tensor, state: tuple[State, ...]
              ) -> tuple[Tensor, Tensor | None, tuple[State, ...]]:
        """hidden (B, F, d_model) -> (logits (B, F, num_classes), no forecast, the empty state)."""
        return self(hidden), None, state


class ForecastHead(LinearHead):
    """hidden (B, F, d_model) -> predicted next features x̂_{t+1} (B, F, feature_dim)."""

    def __init__(self, d_model: int, feature_dim: int):
        super().__init__(d_model, feature_dim)

    def apply(self, feats: Tensor, hidden: Tensor, state: tuple[State, ...]
              ) -> tuple[Tensor, Tensor | None, tuple[State, ...]]:
        """hidden (B, F, d_model) -> (forecasts (B, F, feature_dim) as output and as pred, ())."""
        pred = self(hidden)
        return pred, pred, state


@dataclasses.dataclass(frozen=True)
class AnomalyState(State):
    """prev: (B, feature_dim) the prediction made at the last frame; seen: (B,) int64 frames seen."""

    prev: Tensor
    seen: Tensor


class AnomalyHead(nn.Module):
    def __init__(self, d_model: int, feature_dim: int):
        super().__init__()
        self.forecast = ForecastHead(d_model, feature_dim)
        self.register_buffer("err_var", torch.ones(feature_dim))
        self.out_dim = 1

    def init_state(self, batch_size: int, *, device=None, dtype=torch.float32) -> AnomalyState:
        return AnomalyState(prev=torch.zeros(batch_size, self.forecast.out_dim, device=device, dtype=dtype),
                            seen=torch.zeros(batch_size, dtype=torch.int64, device=device))

    def apply(self, feats: Tensor, hidden: Tensor, state: tuple[AnomalyState]
              ) -> tuple[Tensor, Tensor | None, tuple[AnomalyState]]:
        """feats (B, F, feature_dim), hidden (B, F, d_model) -> (scores (B, F, 1), forecasts, (state,))."""
        pred = self.forecast(hidden)
        out, new = self.score(feats, pred, state[0])
        return out, pred, (new,)

    def score(self, feats: Tensor, pred: Tensor, state: AnomalyState) -> tuple[Tensor, AnomalyState]:
        """feats, pred: (B, F, C) -> scores (B, F, 1), new state.

        score_t = mean_c (x_t - x̂_t)^2 / err_var_c with x̂_t predicted at t-1. The very first
        frame of a stream has no prediction yet and scores 0.
        """
        F = feats.shape[1]
        prev = torch.cat([state.prev.to(pred.dtype).unsqueeze(1), pred[:, :-1]], dim=1)  # x̂_t
        err = ((feats - prev) ** 2 / self.err_var.to(feats.dtype)).mean(-1, keepdim=True)
        t = state.seen[:, None] + torch.arange(F, device=feats.device)  # (B, F) frame index
        err = torch.where((t > 0).unsqueeze(-1), err, torch.zeros_like(err))
        return err, AnomalyState(prev=pred[:, -1].to(state.prev.dtype), seen=state.seen + F)
