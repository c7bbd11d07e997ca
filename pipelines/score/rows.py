"""The output's rows: one per input file, built column-wise from a batch's results, and the merge.

:class:`Scored` is a batch's results (clip scores, and frames with ``--frames``); :func:`result_rows`
turns a batch's files and results into rows in :data:`SCHEMA` (a non-finite result is an error row,
never "ok"); :func:`merge_rows` gives the final output: one row per input row, in the inputs' order.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from pipelines.score.batching import BatchFiles
from pipelines.score.inputs import Item, display_path, path_key
from ssm_signal.bundle import Bundle, clip_labels, outputs_to_prediction
from ssm_signal.events import DetectorConfig, EventDetector


@dataclasses.dataclass
class Scored:
    """One batch's results as ``predict_step`` returns them, possibly still on their way.

    scores: (n_ok, K) host tensor (pinned, filled by an asynchronous copy on a GPU) or None when no
    file of the batch decoded; frames: per file (F_i, out_dim) host tensors with ``--frames``.
    :meth:`wait` blocks until they are there, then runs ``check`` (for a batch read from a ring
    slot: :meth:`BatchRing.check`, that the slot was not reused before its copy completed).
    """

    scores: Tensor | None
    frames: list[Tensor] | None = None
    ready: torch.cuda.Event | None = None
    check: Callable[[], None] | None = None

    @classmethod
    def concat(cls, parts: list[Scored]) -> Scored:
        """Several batches' results (each waited for) as one: scores and frames in batch order."""
        if len(parts) == 1:
            return parts[0]
        scores = [p.scores for p in parts if p.scores is not None]
        frames = [p.frames for p in parts if p.frames is not None]
        return cls(torch.cat(scores) if scores else None, [f for fs in frames for f in fs] if frames else None)

    def wait(self) -> Scored:
        if self.ready is not None:
            self.ready.synchronize()
            self.ready = None
        if self.check is not None:
            self.check()
            self.check = None
        return self


@dataclasses.dataclass(frozen=True)
class RowIdentity:
    """What each row records of what it was scored from: the model's fingerprint and, per path, the
    input's ``(size, mtime_ns)`` at listing (-1 where unknown). A resumed job trusts a row only when
    all of these still hold."""

    fingerprint: str = ""
    files: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, bundle: Bundle, items: list[Item], fingerprint: str | None = None) -> RowIdentity:
        """``fingerprint``: the scoring runtime's (default: the bundle's, for torch)."""
        return cls(fingerprint or bundle.fingerprint, {it.path: (it.size, it.mtime_ns) for it in items})


NON_FINITE = "NonFiniteOutput: the model's output is NaN or Inf for this input"


def result_rows(files: BatchFiles, out: Scored, bundle: Bundle, identity: RowIdentity | None = None
                ) -> tuple[pa.Table, list[pd.DataFrame]]:
    """Rows of ``files`` (one or several batches) as a table in SCHEMA, built column-wise, and, with frames,
    one frame table per file. ``out``: their results, waited for (scores of the ok files, in order).
    A file whose scores (or frames) are not finite gets an error row: a NaN is never reported "ok"."""
    identity = identity or RowIdentity()
    n = len(files)
    ok = np.asarray(files.ok, dtype=bool)
    error = list(files.error)
    ok_pos = np.flatnonzero(ok)
    label: list[str | None] = [None] * n
    top = np.zeros(n)
    s = np.zeros((0, 0))
    frame_tables = []
    if len(ok_pos):
        s = out.scores.double().numpy()
        finite = np.isfinite(s).all(axis=1)
        if out.frames is not None:
            finite &= np.array([bool(torch.isfinite(f).all()) for f in out.frames], dtype=bool)
        if not finite.all():
            for i in ok_pos[~finite].tolist():
                ok[i], error[i] = False, NON_FINITE
            s = s[finite]
            out = Scored(None, [f for f, keep in zip(out.frames, finite, strict=True) if keep]
                         if out.frames is not None else None)
            ok_pos = ok_pos[finite]
    if len(ok_pos):
        top[ok_pos] = s.max(axis=1)
        labels = clip_labels(s, bundle.config)
        if len(ok_pos) == n:
            label = labels
        else:
            for i, lab in zip(ok_pos.tolist(), labels, strict=True):
                label[i] = lab
        for j, i in enumerate(ok_pos if out.frames is not None else []):
            p = outputs_to_prediction(out.frames[j], bundle.config)
            df = pd.DataFrame(p.frame_scores, columns=bundle.labels or
                              [f"out{k}" for k in range(p.frame_scores.shape[1])])
            df.insert(0, "frame", np.arange(len(df)))
            df.insert(0, "path", display_path(files.path[i]))
            df.attrs["source"] = files.path[i]  # the path as listed: the frames folder's key
            frame_tables.append(df)
    detected = np.zeros(n, dtype=bool)
    if len(ok_pos):
        detected[ok_pos] = detections(s, bundle)
    # the scores column from one flat array: row i holds s[j] where ok, null where not
    counts = np.zeros(n, dtype=np.int32)
    counts[ok_pos] = s.shape[1] if len(ok_pos) else 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    scores = pa.ListArray.from_arrays(offsets, pa.array(s.reshape(-1), pa.float64()), mask=pa.array(~ok))
    shown = [display_path(p) for p in files.path]
    ident = [identity.files.get(p, (-1, -1)) for p in files.path]
    table = pa.Table.from_pydict({
        "path": shown,
        # the exact bytes of a name that is not UTF-8 (the path column holds it with \x escapes)
        "path_bytes": [None if d == p else os.fsencode(p) for d, p in zip(shown, files.path, strict=True)],
        "status": np.where(ok, "ok", "error").tolist(),
        "error": [None if e is None else display_path(e) for e in error],
        "label": label, "score": pa.array(top, mask=~ok), "scores": scores, "detected": pa.array(detected, mask=~ok),
        "duration_s": pa.array(files.duration, pa.float64()),
        "true_label": files.label,
        "model": [bundle.name] * n, "model_version": [bundle.version] * n,
        "fingerprint": [identity.fingerprint] * n,
        "size": pa.array([i[0] for i in ident], pa.int64()), "mtime_ns": pa.array([i[1] for i in ident], pa.int64()),
    }, schema=SCHEMA)
    return table, frame_tables


SCHEMA = pa.schema([("path", pa.string()), ("path_bytes", pa.binary()), ("status", pa.string()),
                    ("error", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                    ("scores", pa.list_(pa.float64())), ("detected", pa.bool_()), ("duration_s", pa.float64()),
                    ("true_label", pa.string()),
                    ("model", pa.string()), ("model_version", pa.string()), ("fingerprint", pa.string()),
                    ("size", pa.int64()), ("mtime_ns", pa.int64())])


def detections(scores: np.ndarray, bundle: Bundle) -> np.ndarray:
    """(B, K) clip scores -> (B,) whether each clip passes the bundle's detector thresholds (its
    ``detector`` section, e.g. calibrated per keyword; else the defaults): a keyword model's clip label,
    read at the last frame, is a reportable keyword at or above its threshold; an anomaly model's
    maximum frame score is above its threshold. Other heads: False."""
    kind = bundle.config.head.kind
    if kind not in ("classify", "anomaly"):
        return np.zeros(len(scores), dtype=bool)
    labels = bundle.labels or [str(i) for i in range(scores.shape[1])]
    det = EventDetector("keyword" if kind == "classify" else "anomaly", labels if kind == "classify" else ["anomaly"],
                        1.0, DetectorConfig().over(bundle.detector), default_threshold=bundle.config.head.threshold)
    if kind == "anomaly":
        return scores[:, 0] > det.thresholds[0]
    theta = np.full(len(labels), np.inf)
    theta[det.reportable] = det.thresholds
    top = scores.argmax(axis=1)
    return scores[np.arange(len(scores)), top] >= theta[top]


def merge_rows(table: pa.Table, items: list[Item]) -> pd.DataFrame:
    """One row per input row, in the inputs' order: each input's latest row for its current identity
    (path, size, mtime), with that input row's own true label (a manifest may list a path twice)."""
    rows = table.to_pandas()
    rows["_key"] = row_keys(table)
    rows = rows.drop_duplicates(["_key", "size", "mtime_ns"], keep="last").set_index(["_key", "size", "mtime_ns"], drop=False)
    keys = [item_key(it) for it in items]
    at = rows.index.get_indexer(keys)
    if (at < 0).any():
        missing = [display_path(items[i].path) for i in np.flatnonzero(at < 0)[:3]]
        raise RuntimeError(f"{int((at < 0).sum())} inputs have no row after scoring (e.g. {missing}); "
                           "rerun to score them")
    df = rows.iloc[at].reset_index(drop=True)
    df["true_label"] = [it.label for it in items]
    return df[SCHEMA.names]


IDENTITY_COLUMNS = ["path", "path_bytes", "fingerprint", "size", "mtime_ns", "model", "model_version"]


def row_keys(table: pa.Table) -> list[bytes]:
    """Each row's input as :func:`path_key` gives it: the exact bytes where the name is not UTF-8."""
    return [b if b is not None else p.encode() for p, b in zip(table.column("path").to_pylist(),
                                                                 table.column("path_bytes").to_pylist(), strict=True)]


def item_key(it: Item) -> tuple[bytes, int, int]:
    return path_key(it.path), it.size, it.mtime_ns
