"""Versioned model bundles: a directory with config.json and model.safetensors. Never pickle.

    save_bundle(model, "artifacts/kws_default", name="kws_default", metrics={"test_acc": 0.97})
    bundle = load_bundle("artifacts/kws_default")        # or "models:/kws_default/3" (MLflow)
    p = bundle.predict(waveform, sample_rate=44100)       # resampled and downmixed as needed
    p.label, p.scores, p.frame_scores

config.json holds the format version, the model config (frontend, backbone, head), labels,
sample rate, the frontend's normalisation statistics (also in the weights; checked equal
on load), metrics, name and version, and optionally ``detector``: the event detector's
settings for this model (per-keyword thresholds written by calibration, ``ssm-signal evaluate
--calibrate``), which streaming sessions, pools, the demo and the scorer use unless told
otherwise; a bundle without it gets the detector's defaults. Loading checks the format version and every tensor's
shape and fails with a message that says what is wrong.

URIs with a scheme (``models:/``, ``runs:/``) are resolved to a local directory by
resolvers registered under the entry-point group ``ssm_signal.uri_resolvers`` (the MLflow
one lives in ``pipelines``), so this library never imports MLflow itself.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ssm_signal.events import DetectorConfig
from ssm_signal.frontends.resample import resample
from ssm_signal.models import ModelConfig, SignalModel
from ssm_signal.models.config import former_names
from ssm_signal.signal_input import (  # noqa: F401  (re-exported: scoring reads through these)
    as_samples,
    check_resampling,
    check_sample_rate,
    pcm_to_float,
    to_model_channels,
)
from ssm_signal.validation import check_sequence
from ssm_signal.versioned_json import read_versioned

FORMAT = "ssm-signal-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Long inputs run through the model in windows with the state carried across them:
# the same result as one pass, memory bounded by the window.
PREDICT_WINDOW_SECONDS = 30.0

_RESOLVERS: dict[str, Callable[[str], str]] = {}


class BundleError(ValueError):
    """A bundle that cannot be loaded, with the reason."""


def register_uri_resolver(scheme: str, resolver: Callable[[str], str]) -> None:
    """Map URIs ``<scheme>:/...`` to a local bundle directory."""
    _RESOLVERS[scheme] = resolver


def _resolve(path_or_uri: str | Path) -> Path:
    s = str(path_or_uri)
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):/", s)
    if m is None or len(m.group(1)) == 1:  # no scheme (or a Windows drive letter)
        return Path(s)
    scheme = m.group(1)
    if scheme not in _RESOLVERS:
        for ep in metadata.entry_points(group="ssm_signal.uri_resolvers"):
            if ep.name == scheme:
                _RESOLVERS[scheme] = ep.load()
    if scheme not in _RESOLVERS:
        raise BundleError(f"no resolver for {scheme}:/ URIs (install ssm-signal with its pipelines to use MLflow URIs)")
    return Path(_RESOLVERS[scheme](s))


@dataclasses.dataclass
class Prediction:
    """label: the predicted label (classification) or "anomaly"/"normal";
    scores: one score per label, read at the last frame (classification: probabilities;
    anomaly: [max frame score]); frame_scores: (frames, labels) numpy array over time."""

    label: str | None
    scores: np.ndarray
    frame_scores: np.ndarray


@dataclasses.dataclass
class Bundle:
    model: SignalModel
    config: ModelConfig
    name: str
    version: str
    metrics: dict[str, Any]
    path: Path | None = None
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of what makes the model's outputs: name, version, config and every weight.

        Outputs written with one bundle (a resumable scoring job, a stream snapshot) are only ever
        combined with outputs of the bundle of the same fingerprint: a retrained model differs here
        even where its name and version do not.
        """
        h = hashlib.sha256(json.dumps({"name": self.name, "version": self.version,
                                       "config": former_names(self.config.to_dict())}, sort_keys=True).encode())
        for k, v in sorted(self.model.state_dict().items()):
            h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def sample_rate(self) -> int:
        return self.config.frontend.sample_rate

    @property
    def in_channels(self) -> int:
        return self.config.frontend.in_channels

    def prepare(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Any (L,) or (L, C) array, int or float, any rate -> (1, L', channels) float32 at the bundle rate."""
        return prepare_signal(waveform, sample_rate, self.sample_rate, self.in_channels,
                              self.config.frontend.audio)

    @torch.inference_mode()
    def frame_outputs(self, x: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
        """x (B, L, C) at the bundle rate -> per-frame outputs (B, F, out_dim), windowed with carried state.

        Windows of :data:`PREDICT_WINDOW_SECONDS` rounded down to whole frames, from a fresh state:
        each starts at frame phase 0, which is passed to the model rather than read back from the
        device. ``check_values=False``: x is known finite (the scorer's workers checked it), so
        nothing in the call synchronises with the device and it can be captured in a CUDA graph.
        """
        check_sequence(x, self.model.in_channels, values=check_values)
        window = self.window_samples
        state, ys = self.model.init_state(x.shape[0], device=x.device), []
        for start in range(0, x.shape[1], window):
            y, state = self.model._forward(x[:, start:start + window], state, phase=0)
            ys.append(y)
        return ys[0] if len(ys) == 1 else torch.cat(ys, 1)

    @property
    def window_samples(self) -> int:
        """Samples per window of :meth:`frame_outputs`: :data:`PREDICT_WINDOW_SECONDS`, whole frames.
        A caller feeding windows of this length from the start (the last one shorter) through
        ``model._forward(window, state, phase=0)`` computes exactly what :meth:`frame_outputs` does."""
        spf = self.model.samples_per_frame
        return max(spf, int(PREDICT_WINDOW_SECONDS * self.sample_rate) // spf * spf)

    def predict(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> Prediction:
        x = self.prepare(waveform, sample_rate)
        if x.shape[1] < self.model.samples_per_frame:
            raise ValueError(f"signal too short: {x.shape[1]} samples at {self.sample_rate} Hz, "
                             f"need at least one frame ({self.model.samples_per_frame})")
        out = self.frame_outputs(x.to(next(self.model.parameters()).device))[0].float().cpu()
        return outputs_to_prediction(out, self.config)


def outputs_to_prediction(out: torch.Tensor, config: ModelConfig) -> Prediction:
    """Per-frame model outputs (F, out_dim) -> Prediction, by the head's rule: :func:`clip_scores`
    and :func:`clip_labels` on a batch of one, plus the frame scores (classification: posteriors)."""
    scores = clip_scores(out[None], torch.tensor([out.shape[0]]), config)[0].numpy()
    frame_scores = torch.softmax(out, dim=-1).numpy() if config.head.kind == "classify" else out.numpy()
    return Prediction(clip_labels(scores[None], config)[0], scores, frame_scores)


def clip_scores(y: torch.Tensor, frames: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Clip scores of a padded batch, by the head's rule (what :class:`Prediction` calls ``scores``).

    y: (B, F, out_dim) per-frame outputs of a padded batch; frames: (B,) valid frames per item (>= 1).
    Returns (B, K): classification, the softmax at each item's last valid frame (K = labels);
    anomaly, the maximum frame score over the valid frames (K = 1); otherwise the raw outputs at the
    last valid frame. Runs on y's device, so a batch crosses to the host as one small tensor.
    """
    frames = frames.to(y.device)
    last = y[torch.arange(y.shape[0], device=y.device), frames - 1]  # (B, out_dim)
    kind = config.head.kind
    if kind == "classify":
        return torch.softmax(last.float(), dim=-1)
    if kind == "anomaly":
        valid = torch.arange(y.shape[1], device=y.device)[None, :] < frames[:, None]  # (B, F)
        return y.float().amax(dim=-1).masked_fill(~valid, float("-inf")).amax(dim=1, keepdim=True)
    return last.float()


def clip_labels(scores: np.ndarray, config: ModelConfig) -> list[str | None]:
    """(B, K) clip scores from :func:`clip_scores` -> one label per item, by the head's rule."""
    kind = config.head.kind
    if kind == "classify":
        top = scores.argmax(axis=1)
        return [config.labels[i] for i in top] if config.labels else [str(i) for i in top]
    if kind == "anomaly":
        return ["anomaly" if v > config.head.threshold else "normal" for v in scores[:, 0]]
    return [None] * len(scores)


def prepare_signal(waveform, sample_rate, target_rate: int, channels: int, audio: bool = True) -> torch.Tensor:
    """A whole signal (n,) or (n, c), any dtype and rate :func:`as_samples` and :func:`check_sample_rate` take
    -> (1, L, channels) float32 at ``target_rate``.

    The same rules as a streaming session's input; resampled by the streaming engine's causal polyphase
    filter, whole signal from a zero state, so predict(), batch scoring and a StreamingSession compute the
    same function.
    """
    rate = check_sample_rate(sample_rate, target_rate, audio)
    x = as_samples(waveform, channels)
    if x.shape[0] == 0:
        raise ValueError("waveform is empty")
    if rate != target_rate:
        x = resample(x.T.contiguous(), rate, int(target_rate)).T
    return x.unsqueeze(0).contiguous()


def save_bundle(model: SignalModel, path: str | Path, *, name: str | None = None, version: str | None = None,
                metrics: dict[str, Any] | None = None, detector: DetectorConfig | None = None) -> Path:
    """Write ``model`` as a bundle directory (created; existing files replaced).

    detector: the event detector settings to ship with the model (e.g. calibrated thresholds).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    norm = {k: state[f"frontend.{k}"].tolist() for k in ("mean", "std") if f"frontend.{k}" in state}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name or path.name,
        "version": version or _dt.datetime.now(_dt.UTC).strftime("%Y%m%d%H%M%S"),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": model.config.to_dict(),
        "labels": model.config.labels,
        "sample_rate": model.config.frontend.sample_rate,
        "normalisation": norm,
        "metrics": _jsonable(metrics or {}),
    }
    if detector is not None and detector.to_dict():
        config["detector"] = detector.to_dict()
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    _readable_as_umask_allows(tmp)
    tmp.replace(path / WEIGHTS_FILE)
    tmp = path / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    _readable_as_umask_allows(tmp)
    tmp.replace(path / CONFIG_FILE)
    return path


def _readable_as_umask_allows(file: Path) -> None:
    """Mode 0666 less the umask, as ``open`` gives a new file: safetensors writes 0600, which
    leaves a bundle another user (a server, a colleague) cannot load."""
    mask = os.umask(0)
    os.umask(mask)  # read back: there is no other way to ask for the umask
    os.chmod(file, 0o666 & ~mask)


def load_bundle(path_or_uri: str | Path, *, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle directory (or an MLflow ``models:/NAME/VERSION`` / ``runs:/`` URI)."""
    path = _resolve(path_or_uri)
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not cfg_file.is_file() or not w_file.is_file():
        raise BundleError(f"{path} is not a model bundle: expected {CONFIG_FILE} and {WEIGHTS_FILE} "
                          "(run `make train` to create the default one)")
    meta = read_versioned(cfg_file, format=FORMAT, version=FORMAT_VERSION, what="ssm-signal bundle",
                          error=BundleError)
    if not isinstance(meta.get("model"), dict):
        raise BundleError(f"{cfg_file}: field 'model' must be a JSON object, got {type(meta.get('model')).__name__}")
    if not isinstance(meta.get("normalisation", {}), dict):
        raise BundleError(f"{cfg_file}: field 'normalisation' must be a JSON object")
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise BundleError(f"{cfg_file}: invalid model config: {type(e).__name__}: {e}") from e
    model = SignalModel(config)
    try:
        weights = load_file(str(w_file))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise BundleError(f"{w_file}: unreadable weights ({e})") from e
    expected = model.state_dict()
    missing, unexpected = expected.keys() - weights.keys(), weights.keys() - expected.keys()
    if missing or unexpected:
        raise BundleError(f"{w_file}: weights do not match the config (missing {sorted(missing)[:5]}, "
                          f"unexpected {sorted(unexpected)[:5]})")
    for k, v in expected.items():
        if v.shape != weights[k].shape:
            raise BundleError(f"{w_file}: {k} has shape {tuple(weights[k].shape)}, config implies {tuple(v.shape)}")
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # they would score every input "ok" with NaN scores
        raise BundleError(f"{w_file}: weights hold NaN or Inf values ({', '.join(sorted(bad)[:5])}"
                          f"{', ...' if len(bad) > 5 else ''}); the bundle is damaged or its training diverged")
    model.load_state_dict(weights, strict=True)
    for k, values in meta.get("normalisation", {}).items():
        if not torch.allclose(weights[f"frontend.{k}"], torch.tensor(values, dtype=torch.float32)):
            raise BundleError(f"{cfg_file}: normalisation {k!r} differs from the weights (edited by hand?)")
    try:
        detector = DetectorConfig.from_dict(meta.get("detector", {}))
    except (ValueError, TypeError) as e:
        raise BundleError(f"{cfg_file}: invalid detector config: {e}") from e
    model.eval().to(device)
    return Bundle(model, config, meta.get("name", path.name), str(meta.get("version", "")),
                  meta.get("metrics", {}), path, detector)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, torch.Tensor | np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
