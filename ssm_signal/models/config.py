"""Typed model configuration. Dataclass docstrings double as CLI/YAML help.

A bundle stores ``ModelConfig.to_dict()`` in config.json; ``ModelConfig.from_dict`` rebuilds
it and validates every field, so a bad YAML or a damaged bundle fails early and clearly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.frontends.speech_embedding import D_EMBED as SPEECH_EMBEDDING_DIM
from ssm_signal.frontends.speech_embedding import SAMPLES_PER_EMBEDDING as SPEECH_EMBEDDING_SAMPLES
from ssm_signal.layers.block import MIXERS

FRONTENDS = ("logmel", "speech_embedding", "sensor")
#: the frontends that read audio (mono, resampled to their rate); the others read sensor tables
AUDIO_FRONTENDS = ("logmel", "speech_embedding")
HEADS = ("classify", "forecast", "anomaly")

#: Fields renamed after bundles were saved with them, per section: {section: {old: new}}. Bundles
#: (config.json) and YAML that use an old name load as before; the name is simply read under its new one.
RENAMED = {"frontend": {"channels": "in_channels"}}
#: Fields added after bundles were saved without them, per section, with the default that reproduces the former
#: behaviour: {section: {field: default}}. A bundle's fingerprint leaves them out where they hold that default.
ADDED = {"frontend": {"spread": False, "pcen": False, "cepstra": 0},
         "head": {"horizons": [1], "score_window": 1, "memory": 0}}


def current_names(section: str, d: dict[str, Any]) -> dict[str, Any]:
    """``d`` (one section of a model config) with renamed fields under their current names: a copy.

    Raises:
        ValueError: a field given under both its old and its new name.
    """
    out = dict(d)
    for old, new in RENAMED.get(section, {}).items():
        if old in out:
            if new in out:
                raise ValueError(f"{section}: {old!r} is the former name of {new!r}; give one of them")
            out[new] = out.pop(old)
    return out


def former_names(d: dict[str, Any]) -> dict[str, Any]:
    """A whole model config dict (``to_dict``) with renamed fields under their former names and added fields
    left out where they hold their former behaviour's default (:data:`ADDED`): a copy.

    Bundle fingerprints hash this form, so a bundle keeps its fingerprint across the renames and additions,
    and the stream snapshots and resumable scoring outputs made with it stay valid.
    """
    out = dict(d)
    for section, fields in ADDED.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if not (k in fields and v == fields[k])}
    for section, names in RENAMED.items():
        if isinstance(out.get(section), dict):
            sec = dict(out[section])
            for old, new in names.items():
                if new in sec:
                    sec[old] = sec.pop(new)
            out[section] = sec
    return out


@dataclasses.dataclass
class FrontendConfig:
    """Feature extractor in front of the backbone.

    kind: "logmel" (16 kHz audio -> log-mel frames), "speech_embedding" (16 kHz audio -> a frozen pre-trained speech
        encoder's 96-dim embeddings every 80 ms, :mod:`ssm_signal.frontends.speech_embedding`; its own fixed log-mel,
        so the log-mel fields below do not apply) or "sensor" (multichannel standardisation).
    sample_rate: input rate in Hz (inputs at other rates are resampled to it; sensor tables
        with no physical rate use 1 = one sample per time step).
    n_mels, n_fft, hop_length, f_min, f_max: log-mel parameters (hop_length samples per frame).
    pcen: logmel only, per-channel energy normalisation in place of the log (a causal gain control per mel
        band that carries a smoother in the stream's state; :mod:`ssm_signal.frontends.logmel`).
    cepstra: logmel only, smooth each log-mel frame along frequency to its first K DCT (MFCC) coefficients, kept
        as n_mels bands: the spectral envelope without the harmonics' ripple (0 = off).
    in_channels: input channels (1 for audio; sensors: number of channels).
    decimate: sensor frontend only, average blocks of this many samples (1 = off).
    spread: sensor frontend only (decimate >= 2), each frame also carries its block's mean absolute step between
        consecutive samples per channel (noise bursts raise it, a frozen channel sets it to 0).
    """

    kind: str = "logmel"
    sample_rate: int = bounded(16000, ge=1)
    n_mels: int = bounded(40, ge=1)
    n_fft: int = bounded(400, ge=1)
    hop_length: int = bounded(160, ge=1)
    f_min: float = 20.0
    f_max: float = 7600.0
    in_channels: int = bounded(1, ge=1)
    decimate: int = bounded(1, ge=1)
    spread: bool = False
    pcen: bool = False
    cepstra: int = bounded(0, ge=0)

    def __post_init__(self):
        if self.kind not in FRONTENDS:
            raise ValueError(f"frontend.kind must be one of {FRONTENDS}, got {self.kind!r}")
        if self.audio and self.in_channels != 1:
            raise ValueError(f"frontend.in_channels must be 1 for {self.kind} (audio is downmixed to mono)")
        if self.kind == "speech_embedding" and self.sample_rate != 16000:
            raise ValueError("frontend.sample_rate must be 16000 for speech_embedding (the encoder's rate)")
        check_bounds(self, "frontend.")
        if not isinstance(self.spread, bool):
            raise ValueError(f"frontend.spread must be true or false, got {self.spread!r}")
        if not isinstance(self.pcen, bool):
            raise ValueError(f"frontend.pcen must be true or false, got {self.pcen!r}")
        if self.pcen and self.kind != "logmel":
            raise ValueError("frontend.pcen applies to logmel frontends (mel energies)")
        if self.cepstra and (self.kind != "logmel" or self.pcen or self.cepstra > self.n_mels):
            raise ValueError(f"frontend.cepstra applies to logmel frontends without pcen, 1..n_mels={self.n_mels}; "
                             f"got {self.cepstra}")
        if self.spread and (self.kind != "sensor" or self.decimate < 2):
            raise ValueError("frontend.spread applies to sensor frontends with decimate >= 2 (a block's steps)")
        if self.kind == "logmel" and not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(f"frontend: need 0 <= f_min < f_max <= sample_rate/2, got {self.f_min}, {self.f_max}")

    @property
    def audio(self) -> bool:
        """Whether the frontend reads audio (else sensor tables)."""
        return self.kind in AUDIO_FRONTENDS

    @property
    def feature_dim(self) -> int:
        if self.kind == "speech_embedding":
            return SPEECH_EMBEDDING_DIM
        return self.n_mels if self.kind == "logmel" else self.in_channels * (2 if self.spread else 1)

    @property
    def samples_per_frame(self) -> int:
        if self.kind == "speech_embedding":
            return SPEECH_EMBEDDING_SAMPLES
        return self.hop_length if self.kind == "logmel" else self.decimate


@dataclasses.dataclass
class BackboneConfig:
    """The SSM stack.

    d_model: width of the residual stream.
    layers: mixer names, one per block, e.g. [mamba2, mamba2, attention, mamba2].
    mixer_kwargs: constructor arguments per mixer name, e.g. {mamba2: {d_state: 64, headdim: 32}}.
    mlp_ratio: SwiGLU MLP after each mixer with hidden = ratio * d_model (0 = none).
    """

    d_model: int = bounded(64, ge=1)
    layers: list[str] = dataclasses.field(default_factory=lambda: ["mamba2"] * 4)
    mixer_kwargs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    mlp_ratio: float = bounded(0.0, ge=0)

    def __post_init__(self):
        check_bounds(self, "backbone.")
        if not self.layers:
            raise ValueError("backbone.layers must name at least one mixer")
        bad = [k for k in list(self.layers) + list(self.mixer_kwargs) if k not in MIXERS]
        if bad:
            raise ValueError(f"backbone: unknown mixers {bad}; choose from {sorted(MIXERS)}")
        self.layers = list(self.layers)
        self.mixer_kwargs = {k: dict(v) for k, v in self.mixer_kwargs.items()}


@dataclasses.dataclass
class HeadConfig:
    """What the model outputs at every frame.

    kind: "classify" (class logits; the clip prediction is the last frame's), "forecast"
    (the next frame's features), or "anomaly" (forecast + normalised prediction error as score).
    num_classes: number of classes (classify only).
    threshold: anomaly score above which a frame is an alarm (anomaly only).
    horizons: anomaly only, how many frames ahead the head forecasts, increasing (e.g. [1, 4, 16, 64]); the
        score of a frame averages the errors of its forecasts made that many frames before ([1]: the
        next-frame error alone).
    score_window: anomaly only, frames whose errors the score tests together: 1 scores each frame's own
        normalised error; W > 1 tests the last W frames' errors against the normal variance, two-sided
        (too large or too small: see ``AnomalyHead``).
    memory: anomaly only, how many hidden states of the normal training series the head keeps (0: none); with
        M > 0 a frame's score also counts how far its hidden state lies from the nearest of them (a state that
        normal data never reaches: a frozen sensor, say; see ``AnomalyHead``).
    """

    kind: str = "classify"
    num_classes: int = 0
    threshold: float = 3.0
    horizons: list[int] = dataclasses.field(default_factory=lambda: [1])
    score_window: int = 1
    memory: int = 0

    def __post_init__(self):
        if self.kind not in HEADS:
            raise ValueError(f"head.kind must be one of {HEADS}, got {self.kind!r}")
        hs = list(self.horizons) if isinstance(self.horizons, list | tuple) else None
        if not hs or any(isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 256 for h in hs) or any(
                b <= a for a, b in zip(hs, hs[1:], strict=False)):
            raise ValueError(f"head.horizons must be increasing integers in [1, 256], got {self.horizons!r}")
        self.horizons = hs
        if hs != [1] and self.kind != "anomaly":
            raise ValueError(f"head.horizons applies to anomaly heads only (kind {self.kind!r} forecasts one frame)")
        w = self.score_window
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 4096:
            raise ValueError(f"head.score_window must be an integer in [1, 4096], got {w!r}")
        if w != 1 and self.kind != "anomaly":
            raise ValueError(f"head.score_window applies to anomaly heads only, not {self.kind!r}")
        m = self.memory
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= 65536:
            raise ValueError(f"head.memory must be an integer in [0, 65536], got {m!r}")
        if m and self.kind != "anomaly":
            raise ValueError(f"head.memory applies to anomaly heads only, not {self.kind!r}")
        if self.kind == "classify" and self.num_classes < 2:
            raise ValueError(f"head.num_classes must be >= 2 for classification, got {self.num_classes}")


@dataclasses.dataclass
class ModelConfig:
    """Frontend + backbone + head, and the label names (classification)."""

    frontend: FrontendConfig = dataclasses.field(default_factory=FrontendConfig)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    head: HeadConfig = dataclasses.field(default_factory=lambda: HeadConfig(num_classes=2))
    labels: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if isinstance(self.frontend, dict):
            self.frontend = FrontendConfig(**current_names("frontend", self.frontend))
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.head, dict):
            self.head = HeadConfig(**self.head)
        self.labels = list(self.labels)
        if self.head.kind == "classify" and self.labels and len(self.labels) != self.head.num_classes:
            raise ValueError(f"{len(self.labels)} labels given for head.num_classes={self.head.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:  # unknown nested keys
            raise ValueError(f"invalid model config: {e}") from e
