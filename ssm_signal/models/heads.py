"""Per-frame output heads. Each maps the backbone's hidden frames h (B, F, d_model) to outputs.

- ``ClassifierHead``: class logits at every frame. The clip prediction is the logits at the
  clip's last frame: the same rule a live stream applies at any moment.
- ``ForecastHead``: the prediction of the next frame's features x_{t+1} from h_t.
- ``AnomalyHead``: a forecaster of the next H frames whose output is the anomaly score of
  frame t, the squared errors of the forecasts of x_t made 1..H frames before, normalised per
  horizon and feature by the error variance measured on normal data (``err_var``, fitted after
  training). It carries the last H forecasts as its state, so streaming scores equal offline scores.

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
    """prev: (B, H, H * feature_dim) the forecasts made at the last H frames, oldest first (zeros before
    the stream's start); seen: (B,) int64 frames seen."""

    prev: Tensor
    seen: Tensor


def horizon_errors(feats: Tensor, pred: Tensor, prev: Tensor, seen: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
    """Squared errors of the forecasts of every frame made 1..H frames before it.

    feats (B, F, C): the frames x_t, t = seen .. seen + F - 1; pred (B, F, H * C): the forecasts made at
    those frames, block h-1 holding x̂_{t+h|t}; prev (B, H, H * C): the forecasts made at the H frames
    before them (oldest first); seen (B,): frames before this chunk. Returns err (B, F, H, C), block h-1
    holding (x_t - x̂_{t|t-h})^2, and valid (B, F, H): whether the forecast exists (t - h >= 0).
    The anomaly score, the training loss and the error variance all take their pairs from here.
    """
    B, F, C = feats.shape
    made = torch.cat([prev.to(pred.dtype), pred], dim=1)  # (B, H + F, H * C), made at frames seen-H .. seen+F-1
    err = torch.stack([(feats - made[:, horizon - h:horizon - h + F, (h - 1) * C:h * C]) ** 2
                       for h in range(1, horizon + 1)], dim=2)
    t = seen[:, None] + torch.arange(F, device=feats.device)  # (B, F) frame index
    valid = t[:, :, None] >= torch.arange(1, horizon + 1, device=feats.device)
    return err, valid


class AnomalyHead(nn.Module):
    """A forecaster of the next ``horizon`` frames whose output is the anomaly score of frame t:

        score_t = mean over h = 1..H (those made since the stream began) and channels c of
                  (x_t,c - x̂_{t|t-h},c)^2 / err_var_{h,c}

    with x̂_{t|t-h} the forecast of frame t made at frame t-h and err_var the error variance per horizon
    and channel on normal data (fitted after training). A one-step forecaster (H = 1) follows any
    persistent change after one frame; forecasts made further back were made before the change, so a
    level shift, a frozen sensor, a drift or a new period keep the score up while they last. The state
    carries the last H forecasts, so streaming scores equal offline ones.
    """

    def __init__(self, d_model: int, feature_dim: int, horizon: int = 1):
        super().__init__()
        self.feature_dim, self.horizon = feature_dim, horizon
        self.forecast = ForecastHead(d_model, feature_dim * horizon)
        self.register_buffer("err_var", torch.ones(horizon * feature_dim))  # (H * C,), block h-1 for horizon h
        self.out_dim = 1

    def init_state(self, batch_size: int, *, device=None, dtype=torch.float32) -> AnomalyState:
        H = self.horizon
        return AnomalyState(prev=torch.zeros(batch_size, H, H * self.feature_dim, device=device, dtype=dtype),
                            seen=torch.zeros(batch_size, dtype=torch.int64, device=device))

    def apply(self, feats: Tensor, hidden: Tensor, state: tuple[AnomalyState]
              ) -> tuple[Tensor, Tensor | None, tuple[AnomalyState]]:
        """feats (B, F, feature_dim), hidden (B, F, d_model) -> (scores (B, F, 1), forecasts (B, F, H * C), (state,))."""
        pred = self.forecast(hidden)
        out, new = self.score(feats, pred, state[0])
        return out, pred, (new,)

    def errors(self, feats: Tensor, pred: Tensor, state: AnomalyState) -> tuple[Tensor, Tensor]:
        """:func:`horizon_errors` of this head: err (B, F, H, C), valid (B, F, H)."""
        return horizon_errors(feats, pred, state.prev, state.seen, self.horizon)

    def score(self, feats: Tensor, pred: Tensor, state: AnomalyState) -> tuple[Tensor, AnomalyState]:
        """feats (B, F, C), pred (B, F, H * C) -> scores (B, F, 1), new state. The very first frame of a
        stream has no forecast yet and scores 0."""
        H, C = self.horizon, self.feature_dim
        err, valid = self.errors(feats, pred, state)
        z = (err / self.err_var.to(err.dtype).view(H, C)).mean(-1) * valid  # (B, F, H)
        out = z.sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
        made = torch.cat([state.prev.to(pred.dtype), pred], dim=1)[:, -H:]
        return out, AnomalyState(prev=made.to(state.prev.dtype), seen=state.seen + feats.shape[1])
