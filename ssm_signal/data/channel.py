"""Acoustic-channel augmentations: room, microphone colouring, band limits, telephone lines, codecs.

Issue 16: a keyword model trained on clean wide-band clips falls from 98% to about 50% when the audio
passes through a 4 kHz channel (a telephone), and it has never heard a room. These transforms put the
training clips through such channels. Like :mod:`ssm_signal.data.augment` (whose :class:`WaveAugment`
composes them): a functional core of plain functions without randomness, and thin random transforms
``t(wave (L,), generator) -> wave`` that draw their parameters from the generator handed in.

Filters are zero-phase gain curves applied in the frequency domain of the whole clip
(:func:`apply_response`): exact where a test can check them (nothing passes above a low-pass cut-off)
and cheap (one FFT pair per clip). The curves are smooth, so their impulse responses are short and the
circular wrap-around of a whole-clip FFT touches only the clip's first and last milliseconds, where the
clips of the keyword set are padding.

Reverberation is a synthetic impulse response: a direct path followed by exponentially decaying
Gaussian noise that falls by 60 dB in RT60 (Polack's statistical model of a room's late reverberation).
A room simulator (pyroomacoustics' image-source method) would add early reflections from a drawn
geometry, a dependency and several times the CPU per clip in the loader workers of a 2-core machine;
what the keyword model has to learn to ignore is the smearing of the word over 0.1-0.8 s, which the
statistical tail gives.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable

import soundfile as sf
import torch
import torchaudio.functional as AF

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data.augment import Gain, _uniform
from ssm_signal.frontends.resample import resample

# ----------------------------------------------------------------------------------------------------------
# functional core


def apply_response(wave: torch.Tensor, sample_rate: int, gain: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Filter by a zero-phase amplitude response: ``gain(f)`` maps frequencies (Hz, float64) to linear
    gains. (..., L) -> (..., L)."""
    n = wave.shape[-1]
    spec = torch.fft.rfft(wave.double(), dim=-1)
    f = torch.fft.rfftfreq(n, 1 / sample_rate, dtype=torch.float64)
    return torch.fft.irfft(spec * gain(f), n=n, dim=-1).to(wave.dtype)


def band_limit(wave: torch.Tensor, sample_rate: int, low_hz: float = 0.0, high_hz: float | None = None,
               taper_hz: float = 100.0) -> torch.Tensor:
    """Keep ``low_hz``..``high_hz``: exactly nothing passes outside the band; a raised-cosine taper of
    ``taper_hz`` inside each edge keeps the response from ringing. (..., L) -> (..., L)."""
    high = sample_rate / 2 if high_hz is None else min(high_hz, sample_rate / 2)
    if not 0 <= low_hz < high:
        raise ValueError(f"band {low_hz}-{high_hz} Hz is empty at {sample_rate} Hz")

    def gain(f: torch.Tensor) -> torch.Tensor:
        g = torch.ones_like(f)
        if high < sample_rate / 2:
            g = g * ((high - f) / taper_hz).clamp(0, 1)
        if low_hz > 0:
            g = g * ((f - low_hz) / taper_hz).clamp(0, 1)
        return 0.5 - 0.5 * torch.cos(math.pi * g)

    return apply_response(wave, sample_rate, gain)


def colour(wave: torch.Tensor, sample_rate: int, low_shelf_hz: float, low_db: float, high_shelf_hz: float,
           high_db: float, peak_hz: float, peak_db: float, peak_octaves: float) -> torch.Tensor:
    """A microphone's or a loudspeaker's colouring: a low shelf (``low_db`` below ``low_shelf_hz``), a high
    shelf (``high_db`` above ``high_shelf_hz``), both with a one-octave transition, and a Gaussian
    resonance of ``peak_db`` at ``peak_hz``, ``peak_octaves`` wide (standard deviation), on a log-frequency
    axis. (..., L) -> (..., L)."""

    def gain(f: torch.Tensor) -> torch.Tensor:
        octave = torch.log2(f.clamp_min(1.0))
        db = (low_db * torch.sigmoid(4 * (math.log2(low_shelf_hz) - octave))
              + high_db * torch.sigmoid(4 * (octave - math.log2(high_shelf_hz)))
              + peak_db * torch.exp(-0.5 * ((octave - math.log2(peak_hz)) / peak_octaves) ** 2))
        return 10 ** (db / 20)

    return apply_response(wave, sample_rate, gain)


def exponential_ir(noise: torch.Tensor, sample_rate: int, rt60: float, drr_db: float) -> torch.Tensor:
    """A room impulse response (N,) from Gaussian ``noise`` (N,): a unit direct path at 0, then the noise
    decaying by 60 dB over ``rt60`` seconds, scaled so that the direct-to-reverberant energy ratio is
    ``drr_db``."""
    t = torch.arange(1, noise.shape[0] + 1, dtype=torch.float64) / sample_rate
    tail = noise.double() * torch.exp(-3 * math.log(10) * t / rt60)  # 10^(-3 t / rt60): -60 dB at rt60
    tail = tail * math.sqrt(10 ** (-drr_db / 10) / tail.pow(2).sum().clamp_min(1e-12))
    return torch.cat([torch.ones(1, dtype=torch.float64), tail[:-1]])


def reverberate(wave: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Convolve with ``ir`` (N,) and keep the first L samples (the direct path keeps its timing), at the
    input's peak level. (L,) -> (L,)."""
    n = wave.shape[-1]
    size = 1 << (n + ir.shape[-1] - 2).bit_length()  # a power of two >= the full convolution: a fast FFT
    wet = torch.fft.irfft(torch.fft.rfft(wave.float(), size) * torch.fft.rfft(ir.float(), size), size)[..., :n]
    peak_in, peak_out = wave.abs().max(), wet.abs().max()
    return (wet * (peak_in / peak_out) if peak_out > 0 else wet).to(wave.dtype)


def gsm(wave: torch.Tensor) -> torch.Tensor:
    """Round trip through the GSM 06.10 full-rate codec (the 13 kbit/s codec of GSM phones and of many
    VoIP prompt sets), by libsndfile's encoder: (L,) at 8 kHz -> (L,), clipped to [-1, 1]."""
    buf = io.BytesIO()
    sf.write(buf, wave.clamp(-1, 1).double().numpy(), 8000, format="WAV", subtype="GSM610")
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return torch.from_numpy(out[: wave.shape[-1]]).to(wave.dtype)  # the codec pads to whole 160-sample frames


def telephone(wave: torch.Tensor, sample_rate: int, codec: str | None = None) -> torch.Tensor:
    """A telephone line: the 300-3400 Hz band, sampled at 8 kHz, through ``codec`` ('mu-law', 'gsm' or
    None) and back to ``sample_rate``, as a call recorded at the far end. (L,) -> (L,)."""
    narrow = _to_line_rate(band_limit(wave, sample_rate, 300.0, 3400.0), sample_rate)
    if codec == "mu-law":
        narrow = mu_law(narrow)
    elif codec == "gsm":
        narrow = gsm(narrow)
    elif codec is not None:
        raise ValueError(f"codec must be 'mu-law', 'gsm' or None, got {codec!r}")
    return _from_line_rate(narrow, sample_rate, wave.shape[-1])


LINE_RATE = 8000  # a telephone line's sample rate


def _to_line_rate(band: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(L,) holding nothing above 3400 Hz -> (ceil(L * 8000 / sample_rate),). At a multiple of 8 kHz the band
    is already below the line's Nyquist frequency, so keeping every k-th sample aliases nothing; that is
    about 5 times cheaper than the resampler's filter, which dominated the cost of a training clip."""
    if sample_rate % LINE_RATE == 0:
        return band[..., :: sample_rate // LINE_RATE].contiguous()
    return resample(band, sample_rate, LINE_RATE)


def _from_line_rate(narrow: torch.Tensor, sample_rate: int, n: int) -> torch.Tensor:
    """(M,) at 8 kHz -> (n,) at ``sample_rate``: band-limited (FFT) interpolation at a multiple of 8 kHz,
    the resampler otherwise. The line carries nothing above 4 kHz, and neither does the result."""
    if sample_rate % LINE_RATE:
        return resample(narrow, LINE_RATE, sample_rate)[..., :n]
    k = sample_rate // LINE_RATE
    m = narrow.shape[-1]
    spec = torch.fft.rfft(narrow.double(), dim=-1)
    if m % 2 == 0:  # the Nyquist bin of an even-length line is shared by +-4 kHz: halve it so both sides keep half
        spec[..., -1] *= 0.5
    return (torch.fft.irfft(spec, n=m * k, dim=-1) * k)[..., :n].to(narrow.dtype)


def mu_law(wave: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round trip through ``bits``-bit mu-law (G.711's companding at 8 bits): input clipped to [-1, 1]."""
    channels = 2**bits
    code = AF.mu_law_encoding(wave.clamp(-1, 1), channels)
    return AF.mu_law_decoding(code, channels).to(wave.dtype)


# ----------------------------------------------------------------------------------------------------------
# random transforms: each is ``t(wave (L,), generator) -> wave``


class BandLimit:
    """A band-limited channel: with probability ``telephone`` a telephone line (:func:`telephone`: the
    300-3400 Hz band at 8 kHz, of which ``gsm`` through GSM 06.10 and ``mu_law`` through 8-bit mu-law),
    otherwise a low-pass at a cut-off uniform in ``cutoff_hz``."""

    def __init__(self, sample_rate: int = 16000, cutoff_hz: tuple[float, float] = (3400.0, 8000.0),
                 telephone: float = 0.4, p: float = 1.0, gsm: float = 0.0, mu_law: float = 0.0):
        self.sample_rate, self.cutoff_hz, self.telephone, self.p = sample_rate, cutoff_hz, telephone, p
        self.gsm, self.mu_law = gsm, mu_law

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        if torch.rand((), generator=g) < self.telephone:
            u = torch.rand((), generator=g)
            codec = "gsm" if u < self.gsm else "mu-law" if u < self.gsm + self.mu_law else None
            return telephone(wave, self.sample_rate, codec)
        return band_limit(wave, self.sample_rate, 0.0, _uniform(*self.cutoff_hz, g))


class Colour:
    """Random microphone/EQ colouring (:func:`colour`): shelves of up to ``shelf_db`` and one resonance of
    up to ``peak_db``, either sign."""

    def __init__(self, sample_rate: int = 16000, shelf_db: float = 6.0, peak_db: float = 6.0, p: float = 1.0):
        self.sample_rate, self.shelf_db, self.peak_db, self.p = sample_rate, shelf_db, peak_db, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        s, q = self.shelf_db, self.peak_db
        return colour(wave, self.sample_rate, _uniform(100, 400, g), _uniform(-s, s, g), _uniform(2000, 6000, g),
                      _uniform(-s, s, g), 2 ** _uniform(math.log2(300), math.log2(5000), g), _uniform(-q, q, g),
                      _uniform(0.3, 1.0, g))


class Reverb:
    """Room reverberation (:func:`exponential_ir`) with RT60 uniform in ``rt60`` seconds and a
    direct-to-reverberant ratio uniform in ``drr_db``."""

    def __init__(self, sample_rate: int = 16000, rt60: tuple[float, float] = (0.1, 0.8),
                 drr_db: tuple[float, float] = (-3.0, 10.0), p: float = 1.0):
        self.sample_rate, self.rt60, self.drr_db, self.p = sample_rate, rt60, drr_db, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        rt60 = _uniform(*self.rt60, g)
        noise = torch.randn(int(rt60 * self.sample_rate), generator=g)
        return reverberate(wave, exponential_ir(noise, self.sample_rate, rt60, _uniform(*self.drr_db, g)))


class MuLaw:
    """8-bit mu-law companding round trip (:func:`mu_law`)."""

    def __init__(self, bits: int = 8, p: float = 1.0):
        self.bits, self.p = bits, p

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=g) >= self.p:
            return wave
        return mu_law(wave, self.bits)


@dataclasses.dataclass(frozen=True)
class ChannelConfig:
    """Probabilities of the channel transforms on a training clip (0 turns one off). They run in the
    order of a real chain: room (``reverb``, before the background noise is mixed in), then microphone
    (``colour``), ``gain``, the line's band (``band_limit``, ``telephone`` of those a telephone line at
    8 kHz, of which ``telephone_gsm`` through GSM 06.10 and ``telephone_mu_law`` through mu-law) and a
    codec on any clip (``mu_law``, at the clip's rate).

    rt60: the range of the reverberation time (s). gain_db: the range of the extra gain.
    """

    reverb: float = bounded(0.5, ge=0, le=1)
    rt60: tuple[float, float] = bounded((0.1, 0.8), gt=0)
    colour: float = bounded(0.5, ge=0, le=1)
    band_limit: float = bounded(0.4, ge=0, le=1)
    telephone: float = bounded(0.4, ge=0, le=1)
    mu_law: float = bounded(0.15, ge=0, le=1)
    telephone_gsm: float = bounded(0.0, ge=0, le=1)
    telephone_mu_law: float = bounded(0.0, ge=0, le=1)
    gain: float = bounded(0.0, ge=0, le=1)
    gain_db: tuple[float, float] = bounded((-10.0, 10.0))

    def __post_init__(self):
        check_bounds(self)
        if self.telephone_gsm + self.telephone_mu_law > 1:
            raise ValueError("telephone_gsm + telephone_mu_law is a share of telephone clips: at most 1")

    def room(self, sample_rate: int) -> list:
        """The transforms before the noise is mixed in."""
        return [Reverb(sample_rate, self.rt60, p=self.reverb)] if self.reverb else []

    def line(self, sample_rate: int) -> list:
        """The transforms after it: microphone, gain, band, codec."""
        out: list = []
        if self.colour:
            out.append(Colour(sample_rate, p=self.colour))
        if self.gain:
            out.append(Gain(self.gain_db, p=self.gain))
        if self.band_limit:
            out.append(BandLimit(sample_rate, telephone=self.telephone, p=self.band_limit, gsm=self.telephone_gsm,
                                 mu_law=self.telephone_mu_law))
        if self.mu_law:
            out.append(MuLaw(p=self.mu_law))
        return out
