"""Waveform and feature augmentations with explicit random generators.

Functional core (plain functions of tensors and numbers, no randomness) and thin random transforms on top
(each draws its parameters from a ``torch.Generator`` handed in), composed by :class:`WaveAugment`:

    aug = WaveAugment([AddNoise.from_folder("data/keywords/_background_noise_"), Gain(), TimeShift(1600),
                       Speed()], seed=0)
    y = aug(x)          # x (L,) or (B, L); each row gets its own draws

SpecAugment (Park et al., 2019, "SpecAugment: a simple data augmentation method for ASR") masks bands of
mel channels and runs of frames on features: :func:`mask_features` / :class:`SpecAugment`. The masking
policy is torchaudio's ``FrequencyMasking``/``TimeMasking`` with ``iid_masks=True`` (width uniform in
[0, max_width), start uniform over the remaining positions), re-implemented here because torchaudio draws
from the global RNG and this module's contract is determinism from a seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torchaudio.functional as AF

from ssm_signal.data.audio_io import AUDIO_EXTENSIONS, fix_length, read_audio, resample
from ssm_signal.data.skips import DataError, SkipLog

log = logging.getLogger("ssm_signal.data")

_EPS = 1e-12


# ----------------------------------------------------------------------------------------------------------
# functional core


def power(x: torch.Tensor) -> torch.Tensor:
    """Mean square over the last axis: (..., L) -> (...)."""
    return x.double().pow(2).mean(dim=-1).to(x.dtype)


def measure_snr(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """10 log10(P_signal / P_noise) in dB over the last axis: (..., L), (..., L) -> (...)."""
    ps, pn = signal.double().pow(2).mean(-1), noise.double().pow(2).mean(-1)
    return (10 * torch.log10(ps.clamp_min(_EPS) / pn.clamp_min(_EPS))).to(signal.dtype)


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr_db: float | torch.Tensor) -> torch.Tensor:
    """Add ``noise`` scaled so that 10 log10(P_signal / P_scaled_noise) = ``snr_db``.

    Powers are means over the whole clip (the definition torchaudio's ``add_noise`` uses). A silent
    signal stays silent (no SNR can be met); silent noise adds nothing.

    Args:
        signal: (..., L).
        noise: (..., L), broadcastable to signal.
        snr_db: a float or a (...) tensor of per-row SNRs in dB.

    Returns:
        (..., L) ``signal + g * noise``.
    """
    snr = torch.as_tensor(snr_db, dtype=torch.float64, device=signal.device)
    ps = signal.double().pow(2).mean(-1)
    pn = noise.double().pow(2).mean(-1)
    # pn == 0 gives g = 0 (not inf): silent noise is a no-op rather than NaNs downstream.
    g = torch.where(pn > 0, torch.sqrt(ps / (pn.clamp_min(_EPS) * 10 ** (snr / 10))), torch.zeros_like(pn))
    return signal + (g.unsqueeze(-1) * noise.double()).to(signal.dtype)


def apply_gain(wave: torch.Tensor, gain_db: float | torch.Tensor) -> torch.Tensor:
    """Scale by 10^(gain_db / 20): (..., L) with a float or (...) gains."""
    g = 10 ** (torch.as_tensor(gain_db, dtype=wave.dtype, device=wave.device) / 20)
    return wave * (g.unsqueeze(-1) if g.dim() else g)


def time_shift(wave: torch.Tensor, shift: int, fill: str = "zeros") -> torch.Tensor:
    """Move the waveform ``shift`` samples later (earlier if negative), keeping its length.

    Args:
        wave: (..., L).
        shift: samples; positive delays.
        fill: ``"zeros"`` pads the vacated samples with silence; ``"roll"`` wraps them around.
    """
    if fill == "roll":
        return torch.roll(wave, shifts=int(shift), dims=-1)
    if fill != "zeros":
        raise ValueError(f"fill must be 'zeros' or 'roll', got {fill!r}")
    n, s = wave.shape[-1], int(shift)
    if abs(s) >= n:
        return torch.zeros_like(wave)
    if s >= 0:
        return torch.nn.functional.pad(wave[..., : n - s], (s, 0))
    return torch.nn.functional.pad(wave[..., -s:], (0, -s))


def change_speed(wave: torch.Tensor, factor: float) -> torch.Tensor:
    """Play ``factor`` times faster, by resampling (tempo and pitch both change, like a tape).

    The factor is quantised to 1/100 so that the resampling ratio stays a small fraction
    (a short sinc kernel); this is the Kaldi/ESPnet "speed perturbation".

    Args:
        wave: (..., L).
        factor: > 0; 1.1 means 10% faster and 10% shorter.

    Returns:
        (..., ceil(L / factor)) at the same sample rate.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    num = max(1, round(factor * 100))
    if num == 100:
        return wave
    # Treat the samples as if recorded at factor * sr, then convert to sr.
    return resample(wave, num, 100)


def shift_pitch(wave: torch.Tensor, semitones: float, n_fft: int = 512, hop_length: int = 128) -> torch.Tensor:
    """Shift pitch by ``semitones`` keeping duration: phase-vocoder stretch, then :func:`change_speed`.

    torchaudio's ``pitch_shift`` resamples by ratios like 16951/16000 whose sinc kernels are enormous; the
    pitch ratio here is quantised to 1/100 (about 17 cents near unison), which keeps resampling cheap.

    Args:
        wave: (..., L).
        semitones: positive raises the pitch.

    Returns:
        (..., L).
    """
    num = max(1, round(100 * 2 ** (semitones / 12)))
    if num == 100:
        return wave
    r = num / 100
    n = wave.shape[-1]
    window = torch.hann_window(n_fft, device=wave.device, dtype=wave.dtype)
    flat = wave.reshape(-1, n)
    spec = torch.stft(flat, n_fft, hop_length, window=window, return_complex=True, center=True)
    advance = torch.linspace(0, math.pi * hop_length, spec.shape[-2], device=wave.device, dtype=wave.dtype)
    # rate < 1 slows down: the stretched clip is r times longer at the same pitch ...
    stretched = AF.phase_vocoder(spec, rate=1 / r, phase_advance=advance.unsqueeze(-1))
    longer = torch.istft(stretched, n_fft, hop_length, window=window, length=round(n * r))
    # ... and playing it r times faster restores the length and raises the pitch by r.
    out = fix_length(change_speed(longer, r), n)
    return out.reshape(wave.shape)


def crop_or_tile(noise: torch.Tensor, length: int, start: int) -> torch.Tensor:
    """``length`` samples of ``noise`` (N,) from ``start``, looping the clip when it is too short."""
    n = noise.shape[-1]
    if n == 0:
        raise ValueError("empty noise clip")
    if n < length + start:
        reps = math.ceil((length + start) / n)
        noise = noise.repeat(reps)
    return noise[start : start + length]


def mask_features(
    features: torch.Tensor,
    generator: torch.Generator | None = None,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 20,
    mask_value: float = 0.0,
) -> torch.Tensor:
    """SpecAugment: set random bands of channels and runs of frames to ``mask_value``.

    Args:
        features: (T, F) or (B, T, F), time-major like the library's frontends' outputs.
        generator: CPU generator for the draws (None: the global RNG).
        freq_masks, freq_width: how many channel bands, each of width uniform in [0, freq_width).
        time_masks, time_width: how many frame runs, each of length uniform in [0, time_width).

    Returns:
        A masked copy, same shape; each batch row gets its own masks.
    """
    squeeze = features.dim() == 2
    x = features.unsqueeze(0) if squeeze else features
    if x.dim() != 3:
        raise ValueError(f"features must be (T, F) or (B, T, F), got {tuple(features.shape)}")
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    for axis, count, width, size in ((2, freq_masks, freq_width, f), (1, time_masks, time_width, t)):
        if count <= 0 or width <= 0:
            continue
        w = (torch.rand(b, count, generator=generator) * min(width, size)).floor()
        start = (torch.rand(b, count, generator=generator) * (size - w)).floor()
        pos = torch.arange(size).view(1, 1, size)
        hit = ((pos >= start.unsqueeze(-1)) & (pos < (start + w).unsqueeze(-1))).any(dim=1)  # (B, size)
        keep &= ~hit.unsqueeze(1) if axis == 2 else ~hit.unsqueeze(2)
    out = torch.where(keep.to(x.device), x, torch.as_tensor(mask_value, dtype=x.dtype, device=x.device))
    return out.squeeze(0) if squeeze else out


# ----------------------------------------------------------------------------------------------------------
# random transforms: each is ``t(wave (L,), generator) -> wave``


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g))


class AddNoise:
    """Mix a random crop of a random noise clip at an SNR uniform in ``snr_db``.

    Args:
        noises: 1-D waveforms at the data's sample rate (clips shorter than the input are looped).
        snr_db: (low, high) dB.
        p: probability of applying.
    """

    def __init__(self, noises: Sequence[torch.Tensor], snr_db: tuple[float, float] = (5.0, 30.0), p: float = 1.0):
        self.noises = [torch.as_tensor(n, dtype=torch.float32).reshape(-1) for n in noises]
        self.noises = [n for n in self.noises if n.numel() > 0]
        if not self.noises:
            raise ValueError("AddNoise needs at least one non-empty noise clip")
        self.snr_db, self.p = snr_db, p

    @classmethod
    def from_folder(
        cls, folder: str | Path, sample_rate: int = 16000, skips: SkipLog | None = None, **kwargs
    ) -> AddNoise:
        """Load every audio file of ``folder`` (e.g. Speech Commands' ``_background_noise_``)."""
        folder = Path(folder)
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS) if folder.is_dir() else []
        skips = skips if skips is not None else SkipLog()
        noises = []
        for f in files:
            try:
                noises.append(read_audio(f, sample_rate))
            except DataError as e:
                skips.add(str(f), f"unreadable: {e}")
        if not noises:
            raise DataError(f"{folder}: no readable noise clips ({skips.summary()})")
        return cls(noises, **kwargs)

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        noise = self.noises[int(torch.randint(len(self.noises), (), generator=g))]
        n = wave.shape[-1]
        start = int(torch.randint(max(1, noise.shape[-1] - n + 1), (), generator=g))
        crop = crop_or_tile(noise, n, start).to(wave.device, wave.dtype)
        return mix_at_snr(wave, crop, _uniform(*self.snr_db, g))


class Gain:
    """Scale by a gain uniform in ``db`` (dB)."""

    def __init__(self, db: tuple[float, float] = (-6.0, 6.0), p: float = 1.0):
        self.db, self.p = db, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        return apply_gain(wave, _uniform(*self.db, g))


class TimeShift:
    """Shift by an integer uniform in [-max_shift, max_shift] samples (see :func:`time_shift`)."""

    def __init__(self, max_shift: int = 1600, fill: str = "zeros", p: float = 1.0):
        self.max_shift, self.fill, self.p = int(max_shift), fill, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p or self.max_shift == 0:
            return wave
        s = int(torch.randint(-self.max_shift, self.max_shift + 1, (), generator=g))
        return time_shift(wave, s, self.fill)


class Speed:
    """Speed perturbation by a factor uniform in ``factors`` (see :func:`change_speed`).

    ``keep_length`` crops/zero-pads back to the input length so that batches stay rectangular.
    """

    def __init__(self, factors: tuple[float, float] = (0.9, 1.1), keep_length: bool = True, p: float = 1.0):
        self.factors, self.keep_length, self.p = factors, keep_length, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        out = change_speed(wave, _uniform(*self.factors, g))
        return fix_length(out, wave.shape[-1], mode="center") if self.keep_length else out


class PitchShift:
    """Pitch shift by ``semitones`` uniform in the range, duration kept (see :func:`shift_pitch`)."""

    def __init__(self, semitones: tuple[float, float] = (-2.0, 2.0), p: float = 1.0):
        self.semitones, self.p = semitones, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        return shift_pitch(wave, _uniform(*self.semitones, g))


class WaveAugment:
    """Apply random waveform transforms in order, reproducibly from a seed.

    Args:
        transforms: callables ``t(wave (L,), generator) -> wave`` (:class:`AddNoise`, :class:`Gain`,
            :class:`TimeShift`, :class:`Speed`, :class:`PitchShift`, or your own).
        seed: seeds the generator; the same seed and the same call sequence give the same outputs.

    Input (L,) or (B, L); a batch is augmented row by row, each row with its own draws (transforms that
    change length need ``keep_length`` for batches). In DataLoader workers the generator is reseeded from
    ``(seed, worker seed)`` on first use in each worker: otherwise every worker would replay the same
    draws, and (with non-persistent workers) every epoch too. The worker seed comes from the loader's
    base seed, so a seeded loader stays reproducible.
    """

    def __init__(self, transforms: Sequence, seed: int = 0):
        self.transforms = list(transforms)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._worker_seed: int | None = None

    @classmethod
    def for_dataset(cls, root: str | Path, sample_rate: int = 16000, seed: int = 0, channel=None) -> WaveAugment:
        """The training recipe for a Speech Commands-layout tree: noise from ``<root>/_background_noise_``
        at 5-30 dB SNR (80% of clips), gain +-6 dB, time shift +-100 ms, speed 0.9-1.1 (half the clips).

        ``channel`` (a :class:`ssm_signal.data.channel.ChannelConfig`) adds the acoustic channel: its room
        before the noise, its microphone, band and codec after the other steps.

        Without readable background noise, the noise step is left out with a logged warning (the other
        transforms still apply) rather than failing the run.
        """
        transforms: list = list(channel.room(sample_rate)) if channel is not None else []
        try:
            transforms.append(AddNoise.from_folder(Path(root) / "_background_noise_", sample_rate, p=0.8))
        except DataError as e:
            log.warning("augmentation without noise: %s", e)
        transforms += [Gain(), TimeShift(sample_rate // 10), Speed(p=0.5)]
        if channel is not None:
            transforms += channel.line(sample_rate)
        return cls(transforms, seed=seed)

    def reset(self, seed: int | None = None) -> None:
        """Restart the draws (from ``seed`` if given)."""
        if seed is not None:
            self.seed = int(seed)
        self.generator.manual_seed(self.seed)
        self._worker_seed = None

    def _maybe_reseed_for_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            self.generator.manual_seed((self.seed * 1_000_003 + info.seed) % (2**63))

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        self._maybe_reseed_for_worker()
        if wave.dim() == 1:
            return self._one(wave)
        if wave.dim() != 2:
            raise ValueError(f"WaveAugment wants (L,) or (B, L), got {tuple(wave.shape)}")
        return torch.stack([self._one(w) for w in wave])

    def _one(self, wave: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            wave = t(wave, self.generator)
        return wave

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms)
        return f"WaveAugment([{names}], seed={self.seed})"


class SpecAugment(torch.nn.Module):
    """Feature masking module around :func:`mask_features`, active only in training mode.

    Args:
        freq_masks, freq_width, time_masks, time_width: see :func:`mask_features`.
        seed: seeds the module's own CPU generator.

    Input/output: (B, T, F) or (T, F).
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 20, seed: int = 0):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.generator = torch.Generator().manual_seed(int(seed))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        return mask_features(
            features, self.generator, self.freq_masks, self.freq_width, self.time_masks, self.time_width
        )
