"""Waveform augmentations with explicit random generators.

Functional core (plain functions of tensors and numbers, no randomness) and thin random transforms on top
(each draws its parameters from a ``torch.Generator`` handed in), composed by :class:`WaveAugment`:

    aug = WaveAugment([AddNoise.from_folder("data/keywords/_background_noise_"), Gain(), TimeShift(1600),
                       Speed()], seed=0)
    y = aug(x)          # x (L,) or (B, L); each row gets its own draws

Feature masking (SpecAugment) is applied by the training task on the features, with torchaudio's
``FrequencyMasking``/``TimeMasking`` (``pipelines/task.py``); so is :func:`warp_bands`, a vocal-tract
length perturbation of the mel bands.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

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


def warp_bands(feats: torch.Tensor, centres_hz: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Vocal-tract length perturbation of band features (VTLP; Jaitly and Hinton 2013): band m of the
    output reads the input at frequency f_m / alpha, linearly between the two nearest bands (held at
    the edges). alpha > 1 moves the spectral envelope up, as a shorter vocal tract does, without
    changing the timing (the waveform's speed change moves both).

    feats (B, F, n) per-band features, centres_hz (n,) increasing band centres, alpha (B,) -> (B, F, n).
    """
    c = centres_hz.to(feats.device, torch.float32)
    src = (c[None, :] / alpha.to(c)[:, None]).clamp(c[0], c[-1])  # (B, n) Hz
    hi = torch.searchsorted(c, src.contiguous()).clamp(1, len(c) - 1)
    lo = hi - 1
    w = ((src - c[lo]) / (c[hi] - c[lo])).to(feats.dtype)[:, None, :]  # (B, 1, n)
    index = torch.stack([lo, hi])[:, :, None, :].expand(-1, -1, feats.shape[1], -1)  # (2, B, F, n)
    below, above = (feats.gather(2, i) for i in index)
    return below * (1 - w) + above * w


def crop_or_tile(noise: torch.Tensor, length: int, start: int) -> torch.Tensor:
    """``length`` samples of ``noise`` (N,) from ``start``, looping the clip when it is too short."""
    n = noise.shape[-1]
    if n == 0:
        raise ValueError("empty noise clip")
    if n < length + start:
        reps = math.ceil((length + start) / n)
        noise = noise.repeat(reps)
    return noise[start : start + length]


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


class WaveAugment:
    """Apply random waveform transforms in order, reproducibly from a seed.

    Args:
        transforms: callables ``t(wave (L,), generator) -> wave`` (:class:`AddNoise`, :class:`Gain`,
            :class:`TimeShift`, :class:`Speed`, or your own).
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
