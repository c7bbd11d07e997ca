"""The scoring job: list, skip what is done, score long files in blocks and the rest in batches, merge, report.

    ssm-signal score --model artifacts/kws_default --input data/keywords --output scores.parquet [--frames]

Pipeline: inputs (a directory, a glob, or a CSV/Parquet manifest with path[, label]) are
listed and sorted by length so batches hold similar lengths (little padding); DataLoader
workers read a batch at a time, 16-bit PCM WAV at the model's rate with one read per file and
a header walk (``ssm_signal.data.wav_pcm16``), anything else decoded and resampled (the
bundle's own ``prepare_signal``, so results equal ``bundle.predict`` and a StreamingSession);
the model runs each padded batch in windows with the state carried across them (memory
independent of file length; causal, so padding after a file's end never changes its frames);
``Trainer.predict`` spreads batches over GPUs with DDP, and a prediction writer appends the
rows as atomic Parquet parts of several batches. Files too long to hold whole are read in blocks
with the state carried (``pipelines.score.long_files``: memory bounded by the window). A rerun skips
the files already in the parts, matched by the model's fingerprint and each file's identity
(path, size, modification time): a killed or SIGTERM-ed run resumes and ends with exactly one
row per input row, a changed file is rescored, and rows of another model are never mixed in (the
job refuses). Bad inputs (unreadable, not a regular file, not what the model reads, non-finite
model output) get an error row and scoring goes on.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from pipelines.errors import Interrupted, UsageError
from pipelines.score.batching import BatchFiles, is_audio, score_loader
from pipelines.score.config import ScoreConfig
from pipelines.score.inputs import Item, check_output, display_path, list_inputs
from pipelines.score.long_files import score_long_file, split_long
from pipelines.score.rows import SCHEMA, RowIdentity, Scored, item_key, merge_rows
from pipelines.score.runtime import OnnxFrames, TorchFrames, frame_runner
from pipelines.score.summary import format_summary, summarize, track
from pipelines.score.writer import ROW_OPTIONS, PartWriter, finished_keys, is_score_output, read_parts, write_atomic
from ssm_signal.bundle import Bundle, load_bundle
from ssm_signal.data.file_checks import os_error_words

log = logging.getLogger("ssm_signal.pipelines")


class SignalStop:
    """SIGTERM during a job: remembered by the handler, acted on between batches and blocks
    (:meth:`check` raises :class:`Interrupted`), so the finished part is written before the job ends.
    Lightning's own SIGTERM handler only logs and goes on; it calls this one too (it chains them)."""

    SIGNALS = (signal.SIGTERM,)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():  # handlers are set from the main thread only
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        log.warning("received %s: stopping after the current batch", signal.Signals(signum).name)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, f"stopped by {signal.Signals(self.signum).name}")


def score(cfg: ScoreConfig) -> dict[str, Any]:
    """Run (or resume) a scoring job; returns the summary.

    Raises UsageError (bad input spec or output, rows of another model in the output), BundleError,
    or Interrupted (SIGTERM: the rows scored so far are kept, a rerun resumes).
    """
    with SignalStop() as stop:
        try:
            return _score(cfg, stop)
        except Interrupted as e:
            out = Path(cfg.output)
            raise Interrupted(e.signum, f"{e}; the finished rows are kept in {out.with_name(out.name + '.parts')}: "
                                        "rerun the same command to resume") from None


def _score(cfg: ScoreConfig, stop: SignalStop) -> dict[str, Any]:
    t0 = time.time()
    if cfg.mlflow:  # an unreachable server is said now, not after the whole job
        from pipelines.tracking import check_tracking_server

        check_tracking_server()
    bundle = load_bundle(cfg.model)
    gpu = cfg.runtime == "torch" and cfg.accelerator != "cpu" and torch.cuda.is_available()
    runner = frame_runner(bundle, cfg.runtime, torch.device("cuda", 0) if gpu else torch.device("cpu"), cfg.onnx,
                          cfg.precision)
    audio = is_audio(bundle)
    out = Path(cfg.output)
    check_output(out, cfg.input, is_score_output)
    skipped: collections.Counter = collections.Counter()
    items = list_inputs(cfg.input, audio, skipped)
    parts_dir = out.with_name(out.name + ".parts")
    frames_dir = out.with_name(out.stem + "_frames") if cfg.frames else None
    try:
        parts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--output {out}: cannot write there ({os_error_words(e)})") from e
    fingerprint = runner.fingerprint  # the bundle's, marked with the runtime where it is not torch
    done = finished_keys(parts_dir, out, fingerprint)
    todo, seen = [], set()
    for it in items:  # each input once (a manifest may list a path twice), and only if not scored as it is now
        key = item_key(it)
        if key not in done and key not in seen:
            seen.add(key)
            todo.append(it)
    log.info("scoring %d files (%d of %d already done) with %s v%s (%s)", len(todo), len(items) - len(todo), len(items),
             bundle.name, bundle.version, runner.name)
    writer = PartWriter(parts_dir, frames_dir, bundle, part_rows=cfg.part_rows,
                        identity=RowIdentity.of(bundle, todo, fingerprint))
    graphs: dict[str, int] = {}
    todo, long = split_long(todo, audio, bundle.sample_rate, cfg.long_bytes)
    if long and os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        _score_long(long, bundle, runner, cfg, writer, stop)
    if todo:
        from pipelines.score.predict import predict_batches  # Lightning: only for a job with batch-path files

        loader, ring = score_loader(todo, bundle, cfg, gpu)
        trainer, scorer = predict_batches(loader, ring, bundle, runner, cfg, writer, len(todo), stop)
        graphs = dict(scorer.graphs.counts) if scorer.graphs is not None else {}
        trainer.strategy.barrier()  # every rank's parts are written before rank 0 merges
        if not trainer.is_global_zero:
            return {}
    else:
        writer.close()
    df = merge_rows(read_parts(parts_dir, out, fingerprint), items)
    write_atomic(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False), out, **ROW_OPTIONS)
    wall = time.time() - t0
    summary = summarize(df, bundle, wall, len(todo) + len(long), writer)
    summary["runtime"] = runner.name
    if skipped:
        summary["skipped_files"] = dict(skipped.most_common())
    if graphs:  # this rank's batches: replayed, captured (eager on a new shape), eager (past the limits)
        summary["cuda_graph_batches"] = graphs
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    if cfg.mlflow:
        track(cfg, bundle, summary, out)
    return summary


def _score_long(items: list[Item], bundle: Bundle, runner: TorchFrames | OnnxFrames, cfg: ScoreConfig,
                writer: PartWriter, stop: SignalStop) -> None:
    """The long files, one at a time in blocks (pipelines.score.long_files), their rows through ``writer``."""
    if isinstance(runner, TorchFrames):
        bundle.model.to(runner.device)
    try:
        for it in items:
            log.info("scoring %s in blocks (too long to read whole)", display_path(it.path))
            r = score_long_file(it.path, bundle, runner, cfg.frames, stop.check)
            files = BatchFiles([it.path], [it.label], [r.error], [r.seconds], [r.error is None])
            writer.write_file(files, Scored(r.scores, r.frames))
            writer.finish(0)  # a long file is many batches' work: on disk at once
    except Interrupted:
        writer.finish(0)
        writer.close()
        raise
