"""A frozen speech embedding as the audio frontend: log-mel frames through a convolutional encoder pre-trained on
real speech, one 96-dimensional vector every 80 ms.

The encoder is Google's speech embedding (Lin et al. 2020, "Training keyword spotters with limited and synthesized
speech data", arXiv:2002.01322), trained on a large corpus of people's speech; a keyword model trained on generated
voices on top of it inherits what it learned about real voices, which no generated corpus here can teach (the
openWakeWord recipe). Its weights come from a package (pipelines/pretrained.py fetches and converts them; their
licence is in docs/data.md); this module is the network, written from its published graph.

Features (the encoder's input, 16 kHz audio in [-1, 1]):

    frame_k  = x[(k+1)H - N : (k+1)H]            H = 160, N = 512                  causal, as LogMel
    P_k      = |rfft(w * frame_k)|^2              w: periodic Hann of 400, centred in 512
    v_k      = log10(max(32767^2 P_k @ fbank, 1e-10)) + 2                      (32,)  fbank: Slaney mel, 60-3800 Hz

which is 10 log10 of the power of the int16-scaled signal, divided by 10, plus 2: the scaling the encoder was
converted with. Digital silence gives v = -8.

The encoder reads 76 frames (0.775 s with the window) and is a stack of (3 x 1) time and (1 x 3) frequency
convolutions, each followed by max(leaky_relu(., 0.2), -0.4), and five max-pools, three of which halve time. Its
time stride is therefore 8 frames: applied to 76 + 8(n - 1) frames it gives the n embeddings of the windows ending
every 8 frames, so a chunk runs the encoder once over all its windows (training runs it over whole clips).

Streaming: the state carries the log-mel stage's last N samples and the last 75 frames (as v + 8, so a zero
state is silence, and ``reset`` zeroes a stream back to it); an embedding is emitted whenever a block of 8 frames
(``samples_per_frame`` = 1280 samples) completes. ``step`` takes 1280 samples and gives one embedding; any split
of a waveform into chunks gives exactly the embeddings of the whole (tests check it).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_signal.frontends.base import FramedFrontend, check_aligned, read_phase
from ssm_signal.frontends.logmel import LogMel, LogMelState
from ssm_signal.state import State
from ssm_signal.validation import check_step

#: mel frames the encoder reads, frames per embedding (its time stride), mel bands, embedding width
WINDOW, STRIDE, N_MELS, D_EMBED = 76, 8, 32, 96
#: the encoder's log-mel: 16 kHz, 32 ms FFT over a 25 ms window, 10 ms hop, 32 Slaney bands over 60-3800 Hz
SAMPLE_RATE, N_FFT, WIN_LENGTH, HOP = 16000, 512, 400, 160
#: samples per embedding (80 ms)
SAMPLES_PER_EMBEDDING = STRIDE * HOP
F_MIN, F_MAX = 60.0, 3800.0
#: v = log10(max(INT16^2 * mel, FLOOR)) + 2, the scaling the encoder's inputs were made with
INT16, FLOOR, OFFSET = 32767.0, 1e-10, 2.0
#: v of digital silence; frames are kept in the state as v - SILENCE, so a zero state is silence
SILENCE = math.log10(FLOOR) + OFFSET

#: (in, out, kernel over (time, frequency)) of the 20 convolutions, and the max-pool after some of them
CONVS: tuple[tuple[int, int, tuple[int, int]], ...] = (
    (1, 24, (3, 3)), (24, 24, (1, 3)), (24, 24, (3, 1)),
    (24, 48, (1, 3)), (48, 48, (3, 1)), (48, 48, (1, 3)), (48, 48, (3, 1)),
    (48, 72, (1, 3)), (72, 72, (3, 1)), (72, 72, (1, 3)), (72, 72, (3, 1)),
    (72, 96, (1, 3)), (96, 96, (3, 1)), (96, 96, (1, 3)), (96, 96, (3, 1)),
    (96, 96, (1, 3)), (96, 96, (3, 1)), (96, 96, (1, 3)), (96, 96, (3, 1)),
    (96, 96, (3, 1)),
)
POOLS: dict[int, tuple[int, int]] = {2: (2, 2), 6: (1, 2), 10: (2, 2), 14: (1, 2), 18: (2, 2)}
#: the activation's slope below zero and its floor
LEAK, ACT_FLOOR = 0.2, -0.4


class SpeechEncoder(nn.Module):
    """The convolutional encoder: v frames (B, T, 32), T = 76 + 8(n - 1) -> embeddings (B, n, 96).

    Time is never padded (each output sees exactly its 76 frames); frequency is padded by one band on each side
    of a 3-wide kernel. The last convolution has no bias and no activation. Parameter names follow ``CONVS``:
    ``convs.{i}.weight`` (out, in, kt, kf) and ``convs.{i}.bias``.
    """

    def __init__(self):
        super().__init__()
        last = len(CONVS) - 1
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, k, padding=(0, k[1] // 2), bias=i != last) for i, (c_in, c_out, k) in enumerate(CONVS)
        )

    def forward(self, v: Tensor) -> Tensor:
        if v.shape[1] < WINDOW or (v.shape[1] - WINDOW) % STRIDE:
            raise ValueError(f"SpeechEncoder needs 76 + 8(n - 1) frames, got {v.shape[1]}")
        h = v[:, None]  # (B, 1, T, 32): channels, time, frequency
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < last:
                h = F.leaky_relu(h, LEAK).clamp_min(ACT_FLOOR)
            if i in POOLS:
                h = F.max_pool2d(h, POOLS[i])
        return h[..., 0].transpose(1, 2)  # (B, 96, n, 1) -> (B, n, 96)


@dataclasses.dataclass(frozen=True)
class SpeechEmbeddingState(State):
    """history: (B, 512), the log-mel stage's last samples (times 32767); frames: (B, 75, 32), the last 75 frames as v - SILENCE,
    oldest first; phase: (B,) int64, samples seen mod 1280 (equal for all streams of a batch)."""

    history: Tensor
    frames: Tensor
    phase: Tensor


class SpeechEmbedding(FramedFrontend):
    """Causal speech-embedding frontend, (B, L, 1) 16 kHz waveform -> (B, F, 96) embeddings, one per 1280 samples.

    The encoder's weights are frozen buffers' worth of parameters (``requires_grad`` off): training fits the SSM
    above it, and ``mean``/``std`` (96,) standardise its output as for every frontend. A new module holds random
    weights; pipelines/pretrained.py loads the pre-trained ones before training, and a bundle carries them.
    """

    def __init__(self):
        super().__init__(D_EMBED, samples_per_frame=SAMPLES_PER_EMBEDDING)
        self.d_model = 1
        # the log-mel stage reads the signal scaled to int16's range, so that its floor is the encoder's 1e-10 (a
        # floor of 1e-10 / 32767^2 on the unscaled power is 1e-19, which graph optimisers take for zero); the floor
        # is a clamp, as the features the encoder was trained on (a sum differs below about 1e-9)
        self.mel = LogMel(SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, f_min=F_MIN, f_max=F_MAX,
                          eps=FLOOR, win_length=WIN_LENGTH, mel_scale="slaney", clamp=True)
        self.encoder = SpeechEncoder()
        self.encoder.requires_grad_(False)

    @property
    def d_output(self) -> int:
        return D_EMBED

    def init_state(self, batch_size: int, *, device=None, dtype: torch.dtype = torch.float32) -> SpeechEmbeddingState:
        return SpeechEmbeddingState(
            history=torch.zeros(batch_size, N_FFT, device=device, dtype=dtype),
            frames=torch.zeros(batch_size, WINDOW - 1, N_MELS, device=device, dtype=dtype),
            phase=torch.zeros(batch_size, device=device, dtype=torch.int64),
        )

    # -- public, checked ---------------------------------------------------------------------
    def step(self, x_t: Tensor, state: SpeechEmbeddingState | None = None) -> tuple[Tensor, SpeechEmbeddingState]:
        """1280 samples in, one embedding out: x_t (B, 1280) -> y_t (B, 96). Needs phase 0."""
        check_step(x_t, self.samples_per_frame)
        state = self._prepare_state(state, x_t)
        check_aligned(state.phase, "SpeechEmbedding.step", "aligned to 1280 samples", "blocks")
        return self._step(x_t, state)

    # -- unchecked ---------------------------------------------------------------------------
    def _as_stream(self, batch: Tensor) -> Tensor:
        """Raw audio to fit on, (B, L, 1), (B, L) or (L,) -> (B, L, 1): as the log-mel stage reads it."""
        return self.mel._as_stream(batch)

    def _step(self, x_t: Tensor, state: SpeechEmbeddingState) -> tuple[Tensor, SpeechEmbeddingState]:
        """x_t (B, 1280) at phase 0 (unchecked; nothing read from the device) -> y_t (B, 96)."""
        y, state = self._forward(x_t[:, :, None], state, 0)
        return y[:, 0], state

    def _features(self, x: Tensor, state: SpeechEmbeddingState,
                  phase: int | None = None) -> tuple[Tensor, SpeechEmbeddingState]:
        """Embeddings this chunk completes: x (B, L, 1) -> (B, F, 96), F = (phase + L) // 1280."""
        B, L, _ = x.shape
        p = read_phase(state.phase, self.samples_per_frame, type(self).__name__) if phase is None else phase
        mel_state = LogMelState(history=state.history, phase=torch.full_like(state.phase, p % HOP))
        logmel, mel_state = self.mel._features(x * INT16, mel_state, p % HOP)  # (B, m, 32): ln(max(mel, FLOOR))
        v = logmel / math.log(10.0) + (OFFSET - SILENCE)  # v - SILENCE
        seq = torch.cat([state.frames.to(v.dtype), v], dim=1)  # (B, 75 + m, 32)
        n = (p + L) // self.samples_per_frame
        if n == 0:
            y = x.new_zeros(B, 0, D_EMBED)
        else:
            # the first window ends with the frame that completes the current block: q frames of it came before
            q = p // HOP
            start = STRIDE - 1 - q
            window = seq[:, start:start + WINDOW + STRIDE * (n - 1)] + SILENCE
            y = self.encoder(window.to(self.encoder.convs[0].weight.dtype)).to(x.dtype)
        new = SpeechEmbeddingState(history=mel_state.history, frames=seq[:, -(WINDOW - 1):].to(state.frames.dtype),
                                   phase=torch.full_like(state.phase, (p + L) % self.samples_per_frame))
        return y, new
