"""``ssm-signal evaluate``: detection quality of a bundle, measured on streams the way it runs live.

    ssm-signal evaluate --model artifacts/kws_default --calibrate 0.5 --out artifacts/eval/kws_default

Keyword bundles: positives (clips of keywords) and negatives (hours of audio without any) go
through the streaming core in 100 ms chunks, the detector the demo runs fires events, and the
result is the false-reject rate (FRR) and false accepts per hour (FA/h) at the bundle's
thresholds, a sweep over thresholds and smoothing windows (the DET curve), and the operating
points at 0.5 and 0.1 FA/h. ``--calibrate TARGET`` first picks per-keyword thresholds on
*calibration* data (by default the validation voices and the calibration half of the negative
corpus, never what is reported) and writes them into a new version of the bundle, which the
evaluation then measures. Anomaly bundles: see :mod:`pipelines.evaluate.anomaly`.

Outputs in ``--out``: summary.json, det.parquet, det.png.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ssm_signal.bundle import Bundle, BundleError, load_bundle, save_bundle
from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.events import DetectorConfig, is_keyword
from ssm_signal.runtime.sidecar import PRECISIONS, RUNTIMES, runtime_label
from ssm_signal.streaming import StreamConfig, StreamEngine

from . import keywords as kw
from .inputs import read_negatives, read_positives
from .report import det_rows, negatives_point, plot_det, point, write_json

log = logging.getLogger("ssm_signal.evaluate")

KEYWORD_ROOT = "data/keywords"
NEGATIVES_ROOT = "data/negatives"
FOREIGN_ROOT = "data/foreign_speech"
LETTERS_PREFIX = "letters-"  # FOREIGN_ROOT/<prefix><part>-<hash>: the letter streams, their own report group
DEFAULT = "default"  # in --positives / --negatives: the default data, beside other sets


#: the smoothing windows swept by default, in seconds (turned into whole frames of the model)
SMOOTHING_SECONDS = (0.05, 0.1, 0.2)


def default_windows(frame_rate: float) -> list[int]:
    """SMOOTHING_SECONDS as frame counts at ``frame_rate`` frames a second, rounded up (at least one frame)."""
    return sorted({max(1, math.ceil(s * frame_rate - 1e-9)) for s in SMOOTHING_SECONDS})


@dataclasses.dataclass
class EvaluateConfig:
    """What to evaluate and how.

    model: bundle directory or models:/NAME/VERSION.
    positives: positive sets, each reported on its own (split list .txt, manifest .csv or a
        folder per label); default: the embedded keyword set's held-out test voices.
    negatives: negative audio (files, folders, folders of source folders), pooled for FA/h and
        reported per source; default: the test half of the generated negative corpus.
    out: folder for summary.json, det.parquet and det.png.
    calibrate: target FA/h; picks per-keyword thresholds on the calibration sets and writes them
        into a new bundle version (None: evaluate the bundle's thresholds as they are).
    calibration_positives, calibration_negatives: what calibration looks at (default: the
        validation voices and the calibration half of the negative corpus).
    calibrated_out: where the calibrated bundle goes (default: over the evaluated bundle's own
        directory, as a new version).
    min_threshold: no calibrated threshold goes below this (see :func:`keywords.calibrate`).
    windows: smoothing windows (frames) swept besides the bundle's own; empty: 50, 100 and 200 ms in the model's
        frames (:func:`default_windows`: 5, 10, 20 at 100 frames a second, 1, 2, 3 at 12.5).
    stream: chunking, padding, hit window, segments, batch (:class:`keywords.StreamSettings`).
    threads: torch intra-op threads while streaming (None: leave torch's setting). A 100 ms chunk is
        many small ops, so one thread is the safe choice on a busy machine and more help only on an idle
        one (the figures are in docs/performance.md).
    runtime: "torch", or "onnx": stream through the bundle's ONNX export (``ssm-signal export``) in the
        torch-free runtime, one stream at a time; onnx: the export's folder (default: the bundle
        directory's onnx/); precision: its "float32" or "int8" graphs. The export's detector settings
        are the bundle's at export time. Not with ``calibrate`` (calibrate, then export).
    """

    model: str = "artifacts/kws_default"
    positives: list[str] = dataclasses.field(default_factory=list)
    negatives: list[str] = dataclasses.field(default_factory=list)
    out: str = "artifacts/eval/kws_default"
    calibrate: float | None = None
    calibration_positives: list[str] = dataclasses.field(default_factory=list)
    calibration_negatives: list[str] = dataclasses.field(default_factory=list)
    calibrated_out: str | None = None
    min_threshold: float = 0.5
    windows: list[int] = dataclasses.field(default_factory=list)
    stream: kw.StreamSettings = dataclasses.field(default_factory=kw.StreamSettings)
    threads: int | None = 1
    runtime: str = "torch"
    onnx: str | None = None
    precision: str = "float32"

    def __post_init__(self):
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.calibrate is not None and not self.calibrate > 0:
            raise ValueError(f"--calibrate must be a false-accept rate per hour > 0, got {self.calibrate}")
        if not 0 <= self.min_threshold <= 1:
            raise ValueError(f"--min-threshold must be in [0, 1], got {self.min_threshold}")
        if any(not (isinstance(w, int) and 1 <= w <= 10_000) for w in self.windows):
            raise ValueError(f"windows must be frame counts in [1, 10000], got {self.windows}")
        if self.runtime not in RUNTIMES or self.precision not in PRECISIONS:
            raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)} and --precision one of "
                             f"{', '.join(PRECISIONS)}, got {self.runtime!r}, {self.precision!r}")
        if self.runtime == "onnx" and self.calibrate is not None:
            raise ValueError("--calibrate runs on the torch runtime: calibrate, export the calibrated bundle, then "
                             "evaluate it with --runtime onnx")
        if self.runtime == "torch" and (self.onnx is not None or self.precision != "float32"):
            raise ValueError("--onnx and --precision are options of --runtime onnx")


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the evaluation; returns the summary that summary.json holds."""
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _evaluate(cfg)
    finally:  # the caller's setting back (thread counts change float summation order elsewhere)
        torch.set_num_threads(threads)


def _evaluate(cfg: EvaluateConfig) -> dict:
    t0 = time.perf_counter()
    bundle = load_bundle(cfg.model)
    kind = bundle.config.head.kind
    if kind == "anomaly":
        if cfg.runtime != "torch":
            raise DataError("evaluate --runtime onnx takes keyword models; anomaly models evaluate on torch")
        from .anomaly import evaluate_anomaly

        return evaluate_anomaly(cfg, bundle)
    if kind != "classify":
        raise DataError(f"{cfg.model}: a {kind} model fires no events; evaluate takes keyword and anomaly models")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    skips = SkipLog()
    if cfg.runtime == "onnx":
        from pipelines.export import open_export  # onnx and onnxruntime: only for this runtime

        engine = open_export(bundle, cfg.onnx, cfg.precision)
    else:
        engine = _engine(bundle)
    calibration = None
    if cfg.calibrate is not None:
        bundle, calibration = _calibrate(cfg, bundle, engine, skips)
        engine = _engine(bundle)

    det = engine.detector
    labels = det.reportable_labels
    pos_specs = _expand(cfg.positives, lambda: [_default_positives("testing_list.txt", bundle.labels)])
    neg_specs = _expand(cfg.negatives, lambda: _default_negatives("test", bundle.labels))
    pos = [kw.stream_positives(engine, name, read_positives(s, engine.labels, skips), cfg.stream, skips)
           for s, name in zip(pos_specs, _set_names(pos_specs), strict=True)]
    neg = kw.stream_negatives(engine, [(_group_name(s), read_negatives(s)) for s in neg_specs], cfg.stream, skips)
    streamed_s = time.perf_counter() - t0
    laid = kw.lay(det, pos, neg)  # the bundle's own settings: checked against the live events, then measured
    kw.check_live(det, pos, neg, laid)

    windows = sorted(set(cfg.windows or default_windows(engine.frame_rate)) | {det.window})
    outcomes = kw.sweep(det, pos, neg, windows)
    names = [p.name for p in pos]
    groups = {"all": np.ones(len(neg.names), bool)} | {
        g: np.array([x == g for x in neg.groups]) for g in dict.fromkeys(neg.groups)}
    df = det_rows(outcomes, names, labels, groups)
    df.to_parquet(out / "det.parquet", index=False)
    configured = kw.at(det, pos, neg, laid)
    audio_h = float(neg.hours.sum() + sum(s.seconds for p in pos for s in p.streams) / 3600)
    summary = {
        "model": {"name": bundle.name, "version": bundle.version, "path": str(bundle.path),
                  "runtime": runtime_label(cfg.runtime, cfg.precision)},
        "detector": {"smoothing_frames": det.window, "threshold": det.threshold,
                     "refractory_s": det.refractory_frames / det.frame_rate},
        "settings": dataclasses.asdict(cfg.stream),
        "calibration": calibration,
        "sets": {p.name: {"source": spec, "at_bundle_thresholds": point(o, labels),
                          "operating_points": kw.summary(outcomes, i, labels, groups)}
                 for i, (p, spec, o) in enumerate(zip(pos, pos_specs, configured, strict=True))},
        "negatives": {"sources": neg_specs,
                      "at_bundle_thresholds": negatives_point(configured[0], labels, neg.names, neg.groups)},
        "skipped": {"count": len(skips), "by_reason": skips.counts(), "items": skips.items[:200]},
        "timing": {"audio_hours": round(audio_h, 4), "seconds": round(time.perf_counter() - t0, 1),
                   "streaming_seconds": round(streamed_s, 1)},
    }
    write_json(out / "summary.json", summary)
    plot_det(df, {p.name: (o.fa_per_hour_pooled, o.frr_pooled) for p, o in zip(pos, configured, strict=True)},
             det.window, out / "det.png", f"{bundle.name} {bundle.version}: DET on streamed audio "
             f"({neg.hours.sum():.2f} h of negatives)")
    return summary


def _engine(bundle: Bundle) -> StreamEngine:
    # eager: the chunked forward at 100 ms chunks; the compiled per-frame step computes the same function
    return StreamEngine(bundle, config=StreamConfig(compile=False))


def _calibrate(cfg: EvaluateConfig, bundle: Bundle, engine: StreamEngine, skips: SkipLog) -> tuple[Bundle, dict]:
    pos_specs = _expand(cfg.calibration_positives, lambda: [_default_positives("validation_list.txt", bundle.labels)])
    neg_specs = _expand(cfg.calibration_negatives, lambda: _default_negatives("calibration", bundle.labels))
    overlap = set(map(_norm, pos_specs + neg_specs)) & set(map(_norm, (cfg.positives or []) + (cfg.negatives or [])))
    if overlap:
        log.warning("calibrating on data that is also reported (%s): the reported figures are then optimistic",
                    ", ".join(sorted(overlap)))
    pos = [kw.stream_positives(engine, Path(s).name, read_positives(s, engine.labels, skips), cfg.stream, skips)
           for s in pos_specs]
    neg = kw.stream_negatives(engine, [(_group_name(s), read_negatives(s)) for s in neg_specs], cfg.stream, skips)
    windows = sorted(set(cfg.windows or default_windows(engine.frame_rate)) | {engine.detector.window})
    det_cfg, record = kw.calibrate(engine.detector, pos, neg, cfg.calibrate, windows, cfg.min_threshold)
    record["positives"], record["negatives"] = pos_specs, neg_specs
    return write_calibrated(bundle, cfg.calibrated_out, det_cfg, record, (
        "target_fa_per_hour", "floor", "chosen", "negative_hours", "positive_clips", "previous_version"))


def write_calibrated(bundle: Bundle, out: str | None, detector: DetectorConfig, record: dict,
                     keep: tuple[str, ...] | None = None) -> tuple[Bundle, dict]:
    """``bundle`` with ``detector`` as a new version in ``out`` (default: its own directory); ``record``
    gains previous_version, version and path, and goes into the bundle's metrics as ``calibration``
    (only the ``keep`` keys, if given). Returns the new bundle, loaded, and the record."""
    target = Path(out) if out else bundle.path
    if target is None:
        raise BundleError("the calibrated bundle needs a directory: pass --calibrated-out")
    version = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d%H%M%S")
    record.update(previous_version=bundle.version, version=version, path=str(target))
    kept = {k: record[k] for k in keep} if keep else dict(record)
    save_bundle(bundle.model, target, name=bundle.name, version=version,
                metrics={**bundle.metrics, "calibration": kept}, detector=detector)
    log.info("calibrated thresholds written to %s (version %s)", target, version)
    return load_bundle(target), record


def _norm(spec: str) -> str:
    return str(Path(spec).resolve())


def _expand(specs: list[str], default) -> list[str]:
    """The specs with ``default`` (or none given) replaced by the default data."""
    if not specs:
        return default()
    return [x for s in specs for x in (default() if s == DEFAULT else [s])]


def _set_name(spec: str) -> str:
    """A positive set's name in the report: 'generated/<split>' for the keyword set's lists, else the path
    (a ``manifest.csv`` by its folder, another manifest by its folder and stem)."""
    p = Path(spec)
    if p.suffix == ".txt" and (p.parent == Path(KEYWORD_ROOT) or p.parent.name.startswith("keywords_")):
        return f"generated/{p.stem.removesuffix('_list')}"
    if p.suffix == ".csv":
        return str(p.parent if p.name == "manifest.csv" else p.with_suffix(""))
    return str(p)


def _set_names(specs: list[str]) -> list[str]:
    """The report's names of the positive sets; two sets of one name would overwrite each other's results."""
    names = [_set_name(s) for s in specs]
    for name in dict.fromkeys(names):
        same = [s for s, n in zip(specs, names, strict=True) if n == name]
        if len(same) > 1:
            raise DataError(f"positive sets {', '.join(same)} would all be reported as {name!r}: give each its own")
    return names


def _group_name(spec: str) -> str:
    p = Path(spec)
    if Path(NEGATIVES_ROOT) in p.parents:
        return "generated/" + p.parent.name  # speech, music, noise
    if Path(FOREIGN_ROOT) in p.parents:
        return "generated/letters" if p.name.startswith(LETTERS_PREFIX) else "generated/foreign"
    return str(p)


def _default_positives(split_list: str, labels: list[str]) -> str:
    """A split list of the generated keyword set the bundle's labels come from: the default set, or for
    custom keywords (any label outside the default set's words) the set `make train WORDS=...` generates.
    Either is generated here if absent (cached); its validation and test voices are never in training,
    whatever the set trained on, since splits go by voice variant."""
    from ssm_signal.data.custom_keywords import default_root, generate_custom_set
    from ssm_signal.data.keywords import generate_keyword_set
    from ssm_signal.data.speech_commands import ALL_WORDS

    keywords = [lab for lab in labels if is_keyword(lab)]
    if set(keywords) <= set(ALL_WORDS):
        generate_keyword_set(KEYWORD_ROOT)  # cached: returns at once when `make train` made it
        return str(Path(KEYWORD_ROOT) / split_list)
    root = generate_custom_set(keywords, default_root(keywords))  # cached likewise
    return str(root / split_list)


def _default_negatives(split: str, labels: list[str]) -> list[str]:
    """The generated negatives of one half. The negative corpus's sources: within each kind (speech,
    music, noise), the sources in sorted order alternate between calibration (even) and test (odd), so the
    halves share no file or sentence and each holds every kind. And speech in other languages
    (:func:`~ssm_signal.data.foreign_speech.write_streams`): the validation sentences and voices for
    calibration, the test ones for the report, none with a word that sounds like one of ``labels``; and
    letters and syllables of many languages said alone by the same voices (30 s a language)."""
    import hashlib

    from ssm_signal.data.foreign_speech import write_streams
    from ssm_signal.data.negatives import corpus_sources, generate_negative_corpus

    root = generate_negative_corpus(NEGATIVES_ROOT)  # cached: made once
    by_kind: dict[str, list[str]] = {}
    for name in sorted(corpus_sources(root)):
        by_kind.setdefault(name.split("/")[0], []).append(name)
    parity = 0 if split == "calibration" else 1
    corpus = [str(Path(root) / n) for names in by_kind.values() for i, n in enumerate(names) if i % 2 == parity]
    keywords = sorted(lab for lab in labels if is_keyword(lab))
    part = "validation" if split == "calibration" else "testing"
    tag = hashlib.sha1(",".join(keywords).encode()).hexdigest()[:8]  # the look-alike filter depends on them
    return corpus + [str(write_streams(Path(FOREIGN_ROOT) / f"{part}-{tag}", keywords, part)),  # cached
                     str(write_streams(Path(FOREIGN_ROOT) / f"{LETTERS_PREFIX}{part}-{tag}", keywords, part, seconds=30.0,
                                       units="letters"))]
