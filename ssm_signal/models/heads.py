"""Per-frame output heads. Each maps the backbone's hidden frames h (B, F, d_model) to outputs.

- ``ClassifierHead``: class logits at every frame. The clip prediction is the logits at the
  clip's last frame: the same rule a live stream applies at any moment.
- ``ForecastHead``: the prediction of the next frame's features x_{t+1} from h_t.
- ``AnomalyHead``: a forecaster of the frames ``horizons`` ahead whose output is the anomaly score
  of frame t, the squared errors of the forecasts of x_t made that many frames before, normalised per
  horizon and feature by the error variance measured on normal data (``err_var``, fitted after
  training), and optionally the distance of h_t to the nearest kept hidden state of normal data
  (``memory``). It carries the recent forecasts as its state, so streaming scores equal offline scores.

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

    def step(self, feats: Tensor, hidden: Tensor, state: tuple[State, ...]) -> tuple[Tensor, tuple[State, ...]]:
        """One frame: hidden (B, d_model) -> (output (B, out_dim), the empty state). Per frame the map needs no
        frames axis (an exported step is then one Gemm, not an unsqueeze, matmul, add and gather)."""
        return self.proj(hidden), state


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


R_MIN = 1e-3  # the smallest error ratio the two-sided score tells apart (a frozen channel's is 0)


@dataclasses.dataclass(frozen=True)
class AnomalyState(State):
    """prev: (B, H, K * feature_dim) the forecasts made at the last H = max(horizons) frames, oldest first (zeros
    before the stream's start); recent: (B, W - 1, K, feature_dim) the normalised errors of the last W - 1 frames
    (W = the score window; zeros where no forecast existed); seen: (B,) int64 frames seen."""

    prev: Tensor
    recent: Tensor
    seen: Tensor


def forecast_exists(t: Tensor, horizons: tuple[int, ...]) -> Tensor:
    """t (...,) frame indices -> (..., K) bool: whether the forecast of frame t made h_k frames before exists
    (t - h_k >= 0). Each horizon is compared as a Python int: a tensor built from the list would be a
    host-to-device copy on every call, which a CUDA graph cannot capture."""
    return torch.stack([t >= h for h in horizons], dim=-1)


def horizon_errors(feats: Tensor, pred: Tensor, prev: Tensor, seen: Tensor, horizons: tuple[int, ...]
                   ) -> tuple[Tensor, Tensor]:
    """Squared errors of the forecasts of every frame made h frames before it, for each h of ``horizons`` (K).

    feats (B, F, C): the frames x_t, t = seen .. seen + F - 1; pred (B, F, K * C): the forecasts made at those
    frames, block k holding x̂_{t+h_k|t}; prev (B, H, K * C): the forecasts made at the H = max(horizons) frames
    before them (oldest first); seen (B,): frames before this chunk. Returns err (B, F, K, C), block k holding
    (x_t - x̂_{t|t-h_k})^2, and valid (B, F, K): whether that forecast exists (t - h_k >= 0). The anomaly score,
    the training loss and the error variance all take their pairs from here.
    """
    B, F, C = feats.shape
    H = prev.shape[1]
    made = torch.cat([prev.to(pred.dtype), pred], dim=1)  # (B, H + F, K * C), made at frames seen-H .. seen+F-1
    err = torch.stack([(feats - made[:, H - h:H - h + F, k * C:(k + 1) * C]) ** 2 for k, h in enumerate(horizons)],
                      dim=2)
    t = seen[:, None] + torch.arange(F, device=feats.device)  # (B, F) frame index
    return err, forecast_exists(t, horizons)


def nearest_state(hidden: Tensor, bank: Tensor) -> Tensor:
    """hidden (..., D), bank (M, D) -> (...,): min_j |h - m_j|^2, as |h|^2 - 2 h.m_j + |m_j|^2 (one matrix
    product; the differences themselves would hold (..., M, D) numbers), clamped at 0 against rounding."""
    d2 = (hidden * hidden).sum(-1, keepdim=True) - 2 * hidden @ bank.T + (bank * bank).sum(-1)
    return d2.amin(-1).clamp(min=0)


def memory_bank(states: Tensor, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Normal hidden states (N, D) -> (bank (size, D), scale ()). The bank: ``size`` of the states drawn without
    replacement where N > size, else all N repeated in turn up to ``size`` rows (a repeat never changes the
    nearest distance, and the bank keeps the shape the config gives). The scale: the mean over the distinct
    states kept of each one's squared distance to its nearest other, the typical distance of a normal state to
    the bank, so that novelty / scale is about 1 on normal data."""
    if len(states) < 2:
        raise ValueError(f"a memory of normal states needs at least 2 of them, got {len(states)}")
    if len(states) > size:
        g = torch.Generator().manual_seed(seed)
        states = states[torch.randperm(len(states), generator=g)[:size]]
    d2 = torch.cdist(states.double(), states.double()) ** 2
    d2.fill_diagonal_(float("inf"))
    scale = d2.amin(1).mean().clamp(min=1e-12).to(states.dtype)
    return states[torch.arange(size) % len(states)], scale


class AnomalyHead(nn.Module):
    """A forecaster of the frames ``horizons`` ahead whose output is the anomaly score of frame t. With

        z_{t,h,c} = (x_t,c - x̂_{t|t-h},c)^2 / err_var_{h,c}

    (x̂_{t|t-h}: the forecast of frame t made at frame t-h; err_var: the error variance per horizon and channel
    on normal data, fitted after training), over the pairs (h, c) whose forecasts exist (t - h >= 0):

        window W = 1:  score_t = mean_{h,c} z_{t,h,c}
        window W > 1:  score_t = mean_{h,c} (r - 1 - log r),  r = max(mean of z_{τ,h,c} over τ = t-W+1 .. t, R_MIN)

    and score_t = 0 until every horizon's forecasts of the whole window exist (t < max(horizons) + W - 1): a
    stream that has just begun has no history to forecast from, and scoring its first frames raised an alarm at
    the start of every stream. W > 1 is the Gaussian likelihood-ratio test of "these W errors have the normal
    variance", two-sided: errors too large (a forecast gone wrong: spikes, shifts, drift) and too small (a signal
    more predictable than normal data ever is: a frozen sensor, a slowed rhythm) both raise it; it is 0 where
    r = 1. A one-step forecaster
    (horizons [1]) follows a persistent change after one frame; forecasts made further back were made before
    the change, so a shift or a drift keeps the score up for as long as the longest horizon. The state carries
    the last max(horizons) frames' forecasts and the last W - 1 frames' errors, so streaming scores equal
    offline ones.

    With ``memory`` M > 0 the head also keeps up to M hidden states of the normal training series (``bank``,
    (M, d_model), and ``bank_scale``, fitted after training by :func:`memory_bank`), and adds to the score

        novelty_t = min_j |h_t - m_j|^2 / bank_scale

    which is about 1 on normal data and grows where the backbone's state goes where normal data never took it
    (a frozen sensor keeps being forecast well once its stuck value fills the input, but its state is new).
    It needs no state of its own: h_t already summarises the past.
    """

    def __init__(self, d_model: int, feature_dim: int, horizons: tuple[int, ...] | list[int] = (1,), window: int = 1,
                 memory: int = 0):
        super().__init__()
        self.feature_dim, self.horizons, self.window, self.memory = feature_dim, tuple(horizons), window, memory
        K = len(self.horizons)
        self.forecast = ForecastHead(d_model, feature_dim * K)
        self.register_buffer("err_var", torch.ones(K * feature_dim))  # (K * C,), block k for horizons[k]
        if memory:
            self.register_buffer("bank", torch.zeros(memory, d_model))  # (M, d_model)
            self.register_buffer("bank_scale", torch.ones(()))
        self.out_dim = 1

    @property
    def first_scored(self) -> int:
        """The first frame that gets a score: every horizon's forecasts of the whole window exist there."""
        return max(self.horizons) + self.window - 1

    def set_memory(self, states: Tensor, seed: int = 0) -> None:
        """Keep normal hidden states (N, d_model) as the bank (:func:`memory_bank`; ``seed`` draws them)."""
        bank, scale = memory_bank(states.detach().float().cpu(), self.memory, seed)
        self.bank.copy_(bank)
        self.bank_scale.copy_(scale)

    def init_state(self, batch_size: int, *, device=None, dtype=torch.float32) -> AnomalyState:
        H, K, C = max(self.horizons), len(self.horizons), self.feature_dim
        return AnomalyState(prev=torch.zeros(batch_size, H, K * C, device=device, dtype=dtype),
                            recent=torch.zeros(batch_size, self.window - 1, K, C, device=device, dtype=dtype),
                            seen=torch.zeros(batch_size, dtype=torch.int64, device=device))

    def apply(self, feats: Tensor, hidden: Tensor, state: tuple[AnomalyState]
              ) -> tuple[Tensor, Tensor | None, tuple[AnomalyState]]:
        """feats (B, F, feature_dim), hidden (B, F, d_model) -> (scores (B, F, 1), forecasts (B, F, K * C), (state,))."""
        pred = self.forecast(hidden)
        out, new = self.score(feats, pred, state[0], hidden)
        return out, pred, (new,)

    def step(self, feats: Tensor, hidden: Tensor, state: tuple[AnomalyState]) -> tuple[Tensor, tuple[AnomalyState]]:
        """One frame: feats (B, feature_dim), hidden (B, d_model) -> (score (B, 1), (state,))."""
        out, _, new = self.apply(feats.unsqueeze(1), hidden.unsqueeze(1), state)
        return out[:, 0], new

    def errors(self, feats: Tensor, pred: Tensor, state: AnomalyState) -> tuple[Tensor, Tensor]:
        """:func:`horizon_errors` of this head: err (B, F, K, C), valid (B, F, K)."""
        return horizon_errors(feats, pred, state.prev, state.seen, self.horizons)

    def score(self, feats: Tensor, pred: Tensor, state: AnomalyState, hidden: Tensor
              ) -> tuple[Tensor, AnomalyState]:
        """feats (B, F, C), pred (B, F, K * C), hidden (B, F, d_model) -> scores (B, F, 1), new state. The first
        max(horizons) + W - 1 frames of a stream score 0 (see the class docstring)."""
        K, C, W, F = len(self.horizons), self.feature_dim, self.window, feats.shape[1]
        err, valid = self.errors(feats, pred, state)
        z = err / self.err_var.to(err.dtype).view(K, C) * valid[..., None]  # (B, F, K, C)
        made = torch.cat([state.prev.to(pred.dtype), pred], dim=1)[:, -state.prev.shape[1]:]
        if W == 1:
            out = z.mean(-1).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
            recent = state.recent
        else:
            zs = torch.cat([state.recent.to(z.dtype), z], dim=1)  # (B, W - 1 + F, K, C): frames seen-W+1 ..
            tau = state.seen[:, None] - (W - 1) + torch.arange(W - 1 + F, device=z.device)  # their indices
            ok = forecast_exists(tau, self.horizons).to(z.dtype)  # (B, W-1+F, K)
            # every window summed in the same order (oldest first), so chunking cannot change the result
            total, count = zs[:, 0:F].clone(), ok[:, 0:F].clone()
            for j in range(1, W):
                total += zs[:, j:j + F]
                count += ok[:, j:j + F]
            r = (total / count.clamp(min=1)[..., None]).clamp(min=R_MIN)
            g = (r - 1 - torch.log(r)) * (count > 0)[..., None]  # (B, F, K, C)
            out = g.mean(-1).sum(-1, keepdim=True) / (count > 0).sum(-1, keepdim=True).clamp(min=1)
            recent = zs[:, -(W - 1):].to(state.recent.dtype)
        if self.memory:
            out = out + (nearest_state(hidden.to(self.bank.dtype), self.bank) / self.bank_scale).to(out.dtype)[
                ..., None]
        t = state.seen[:, None] + torch.arange(F, device=out.device)  # (B, F) frame index
        out = out * (t >= self.first_scored)[..., None]
        return out, AnomalyState(prev=made.to(state.prev.dtype), recent=recent, seen=state.seen + F)
