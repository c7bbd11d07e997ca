"""The resumable output on disk: rows written as atomic Parquet parts, read back on a rerun.

:class:`PartWriter` collects scored batches into parts of several batches and writes them from a
background thread, each file whole or not at all (:func:`write_atomic`); :func:`read_parts` and
:func:`finished_keys` read what a killed or finished run left, refusing rows of another model.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import UsageError
from pipelines.score.batching import BatchFiles
from pipelines.score.rows import IDENTITY_COLUMNS, SCHEMA, RowIdentity, Scored, result_rows, row_keys
from ssm_signal.bundle import Bundle


def is_score_output(path: Path) -> bool:
    """Whether an existing file is a scoring output (a Parquet file with this scorer's columns)."""
    try:
        names = set(pq.read_schema(path).names)
    except Exception:  # not Parquet, unreadable: not ours
        return False
    return {"path", "status", "scores", "model", "model_version"} <= names


# Parquet options for tables in SCHEMA: dictionary encoding only for the columns of few distinct
# values (the default tries it on every column: on the per-label scores and the unique paths it is
# wasted work, half the cost of writing a part)
ROW_OPTIONS = {"use_dictionary": ["status", "error", "label", "true_label", "model", "model_version", "fingerprint"]}


def write_atomic(table: pa.Table, path: Path, **options: Any) -> None:
    """``table`` to ``path`` as Parquet (``options``: pyarrow.parquet.write_table's), whole or not at all."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, **options)
    os.replace(tmp, path)  # a part either exists whole or not at all


class PartWriter:
    """Writes the scored rows as Parquet parts (per rank), atomically, several batches to a part.

    Off the model's critical path: a batch's results are waited for one batch behind (when the next
    batch has been handed to the GPU; its scores were copied back asynchronously meanwhile, and its
    ring slot is checked then, before the slot can be reused) and added to the open part. A part is
    closed when it holds ``part_rows`` rows or its first batch is :attr:`PART_SECONDS` old, and at
    the end; one background thread builds its rows (:func:`result_rows`) and writes its files, at
    most :attr:`MAX_QUEUED` parts behind. Why several batches to a part: a part per 1024-file batch
    was ~4 ms of encoding and writing, with the writer thread taking the GIL from the main thread
    over and over, at GPU rates of 100+ batches per second. Everything is on disk when the epoch
    ends. A killed run loses at most the rows of the parts not yet renamed into place (the open one:
    at most ``part_rows`` rows or PART_SECONDS of work, and those in flight), which the rerun scores.
    """

    MAX_QUEUED = 4
    PART_SECONDS = 1.0  # a part is closed at its next batch once its first batch is this old

    def __init__(self, parts_dir: Path, frames_dir: Path | None, bundle: Bundle, lag: int = 1,
                 part_rows: int = 16384, identity: RowIdentity | None = None):
        self.parts_dir, self.frames_dir, self.bundle, self.lag = parts_dir, frames_dir, bundle, lag
        self.identity = identity or RowIdentity()
        self.part_rows = part_rows
        # (files, results, rank) of batches not waited for yet: not the batch itself, whose samples may
        # be a large device tensor
        self.pending: collections.deque[tuple[BatchFiles, Scored, int]] = collections.deque()
        self.part: list[tuple[BatchFiles, Scored]] = []  # the open part's batches, results waited for
        self.part_len, self.part_t0 = 0, 0.0
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-parts")
        self.queued: collections.deque[concurrent.futures.Future] = collections.deque()
        self.seconds = 0.0
        self.first: float | None = None  # steady-state throughput: from the first batch written
        self.last = 0.0
        self.seconds_after_first = 0.0

    def add(self, files: BatchFiles, prediction: Scored, rank: int = 0) -> None:
        """One predicted batch: ``files`` and their results, possibly still on their way from the device
        (waited for ``lag`` batches later)."""
        self.pending.append((files, prediction, rank))
        while len(self.pending) > self.lag:
            self._write(*self.pending.popleft())

    def write_file(self, files: BatchFiles, prediction: Scored, rank: int = 0) -> None:
        """Rows scored outside the batch path (long files, read in blocks), results at hand: into the open part."""
        self._write(files, prediction, rank)

    def finish(self, rank: int) -> None:
        """Write every row received so far (also when a run stops early), and wait until they are on disk."""
        while self.pending:
            self._write(*self.pending.popleft())
        self._close_part(rank)
        while self.queued:
            self.queued.popleft().result()  # re-raises a failed write
        self.last = time.time()

    def close(self) -> None:
        """Wait for the parts in flight and stop the writer thread (also after a failed run)."""
        self.io.shutdown(wait=True)

    def _write(self, files: BatchFiles, prediction: Scored, rank: int) -> None:
        prediction.wait()
        if not self.part:
            self.part_t0 = time.monotonic()
        self.part.append((files, prediction))
        self.part_len += len(files)
        if self.part_len >= self.part_rows or time.monotonic() - self.part_t0 >= self.PART_SECONDS:
            self._close_part(rank)
        batch_s = float(sum(files.duration))
        self.seconds += batch_s
        now = time.time()
        if self.first is None:
            self.first = now
        else:
            self.seconds_after_first += batch_s
        self.last = now

    def _close_part(self, rank: int) -> None:
        if not self.part:
            return
        batches, self.part, self.part_len = self.part, [], 0
        while self.queued and (self.queued[0].done() or len(self.queued) >= self.MAX_QUEUED):
            self.queued.popleft().result()
        self.queued.append(self.io.submit(self._write_part, batches, rank))

    def _write_part(self, batches: list[tuple[BatchFiles, Scored]], rank: int) -> None:
        files = BatchFiles.concat([f for f, _ in batches])
        table, frame_tables = result_rows(files, Scored.concat([s for _, s in batches]), self.bundle, self.identity)
        for df in frame_tables:  # frames first: a finished row implies its frames exist
            key = _file_key(df.attrs["source"])
            out = self.frames_dir / f"file={key}"
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(pa.Table.from_pandas(df, preserve_index=False), out / "part-0.parquet")
        write_atomic(table, self.parts_dir / f"part-r{rank}-{uuid.uuid4().hex[:12]}.parquet", **ROW_OPTIONS)


def _file_key(path: str) -> str:
    import hashlib

    return hashlib.sha1(os.fsencode(path)).hexdigest()[:16]


def read_parts(parts_dir: Path, output: Path, fingerprint: str, columns: list[str] | None = None) -> pa.Table:
    """The rows already in ``parts_dir`` (``columns`` of SCHEMA, all by default), all of this model.

    Raises UsageError when a part is not this scorer's (an older version's, or damaged) or holds rows
    of another model (another fingerprint: retrained, or another bundle): they are never mixed.
    """
    files = sorted(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else []
    schema = pa.schema([SCHEMA.field(c) for c in columns]) if columns else SCHEMA
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, columns=columns, schema=schema))
        except Exception as e:
            raise UsageError(f"--output {output}: {f} is not a part of this scorer's output ({type(e).__name__}); "
                             f"name another --output, or delete {output} and {parts_dir} to start afresh") from e
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    others = set(pc.unique(table["fingerprint"]).to_pylist()) - {fingerprint}
    if others:
        rows = table.filter(pc.not_equal(table["fingerprint"], fingerprint))
        raise UsageError(
            f"--output {output} holds rows of another model ({_model_names(rows)}, fingerprint "
            f"{sorted(others, key=str)[0]}), not of this one (fingerprint {fingerprint}); name another --output, "
            f"or delete {output} and {parts_dir} to start afresh")
    return table


def _model_names(rows: pa.Table) -> str:
    if "model" not in rows.column_names:
        return "an unknown model"
    return ", ".join(sorted({f"{m} v{v}" for m, v in zip(rows["model"].to_pylist(),
                                                          rows["model_version"].to_pylist(), strict=True)}))


def finished_keys(parts_dir: Path, output: Path, fingerprint: str) -> set[tuple[bytes, int, int]]:
    """``(path key, size, mtime_ns)`` of every input already scored by this model."""
    table = read_parts(parts_dir, output, fingerprint, IDENTITY_COLUMNS)
    return set(zip(row_keys(table), table["size"].to_pylist(), table["mtime_ns"].to_pylist(), strict=True))
