"""Causal streaming log-mel frontend for mono audio.

Framing (causal, no centring, no look-ahead): with hop H and FFT size N, frame k covers
samples ``[(k+1)H - N, (k+1)H)``, samples before 0 being zeros. A signal of n samples
therefore yields ``n // H`` frames, and each frame is emitted by the call that delivers
its last sample. The state carries the last N samples and the phase (samples seen mod H),
so any split of a waveform into chunks gives exactly the frames of the whole waveform.

    frame_k  = x[(k+1)H - N : (k+1)H]                                   (N,)
    P_k      = |rfft(w * frame_k)|^2                                   (N//2 + 1,)   w: periodic Hann
    logmel_k = log(P_k @ fbank + eps)                                  (n_mels,)     fbank: HTK mel triangles
    y_k      = (logmel_k - mean) / std                                 training-set statistics

The phase, the frame count and the fitted statistics are :class:`~ssm_signal.frontends.base.FramedFrontend`'s.
"""

from __future__ import annotations

import dataclasses

import torch
import torchaudio.functional as AF
from torch import Tensor

from ssm_signal.frontends.base import FramedFrontend, check_aligned, read_phase
from ssm_signal.kernels import get_op
from ssm_signal.state import State
from ssm_signal.validation import check_sequence, check_step


@dataclasses.dataclass(frozen=True)
class LogMelState(State):
    """history: (B, n_fft), the last n_fft samples, oldest first (zeros at start);
    phase: (B,) int64, samples seen mod hop_length (equal for all streams of a batch)."""

    history: Tensor
    phase: Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs of half-precision inputs run in float32 (CPU rfft has no half kernels)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class LogMel(FramedFrontend):
    """Causal log-mel spectrogram, (B, L, 1) waveform -> (B, F, n_mels) frames.

    F = ``frames_for(L, phase)`` is the number of frames this chunk completes, possibly 0.
    Defaults: 16 kHz, 25 ms Hann window (n_fft=400), 10 ms hop (160), 40 HTK mel bands
    over 20-7600 Hz, ``log(mel + eps)``; then ``(logmel - mean) / std`` with the buffers
    ``mean``/``std`` (n_mels,) set by :meth:`fit_normalization` (0 and 1 until fitted).

    ``step`` takes one hop of samples, x_t (B, hop_length), and returns exactly one frame
    (B, n_mels); it needs the stream to be hop-aligned (phase 0). ``samples_per_frame`` is
    that hop, for containers that drive the frontend step by step.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float = 7600.0,
        eps: float = 1e-6,
    ):
        if sample_rate < 1 or n_fft < 2 or hop_length < 1 or n_mels < 1:
            raise ValueError(
                f"LogMel: need sample_rate >= 1, n_fft >= 2, hop_length >= 1, n_mels >= 1; got "
                f"{sample_rate}, {n_fft}, {hop_length}, {n_mels}"
            )
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"LogMel: need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
        if not eps > 0:
            raise ValueError(f"LogMel: eps must be > 0, got {eps}")
        super().__init__(n_mels, samples_per_frame=hop_length)
        self.d_model = 1
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.eps = f_min, f_max, eps
        # window and filterbank follow from the config, so they stay out of the state_dict;
        # the fitted statistics (the base's mean and std) do not and are saved with the model
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate)  # (n_freqs, n_mels)
        self.register_buffer("fbank", fbank, persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # rebuild the window at the new dtype: upcasting the float32 one would leave the
        # float64 path with float32-rounded window coefficients
        w = self.window
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=w.dtype, device=w.device)
        return self

    @property
    def d_output(self) -> int:
        return self.n_mels

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> LogMelState:
        return LogMelState(
            history=torch.zeros(batch_size, self.n_fft, device=device, dtype=dtype),
            phase=torch.zeros(batch_size, device=device, dtype=torch.int64),
        )

    # -- public, checked ---------------------------------------------------------------------
    def step(self, x_t: Tensor, state: LogMelState | None = None) -> tuple[Tensor, LogMelState]:
        """One hop in, one frame out: x_t (B, hop_length) -> y_t (B, n_mels). Needs phase 0."""
        check_step(x_t, self.hop_length)
        state = self._prepare_state(state, x_t)
        check_aligned(state.phase, "LogMel.step", "hop-aligned", "hops")
        return self._step(x_t, state)

    # -- unchecked ---------------------------------------------------------------------------
    def _as_stream(self, batch: Tensor) -> Tensor:
        """Raw audio to fit on, (B, L, 1), (B, L) or (L,) -> (B, L, 1)."""
        if batch.dim() == 1:
            batch = batch[None, :, None]
        elif batch.dim() == 2:
            batch = batch[:, :, None]
        check_sequence(batch, 1)
        return batch

    def _step(self, x_t: Tensor, state: LogMelState) -> tuple[Tensor, LogMelState]:
        """x_t (B, hop_length) at phase 0 (``step`` checks it; this reads nothing from the device, so
        it compiles and captures) -> y_t (B, n_mels)."""
        # at phase 0 the frame is exactly the last n_fft samples, which is also the new history
        frame = torch.cat([state.history.to(x_t.dtype), x_t], dim=1)[:, -self.n_fft:]
        y = self._normalize(self._frames_to_logmel(frame))
        return y, LogMelState(history=frame.to(state.history.dtype), phase=state.phase)

    def _features(self, x: Tensor, state: LogMelState, phase: int | None = None) -> tuple[Tensor, LogMelState]:
        """Un-normalised log-mel frames: x (B, L, 1) -> (B, F, n_mels), and the new state."""
        B, L, _ = x.shape
        p = read_phase(state.phase, self.hop_length, type(self).__name__) if phase is None else phase
        H, N = self.hop_length, self.n_fft
        buf = torch.cat([state.history.to(x.dtype), x[..., 0]], dim=1)  # (B, N + L); sample j of x at N + j
        n_frames = (p + L) // H
        if n_frames == 0:
            y = x.new_zeros(B, 0, self.n_mels)
        else:
            # the first frame ends after chunk sample H - p - 1, i.e. at buffer index N + H - p
            start = H - p
            frames = buf[:, start:start + (n_frames - 1) * H + N].unfold(1, N, H)  # (B, F, N), a view
            y = self._frames_to_logmel(frames)
        history = buf[:, -N:].to(state.history.dtype, copy=True)  # a copy, so buf is not kept alive
        return y, LogMelState(history=history, phase=torch.full_like(state.phase, (p + L) % H))

    def _frames_to_logmel(self, frames: Tensor) -> Tensor:
        """frames (..., n_fft) -> log(|rfft(w * frame)|^2 @ fbank + eps), (..., n_mels)."""
        out_dtype = frames.dtype
        dt = compute_dtype(out_dtype)
        power = get_op("power_spectrum", frames.device)(frames.to(dt), self.window.to(dt), self.n_fft)
        return torch.log(power @ self.fbank.to(dt) + self.eps).to(out_dtype)
