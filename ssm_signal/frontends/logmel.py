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

With ``cepstra=K`` the log-mel frame is smoothed along frequency before normalisation: its DCT-II (orthonormal,
the MFCC transform) keeps the first K coefficients and is turned back into n_mels bands,

    logmel_k <- logmel_k @ D_K D_K^T                                   D_K: (n_mels, K) DCT basis, rank K

which keeps the spectral envelope (the formants, what K MFCCs carry) and drops the fine ripple of resolved
harmonics in the low bands: the voice's excitation, which differs most between synthesisers and people. It is
a constant linear map per frame, so step and chunk stay exact.

With ``pcen=True`` the log is replaced by per-channel energy normalisation (PCEN; Wang et al. 2017,
"Trainable frontend for robust and far-field keyword spotting"), a causal automatic gain control per band:

    E_k      = P_k @ fbank + floor                                     (n_mels,)     mel energy
    M_k      = (1 - s) M_{k-1} + s E_k,   M_{-1} = E_0                 smoothed energy (carried state)
    pcen_k   = (E_k / (eps + M_k)^alpha + delta)^r - delta^r

The smoother forgets a level in ``PCEN_TIME_CONSTANT`` seconds, so a steady band (room noise, a microphone's
colouring, the gain of a line) settles near the same value whatever its level, and onsets stand out. The
constants are librosa's defaults (alpha 0.98, delta 2, r 0.5, 0.4 s). ``floor`` puts digital silence at the
level of quiet room noise (about -70 dBFS), so a word after exact zeros is an onset of bounded height.

The phase, the frame count and the fitted statistics are :class:`~ssm_signal.frontends.base.FramedFrontend`'s.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
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


@dataclasses.dataclass(frozen=True)
class PcenMelState(LogMelState):
    """LogMelState and PCEN's smoother: smooth (B, n_mels), M of the last frame; primed (B,), 1 once the
    smoother has seen a frame (0 in a fresh or reset state: the first frame then starts it, M_{-1} = E_0)."""

    smooth: Tensor
    primed: Tensor


#: PCEN's constants (librosa's defaults): gain exponent alpha, bias delta, root r, smoother time constant (s)
PCEN_ALPHA, PCEN_DELTA, PCEN_ROOT, PCEN_TIME_CONSTANT = 0.98, 2.0, 0.5, 0.4
#: energy added to every mel band before PCEN: white noise at about -70 dBFS, a quiet room's level
PCEN_FLOOR = 1e-4
#: frames per block of the parallel smoother (a (T, T) decay matrix per block)
PCEN_BLOCK = 64


def pcen_smoothing(hop_length: int, sample_rate: int) -> float:
    """The smoother's coefficient s for a time constant of PCEN_TIME_CONSTANT seconds (librosa's rule)."""
    t_frames = PCEN_TIME_CONSTANT * sample_rate / hop_length
    return (math.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs of half-precision inputs run in float32 (CPU rfft has no half kernels)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class LogMel(FramedFrontend):
    """Causal log-mel spectrogram, (B, L, 1) waveform -> (B, F, n_mels) frames.

    F = ``frames_for(L, phase)`` is the number of frames this chunk completes, possibly 0.
    Defaults: 16 kHz, 25 ms Hann window (n_fft=400), 10 ms hop (160), 40 HTK mel bands
    over 20-7600 Hz, ``log(mel + eps)``; then ``(logmel - mean) / std`` with the buffers
    ``mean``/``std`` (n_mels,) set by :meth:`fit_normalization` (0 and 1 until fitted).
    ``win_length`` < n_fft centres a shorter window in the FFT frame; ``mel_scale="slaney"`` uses librosa's
    Slaney scale and area-normalised triangles; ``clamp`` takes ``log(max(mel, eps))`` in place of the sum (all
    three for :mod:`ssm_signal.frontends.speech_embedding`, whose encoder was trained on such features).

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
        pcen: bool = False,
        cepstra: int = 0,
        win_length: int | None = None,
        mel_scale: str = "htk",
        clamp: bool = False,
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
        if not 0 <= cepstra <= n_mels or (cepstra and pcen):
            raise ValueError(f"LogMel: cepstra must be 0 (off) or 1..n_mels={n_mels}, and smooths the log, so not with "
                             f"pcen; got cepstra={cepstra}, pcen={pcen}")
        win_length = n_fft if win_length is None else win_length
        if not 2 <= win_length <= n_fft or mel_scale not in ("htk", "slaney"):
            raise ValueError(f"LogMel: need 2 <= win_length <= n_fft={n_fft} and mel_scale 'htk' or 'slaney', got "
                             f"{win_length}, {mel_scale!r}")
        super().__init__(n_mels, samples_per_frame=hop_length)
        self.d_model = 1
        self.win_length, self.mel_scale, self.clamp = win_length, mel_scale, clamp
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.eps, self.pcen, self.cepstra = f_min, f_max, eps, pcen, cepstra
        self.pcen_s = pcen_smoothing(hop_length, sample_rate)
        # window and filterbank follow from the config, so they stay out of the state_dict;
        # the fitted statistics (the base's mean and std) do not and are saved with the model
        self.register_buffer("window", self._window(torch.float32), persistent=False)
        # Slaney: librosa's default mel scale with area-normalised triangles, what some pre-trained encoders read
        norm = "slaney" if mel_scale == "slaney" else None
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm=norm,
                                   mel_scale=mel_scale)  # (n_freqs, n_mels)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("lifter", self._lifter(torch.float32), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # rebuild the window at the new dtype: upcasting the float32 one would leave the
        # float64 path with float32-rounded window coefficients
        w = self.window
        self.window = self._window(w.dtype).to(w.device)
        self.lifter = self._lifter(w.dtype).to(w.device)  # the same: built in float64, then rounded once
        return self

    def _window(self, dtype: torch.dtype) -> Tensor:
        """(n_fft,) the periodic Hann window of win_length samples, centred in n_fft (torch.stft's padding)."""
        w = torch.hann_window(self.win_length, periodic=True, dtype=dtype)
        left = (self.n_fft - self.win_length) // 2
        return F.pad(w, (left, self.n_fft - self.win_length - left))

    def _lifter(self, dtype: torch.dtype) -> Tensor:
        """(n_mels, n_mels) D_K D_K^T, the projection onto the first K = cepstra DCT-II basis vectors (empty when
        off)."""
        if not self.cepstra:
            return torch.zeros(0, dtype=dtype)
        # the orthonormal DCT-II basis (torchaudio's create_dct, which builds it in float32 only), in float64
        band = torch.arange(self.n_mels, dtype=torch.float64)[:, None] + 0.5
        dct = torch.cos(math.pi / self.n_mels * band * torch.arange(self.cepstra, dtype=torch.float64))  # (n_mels, K)
        dct[:, 0] /= math.sqrt(2.0)
        dct *= math.sqrt(2.0 / self.n_mels)
        return (dct @ dct.T).to(dtype)

    @property
    def d_output(self) -> int:
        return self.n_mels

    @property
    def centres_hz(self) -> Tensor:
        """(n_mels,) the centre frequency of each band: HTK mel points evenly spaced over f_min..f_max, the
        points ``melscale_fbanks`` builds its triangles on (torchaudio does not return them). HTK scale only."""
        if self.mel_scale != "htk":
            raise ValueError("LogMel.centres_hz: band centres are given for the HTK mel scale only")
        lo, hi = (2595.0 * math.log10(1.0 + f / 700.0) for f in (self.f_min, self.f_max))
        mels = torch.linspace(lo, hi, self.n_mels + 2, dtype=torch.float64)[1:-1]
        return (700.0 * (10.0 ** (mels / 2595.0) - 1.0)).float()

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> LogMelState:
        history = torch.zeros(batch_size, self.n_fft, device=device, dtype=dtype)
        phase = torch.zeros(batch_size, device=device, dtype=torch.int64)
        if not self.pcen:
            return LogMelState(history=history, phase=phase)
        return PcenMelState(history=history, phase=phase,
                            smooth=torch.zeros(batch_size, self.n_mels, device=device, dtype=dtype),
                            primed=torch.zeros(batch_size, device=device, dtype=dtype))

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
        mel = self._frames_to_mel(frame)  # (B, n_mels)
        if self.pcen:  # the smoother reads a frames axis; the log needs none (two graph nodes fewer exported)
            y, state = self._compress(mel[:, None], state, x_t.dtype)
            y = y[:, 0]
        else:
            y, state = self._compress(mel, state, x_t.dtype)
        return self._normalize(y), dataclasses.replace(state, history=frame.to(state.history.dtype))

    def _features(self, x: Tensor, state: LogMelState, phase: int | None = None) -> tuple[Tensor, LogMelState]:
        """Un-normalised log-mel (or PCEN) frames: x (B, L, 1) -> (B, F, n_mels), and the new state."""
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
            y, state = self._compress(self._frames_to_mel(frames), state, x.dtype)
        history = buf[:, -N:].to(state.history.dtype, copy=True)  # a copy, so buf is not kept alive
        return y, dataclasses.replace(state, history=history, phase=torch.full_like(state.phase, (p + L) % H))

    def _frames_to_mel(self, frames: Tensor) -> Tensor:
        """frames (..., n_fft) -> mel energies |rfft(w * frame)|^2 @ fbank, (..., n_mels), in the compute dtype."""
        dt = compute_dtype(frames.dtype)
        return get_op("mel_energy", frames.device)(frames.to(dt), self.window.to(dt), self.n_fft, self.fbank.to(dt))

    def _compress(self, mel: Tensor, state: LogMelState, out_dtype: torch.dtype) -> tuple[Tensor, LogMelState]:
        """Mel energies (B, F >= 1, n_mels) -> log(mel + eps), or PCEN with the carried smoother, as out_dtype.
        The log is per frame and also takes (B, n_mels)."""
        if not self.pcen:
            y = torch.log(mel.clamp_min(self.eps) if self.clamp else mel + self.eps)
            return (y @ self.lifter.to(y.dtype) if self.cepstra else y).to(out_dtype), state
        energy = mel + PCEN_FLOOR
        smooth = pcen_smooth(energy, state.smooth.to(energy.dtype), state.primed.to(energy.dtype), self.pcen_s)
        y = (energy / (self.eps + smooth) ** PCEN_ALPHA + PCEN_DELTA) ** PCEN_ROOT - PCEN_DELTA**PCEN_ROOT
        return y.to(out_dtype), dataclasses.replace(state, smooth=smooth[:, -1].to(state.smooth.dtype),
                                                    primed=torch.ones_like(state.primed))


def pcen_smooth(energy: Tensor, smooth: Tensor, primed: Tensor, s: float) -> Tensor:
    """PCEN's smoother over a chunk: energy E (B, F >= 1, n_mels), smooth M_{-1} (B, n_mels), primed (B,) ->
    M (B, F, n_mels) with M_k = (1 - s) M_{k-1} + s E_k; an unprimed stream starts from M_{-1} = E_0.

    Exact in blocks of PCEN_BLOCK frames: inside a block M = a^(k+1) M_in + s * sum_{j<=k} a^(k-j) E_j
    (a = 1 - s), one (T, T) lower-triangular matmul, then the block's last M carries on. One frame at a
    time this is the recurrence itself, so a step and a chunk compute the same M.
    """
    a = 1.0 - s
    m = torch.where(primed[:, None] > 0, smooth, energy[:, 0])
    if energy.shape[1] == 1:  # a step: the recurrence itself (the block form below, for T = 1)
        return (a * m + s * energy[:, 0])[:, None]
    # one decay matrix a^(k-j) (j <= k) and one carry a^(k+1) for every block; a shorter last block reads their corner
    k = torch.arange(min(energy.shape[1], PCEN_BLOCK), device=energy.device, dtype=energy.dtype)
    lag = k[:, None] - k[None, :]
    decay = torch.where(lag >= 0, a ** lag.clamp(min=0), torch.zeros((), dtype=energy.dtype, device=energy.device))
    carry = a ** (k + 1)
    out = []
    for start in range(0, energy.shape[1], PCEN_BLOCK):
        e = energy[:, start:start + PCEN_BLOCK]
        T = e.shape[1]
        block = carry[None, :T, None] * m[:, None] + s * (decay[:T, :T] @ e)
        out.append(block)
        m = block[:, -1]
    return out[0] if len(out) == 1 else torch.cat(out, 1)
