"""The ``ssm-signal`` command.

    ssm-signal fit --config configs/kws_default.yaml [--trainer.max_epochs 3 ...]
    ssm-signal generate-keywords [--root data/keywords] [--seed 0]
    ssm-signal keywords --words "hey nova" "lights on" [--out DIR] [--speakers 240] [--seed 0]
    ssm-signal evaluate --model artifacts/kws_default [--calibrate 0.5] [--positives P ...] [--negatives N ...]
    ssm-signal demo --model artifacts/kws_default|models:/NAME/VERSION [--runtime onnx] [--host 127.0.0.1 --port 7860]
    ssm-signal export --model artifacts/kws_default --format onnx [--out DIR] [--no-int8]
    ssm-signal --help

Errors print one line naming the problem (exit code 2 for a command line or config that asks for
something impossible, 1 for a failure, 128 + N when stopped by signal N); ``--debug`` anywhere on
the command line (or SSM_SIGNAL_DEBUG=1) prints the traceback too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from pipelines.errors import Interrupted, UsageError

COMMANDS = {
    "fit": "train a model from a YAML config (LightningCLI; `ssm-signal fit --help`)",
    "generate-keywords": "generate the embedded keyword set with espeak-ng",
    "keywords": "generate a keyword set from any words or phrases (`ssm-signal keywords --help`)",
    "score": "score files into Parquet with a bundle (`ssm-signal score --help`)",
    "evaluate": "detection quality on streamed audio: FRR, FA/h, DET curves, calibration (`ssm-signal evaluate --help`)",
    "demo": "live-microphone Gradio demo of a bundle (`ssm-signal demo --help`)",
    "export": "export a bundle's streaming step to ONNX for runtimes without PyTorch (`ssm-signal export --help`)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug anywhere: tracebacks for every error (otherwise one line names the problem)
    debug = "--debug" in argv or os.environ.get("SSM_SIGNAL_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    logger = logging.getLogger("ssm_signal")  # Lightning configures its own loggers
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):  # once, however often main runs
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if not debug and argv and argv[0] in ("fit", "score"):
        from pipelines.console import quiet_third_party

        quiet_third_party()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: ssm-signal [--debug] COMMAND [options]\n\ncommands:")
        for name, doc in COMMANDS.items():
            print(f"  {name:<18} {doc}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    cmd, rest = argv[0], argv[1:]
    try:
        return _run(cmd, rest)
    except Interrupted as e:
        print(f"ssm-signal {cmd}: {e}", file=sys.stderr)
        return 128 + e.signum
    except SystemExit:  # argparse and jsonargparse: --help (0) and their one-line usage errors (2)
        raise
    except KeyboardInterrupt:
        print(f"ssm-signal {cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure: one line naming the problem, the traceback with --debug
        if debug:
            traceback.print_exc()
        usage = isinstance(e, UsageError)
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"ssm-signal {cmd}: error: {_one_line(e)}{'' if usage else hint}", file=sys.stderr)
        return 2 if usage else 1


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is when they are written (a caller that swaps it, as pytest
    does, never leaves the handler holding a closed stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):  # StreamHandler.__init__ assigns it
        pass


def _one_line(e: BaseException) -> str:
    """The exception's message on one line, with its type where the message alone would not say much."""
    # here, not at the top: `ssm-signal --help` should not wait for torch to import
    from ssm_signal.bundle import BundleError
    from ssm_signal.data.file_checks import os_error_words
    from ssm_signal.data.skips import DataError

    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, UsageError | BundleError | DataError):
        return text
    if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError) and e.filename:
        return f"{e.filename}: {os_error_words(e)}"
    return f"{type(e).__name__}: {text}"


class _Parser(argparse.ArgumentParser):
    """argparse, its errors on one line (it prints the usage block first otherwise); exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _run(cmd: str, rest: list[str]) -> int:
    if cmd == "fit":
        from pipelines.train import run_fit

        run_fit(rest)
        return 0
    if cmd == "generate-keywords":
        from ssm_signal.data.keywords import generate_keyword_set

        p = _Parser(prog="ssm-signal generate-keywords")
        p.add_argument("--root", default="data/keywords")
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(rest)
        generate_keyword_set(a.root, seed=a.seed)
        return 0
    if cmd == "keywords":
        return run_keywords(rest)
    if cmd == "score":
        return run_score(rest)
    if cmd == "evaluate":
        return run_evaluate(rest)
    if cmd == "export":
        return run_export(rest)
    if cmd == "demo":
        from app.demo import main as run_demo

        return run_demo(rest, registry=_registered_bundles)
    return 2


def _registered_bundles() -> list[dict]:
    """The MLflow registry's bundles for the demo's picker (imported when the picker asks, not at start)."""
    from pipelines.tracking import list_registered_bundles

    return list_registered_bundles()


def run_keywords(rest: list[str]) -> int:
    """``ssm-signal keywords``: the keyword set of any words or phrases (ssm_signal.data.custom_keywords)."""
    from ssm_signal.data.custom_keywords import TRAINING_SPEECH, default_root, generate_custom_set
    from ssm_signal.data.keywords import KeywordSetConfig
    from ssm_signal.data.phrases import PhraseError, parse_phrases

    p = _Parser(prog="ssm-signal keywords", description=(
        "Generate a keyword set (Speech Commands layout) from text alone, to train a custom keyword bundle "
        "(docs/custom_keywords.md)."))
    p.add_argument("--words", nargs="+", required=True, metavar="PHRASE",
                   help='the keywords: words or short phrases, e.g. --words "hey nova" "lights on" (or one '
                        'comma-separated argument)')
    p.add_argument("--out", default=None,
                   help="folder to write (default: data/keywords_<words joined>, where `make train WORDS=...` looks)")
    p.add_argument("--speakers", type=int, default=KeywordSetConfig.n_speakers, help="espeak-ng speakers")
    p.add_argument("--seed", type=int, default=0, help="generation seed (the set is deterministic for a seed)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    a = p.parse_args(rest)
    if a.speakers < 1:
        p.error(f"--speakers must be >= 1, got {a.speakers}")
    try:
        phrases = parse_phrases([w for arg in a.words for w in arg.split(",")])
        root = generate_custom_set(phrases, a.out, a.seed, workers=a.workers, base=KeywordSetConfig(
            n_speakers=a.speakers, training_speech=TRAINING_SPEECH))
    except PhraseError as e:
        raise UsageError(f"--words: {e}") from e
    # the set `make train WORDS=...` would generate itself is found there; any other is named to it
    same = str(root) == default_root(phrases) and a.speakers == KeywordSetConfig.n_speakers and a.seed == 0
    hint = "" if same else f' ARGS="--data.init_args.root {root} --data.init_args.generate false"'
    print(f"{len(phrases)} keywords ({', '.join(phrases)}) in {root}\n"
          f"train a bundle on them: make train WORDS=\"{','.join(phrases)}\"{hint}")
    return 0


def run_export(rest: list[str]) -> int:
    """``ssm-signal export``: the frame step and chunk graphs, int8 twins and the sidecar (docs/export.md)."""
    p = _Parser(prog="ssm-signal export", description=(
        "Export a bundle's streaming step (frame and chunk graphs with explicit state, int8 twins, a JSON sidecar) "
        "for ssm_signal.runtime, which needs only numpy and onnxruntime (docs/export.md)."))
    p.add_argument("--model", default="artifacts/kws_default", help="bundle directory or models:/NAME/VERSION")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="the export format (ONNX only)")
    p.add_argument("--out", default=None, help="folder to write (default: onnx/ inside a bundle directory, else "
                                               "artifacts/onnx/<bundle name>)")
    p.add_argument("--no-int8", action="store_true", help="write the float32 graphs only")
    a = p.parse_args(rest)
    from pipelines.export import export_onnx
    from ssm_signal.bundle import load_bundle
    from ssm_signal.runtime.model import EXPORT_SUBDIR

    bundle = load_bundle(a.model)
    out = a.out or (bundle.path / EXPORT_SUBDIR if Path(a.model).is_dir() else Path("artifacts/onnx") / bundle.name)
    sidecar = export_onnx(bundle, out, int8=not a.no_int8)
    print(f"exported {bundle.name} v{bundle.version} to {sidecar.parent} (sidecar {sidecar.name}); stream it without "
          f"torch: python -c \"from ssm_signal.runtime import OnnxSession; s = OnnxSession('{sidecar.parent}')\"")
    return 0


def run_score(rest: list[str]) -> int:
    from pipelines.score import ScoreConfig, score
    from ssm_signal.runtime.sidecar import PRECISIONS, RUNTIMES

    p = _Parser(prog="ssm-signal score", description="Score files into Parquet, resumably.")
    p.add_argument("--model", default="artifacts/kws_default", help="bundle directory or models:/NAME/VERSION")
    p.add_argument("--input", default="data/keywords", help="directory, glob, or manifest.csv/.parquet (path[, label])")
    p.add_argument("--output", default="artifacts/scores/scores.parquet")
    p.add_argument("--frames", action="store_true", help="also write per-frame outputs, partitioned by file")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1", help="GPUs to use (an int, or -1 for all)")
    p.add_argument("--strategy", default="auto", help="ddp for several devices")
    p.add_argument("--fail-on-error", action="store_true", help="exit non-zero if any file failed")
    p.add_argument("--part-rows", type=int, default=ScoreConfig.part_rows,
                   help="rows per Parquet part of the resumable output (a killed run rescores at most one open part)")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="on a GPU, launch the forward kernel by kernel instead of replaying CUDA graphs")
    p.add_argument("--no-mlflow", action="store_true", help="do not record the run in MLflow")
    p.add_argument("--log-output", action="store_true", help="upload the output Parquet to MLflow")
    p.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="onnx: the bundle's ONNX export (`ssm-signal export`) in onnxruntime on the CPU")
    p.add_argument("--onnx", default=None, help="the export's folder (default: onnx/ in the bundle directory)")
    p.add_argument("--precision", default="float32", choices=PRECISIONS, help="the export's graphs to run")
    a = p.parse_args(rest)
    devices = int(a.devices) if a.devices.lstrip("-").isdigit() else a.devices
    summary = score(ScoreConfig(model=a.model, input=a.input, output=a.output, frames=a.frames,
                                batch_size=a.batch_size, num_workers=a.num_workers, accelerator=a.accelerator,
                                devices=devices, strategy=a.strategy, fail_on_error=a.fail_on_error,
                                part_rows=a.part_rows, cuda_graphs=not a.no_cuda_graphs, mlflow=not a.no_mlflow,
                                log_output=a.log_output, runtime=a.runtime, onnx=a.onnx, precision=a.precision))
    return 1 if a.fail_on_error and summary.get("errors") else 0


def run_evaluate(rest: list[str]) -> int:
    from pipelines.evaluate import EvaluateConfig, evaluate
    from pipelines.evaluate.keywords import StreamSettings
    from ssm_signal.bundle import BundleError
    from ssm_signal.data.skips import DataError
    from ssm_signal.runtime.sidecar import PRECISIONS, RUNTIMES

    d, s = EvaluateConfig(), StreamSettings()
    p = argparse.ArgumentParser(prog="ssm-signal evaluate", description=(
        "Stream positives and negatives through the live detector: FRR, false accepts per hour, DET curves, "
        "and (with --calibrate) per-keyword thresholds written into a new bundle version."))
    p.add_argument("--model", default=d.model, help="bundle directory or models:/NAME/VERSION")
    p.add_argument("--positives", action="append", default=[], metavar="P",
                   help="keyword clips: split list .txt, manifest .csv (path,label[,speech_end_s]) or a folder per "
                        "label; repeat for several sets (default: the keyword set's test voices). Anomaly models: a "
                        "sensor table with a per-row label")
    p.add_argument("--negatives", action="append", default=[], metavar="N",
                   help="audio without keywords: a file, a folder (one stream) or a folder of source folders; repeat "
                        "(default: the test half of the generated negative corpus)")
    p.add_argument("--out", default=d.out, help="folder for summary.json, det.parquet, det.png")
    p.add_argument("--calibrate", type=float, nargs="?", const=0.5, default=None, metavar="FA_PER_HOUR",
                   help="pick per-keyword thresholds at this false-accept rate (0.5 if no value is given) on the "
                        "calibration data and write them into a new version of the bundle")
    p.add_argument("--calibration-positives", action="append", default=[], metavar="P",
                   help="positives to calibrate on (default: the keyword set's validation voices)")
    p.add_argument("--calibration-negatives", action="append", default=[], metavar="N",
                   help="negatives to calibrate on (default: the calibration half of the negative corpus)")
    p.add_argument("--calibrated-out", default=None, help="directory of the calibrated bundle (default: the bundle's own)")
    p.add_argument("--min-threshold", type=float, default=d.min_threshold,
                   help="no calibrated threshold goes below this (default: 0.5, even odds)")
    p.add_argument("--windows", default="",
                   help="smoothing windows (frames) to sweep, comma-separated (default: 50, 100 and 200 ms in the "
                        "model's frames, 5,10,20 at 100 frames a second)")
    p.add_argument("--chunk-s", type=float, default=s.chunk_s, help="seconds of audio per push")
    p.add_argument("--lead-s", type=float, default=s.lead_s, help="padding before each positive clip (s)")
    p.add_argument("--trail-s", type=float, default=s.trail_s, help="padding after each positive clip (s)")
    p.add_argument("--pad", default=s.pad, help="'silence' or an audio file looped as the padding")
    p.add_argument("--hit-window-s", type=float, default=s.hit_window_s,
                   help="a detection counts up to this long after the end of speech")
    p.add_argument("--segment-s", type=float, default=s.segment_s,
                   help="cut negative sources into segments this long, each from a fresh state, to stream more of "
                        "them side by side (0, the default: one stream per source, the state carried throughout)")
    p.add_argument("--batch", type=int, default=s.batch, help="streams advanced per model call")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads while streaming (1 is fastest for 100 ms chunks on a small CPU)")
    p.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="onnx: stream through the bundle's ONNX export (`ssm-signal export`), one stream at a time")
    p.add_argument("--onnx", default=None, help="the export's folder (default: onnx/ in the bundle directory)")
    p.add_argument("--precision", default="float32", choices=PRECISIONS, help="the export's graphs to run")
    a = p.parse_args(rest)
    try:
        windows = [int(w) for w in a.windows.split(",") if w.strip()]
        stream = StreamSettings(chunk_s=a.chunk_s, lead_s=a.lead_s, trail_s=a.trail_s, pad=a.pad,
                                hit_window_s=a.hit_window_s, segment_s=a.segment_s, batch=a.batch)
        cfg = EvaluateConfig(model=a.model, positives=a.positives, negatives=a.negatives, out=a.out,
                             calibrate=a.calibrate, calibration_positives=a.calibration_positives,
                             calibration_negatives=a.calibration_negatives, calibrated_out=a.calibrated_out,
                             min_threshold=a.min_threshold, windows=windows, stream=stream, threads=a.threads,
                             runtime=a.runtime, onnx=a.onnx, precision=a.precision)
    except ValueError as e:
        print(f"ssm-signal evaluate: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = evaluate(cfg)
    except (DataError, BundleError, UsageError) as e:
        print(f"ssm-signal evaluate: error: {e}", file=sys.stderr)
        return 1
    from pipelines.evaluate.report import format_summary

    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
