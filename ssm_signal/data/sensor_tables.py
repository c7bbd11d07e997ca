"""Sensor streams stored as long tables (CSV or Parquet): one row per time step of one series.

Columns: a series id, a time stamp, the channels (numeric), and a label, given one of three ways:

- ``label_col``: a column constant within each series (classification of whole series);
- ``label_map``: a ``{series_id: label}`` mapping (ids and labels compared as text, so ``1`` matches ``"1"``);
- ``row_label_col``: a label per row (per-step targets, e.g. anomaly detection).

Rules (each problem is a :class:`DataError` or a recorded skip in :attr:`SensorTable.skips`, never silent):

- Rows are sorted by time within each series (a stable sort, so the file order is kept otherwise).
- A series with duplicate timestamps (or missing ones) is skipped and recorded: which of the duplicates is
  right cannot be known. With ``strict=True`` it is a :class:`DataError`.
- Rows without a series id are recorded as one skip (``strict=True``: :class:`DataError`).
- Missing channel values (empty cells, NaN, +-inf) follow ``nan=`` exactly as in
  :func:`ssm_signal.data.uea.apply_nan_policy`: ``"ffill"`` (default; leading gaps set to 0) and
  ``"zero"`` are counted in :attr:`SensorTable.fills`; ``"skip"`` drops the series, or with ``window`` only
  the windows that contain a missing value; ``"error"`` raises.
- A series whose label is missing, not constant (``label_col``), absent from ``label_map``, or outside
  ``classes`` is a recorded skip (``strict=True``: :class:`DataError`). With ``row_label_col`` one bad row
  label skips its whole series: dropping single rows would shift the time axis.
- ``window``/``stride``: fixed-length windows, starts 0, stride, 2*stride, ...; when the last one stops short
  of the end, one more window is aligned to the end, so every row is in some window. A series shorter than
  ``window`` is a recorded skip (``strict=True``: :class:`DataError`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.data.uea import FillLog, apply_nan_policy, check_nan_policy, log

__all__ = ["META_COLUMNS", "SensorTable", "TableSeries", "channel_columns", "read_table", "table_series",
           "write_table"]

#: the columns of a sensor table that are not channels: what the scorer, the evaluation, the live replay and
#: the anomaly data module all leave out (kind: the planted anomaly's kind, in generated tables)
META_COLUMNS = ("series_id", "split", "time", "label", "kind")


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) table; a DataFrame passes."""
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
            return pd.read_csv(path)
        if name.endswith((".tsv", ".tsv.gz")):
            return pd.read_csv(path, sep="\t")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: cannot read table: {e}") from e
    raise DataError(f"{path}: unsupported table format (expected .csv, .tsv or .parquet)")


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as Parquet (``.parquet``, ``.pq``) or CSV (anything else) through a temporary file
    renamed into place, so an interrupted run leaves no half table behind. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix in (".parquet", ".pq"):
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def channel_columns(table: pd.DataFrame, name: str = "table") -> list[str]:
    """The channel columns of a sensor table: every column but :data:`META_COLUMNS`, in table order; each
    must be numeric (DataError otherwise, as for a table without any)."""
    cols = [c for c in table.columns if c not in META_COLUMNS]
    wrong = [c for c in cols if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])]
    if wrong:
        raise DataError(f"{name}: columns {wrong[:8]} are neither channels (numeric) nor one of {list(META_COLUMNS)}")
    if not cols:
        raise DataError(f"{name}: no channel columns besides {[c for c in META_COLUMNS if c in table.columns]}")
    return cols


@dataclasses.dataclass
class TableSeries:
    """One series of a sensor table: ``x`` (L, C) float32 in time order, ``label`` (L,) int64 or None
    (no label column), ``kind`` (L,) text or None, its ``series_id`` and ``split`` ("" without a split
    column)."""

    series_id: str
    split: str
    x: np.ndarray
    label: np.ndarray | None
    kind: np.ndarray | None


def table_series(source: str | Path | pd.DataFrame, channels: int | None = None,
                 splits: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> list[TableSeries]:
    """The series of a sensor table (a table without ``series_id`` is one series), sorted by id and by
    ``time`` within each; only those whose split is in ``splits`` (None: all) and not in ``exclude``.
    ``channels``: the channel count the caller's model expects (DataError when it differs, or when a
    value is NaN or infinite: filling gaps is the readers' choice in training, not a stream's)."""
    name = "<DataFrame>" if isinstance(source, pd.DataFrame) else str(source)
    table = read_table(source)
    cols = channel_columns(table, name)
    if channels is not None and len(cols) != channels:
        raise DataError(f"{name}: {len(cols)} channel columns {cols[:8]}, the model expects {channels}")
    if "split" in table.columns:
        split = table["split"].astype(str)
        keep = ~split.isin(list(exclude)) & (split.isin(list(splits)) if splits is not None else True)
        table = table[keep]
    elif splits is not None and "" not in splits:
        table = table.iloc[:0]
    if "series_id" not in table.columns:
        table = table.assign(series_id="")
    if "time" in table.columns:
        table = table.sort_values(["series_id", "time"], kind="stable")
    out = []
    for sid, g in table.groupby("series_id", sort=True):
        x = g[cols].to_numpy(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{name}: series {sid!r} holds NaN or Inf values")
        label = pd.to_numeric(g["label"]).to_numpy().astype(np.int64) if "label" in g.columns else None
        kind = g["kind"].fillna("").astype(str).to_numpy() if "kind" in g.columns else None
        split = str(g["split"].iloc[0]) if "split" in g.columns else ""
        out.append(TableSeries(str(sid), split, x, label, kind))
    return out


def label_key(value: Any) -> str:
    """Labels and ids compared as text; integral floats as ints, since a NaN in a column makes 1 into 1.0."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _class_order(keys: Sequence[str]) -> list[str]:
    """Numeric-looking labels in numeric order (so "10" follows "9"), then the rest alphabetically."""

    def order(k: str) -> tuple[int, float, str]:
        try:
            return (0, float(k), k)
        except ValueError:
            return (1, 0.0, k)

    return sorted(set(keys), key=order)


class SensorTable(Dataset):
    """Series from a long sensor table as a torch Dataset.

    Items: ``(x, y)`` with x a float32 Tensor (L, C) (L = ``window`` when windowing) and y the int class
    index of the series (``label_col``/``label_map``) or an int64 Tensor (L,) of per-step class indices
    (``row_label_col``). Training batches variable lengths with ``pipelines.data.pad_batch``.

    Args:
        source: a CSV/Parquet path or a DataFrame.
        id_col: the series id column.
        time_col: the time column (numeric, datetime, or ISO-8601 text); None keeps the file order.
        channels: channel columns; None takes every numeric column other than id, time and label.
        label_col, label_map, row_label_col: the label source; exactly one.
        classes: the label set, in index order; labels outside it are skipped. None: the labels found,
            numeric ones in numeric order, then text ones alphabetically.
        nan: ``"error"|"skip"|"ffill"|"zero"``, see the module docstring.
        window, stride: fixed-length windows (stride defaults to window).
        strict: raise :class:`DataError` instead of recording skips (not for ``nan=``, which has ``"error"``).
        skips: a shared :class:`SkipLog` to record into.

    Attributes:
        series_ids: ids of the series kept, in sorted id order.
        class_labels: class names (text), index order.
        channels: channel column names, channel order.
        index: per item ``(series_id, start, stop)`` rows of the sorted series.
        labels: per item: the class index (int), or with ``row_label_col`` the (L,) int64 array.
        skips, fills: the records of dropped series/windows and filled values.
    """

    def __init__(
        self,
        source: str | Path | pd.DataFrame,
        *,
        id_col: str = "series_id",
        time_col: str | None = "time",
        channels: Sequence[str] | None = None,
        label_col: str | None = None,
        label_map: Mapping[Hashable, Any] | None = None,
        row_label_col: str | None = None,
        classes: Sequence[Any] | None = None,
        nan: str = "ffill",
        window: int | None = None,
        stride: int | None = None,
        strict: bool = False,
        skips: SkipLog | None = None,
    ) -> None:
        check_nan_policy(nan)
        if sum(x is not None for x in (label_col, label_map, row_label_col)) != 1:
            raise ValueError("give exactly one of label_col, label_map, row_label_col")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        stride = stride if stride is not None else window
        if stride is not None and stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.name = "<DataFrame>" if isinstance(source, pd.DataFrame) else str(source)
        self.strict = strict
        self.skips = skips if skips is not None else SkipLog()
        self.fills = FillLog()
        self.per_step = row_label_col is not None
        self.window, self.stride = window, stride

        df = read_table(source)
        if len(df) == 0:
            raise DataError(f"{self.name}: empty table")
        lab_col = label_col or row_label_col
        needed = [c for c in (id_col, time_col, lab_col) if c is not None]
        self._require(df, needed)
        reserved = set(needed)
        if channels is None:
            channels = [
                c
                for c in df.columns
                if c not in reserved and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            ]
            if not channels:
                raise DataError(f"{self.name}: no numeric channel columns besides {sorted(reserved)}")
        else:
            channels = list(channels)
            self._require(df, channels)
            clash = reserved.intersection(channels)
            if clash:
                raise DataError(f"{self.name}: channel columns {sorted(clash)} are also id/time/label columns")
            wrong = [c for c in channels if not pd.api.types.is_numeric_dtype(df[c])]
            if wrong:
                raise DataError(f"{self.name}: channel columns {wrong} are not numeric")
        self.channels = list(channels)

        if time_col is not None:
            df = df.assign(**{time_col: self._time_values(df[time_col], time_col)})
        no_id = df[id_col].isna()
        if no_id.any():
            self._skip(f"{self.name}[{id_col}=<missing>]", f"missing series id: {int(no_id.sum())} rows")
            df = df[~no_id]

        allowed = None if classes is None else [label_key(c) for c in classes]
        if allowed is not None and len(set(allowed)) != len(allowed):
            raise ValueError(f"classes has duplicates (compared as text): {allowed}")
        mapping = None if label_map is None else {label_key(k): v for k, v in label_map.items()}

        # First pass: order rows, check time and labels, apply the NaN policy. Classes are fixed only
        # after it (when not given, they are the labels found in the series kept).
        kept: list[tuple[Any, np.ndarray, Any]] = []
        for sid, g in df.groupby(id_col, sort=True):
            src = f"{self.name}[{id_col}={sid}]"
            if time_col is not None:
                g = g.sort_values(time_col, kind="stable")
                t = g[time_col]
                if t.isna().any():
                    self._skip(src, f"missing time: {int(t.isna().sum())} rows")
                    continue
                dup = t.duplicated(keep=False)
                if dup.any():
                    self._skip(src, f"duplicate timestamps: {int(dup.sum())} rows, first at {t[dup].iloc[0]}")
                    continue
            lab = self._series_label(g, src, label_col, mapping, row_label_col, sid, allowed)
            if lab is None:
                continue
            x = g[self.channels].to_numpy(dtype=np.float64)
            if window is not None and x.shape[0] < window:
                self._skip(src, f"shorter than window: {x.shape[0]} < {window} rows")
                continue
            if not (nan == "skip" and window is not None):
                x = apply_nan_policy(x, nan, src, self.skips, self.fills)
                if x is None:
                    continue
            kept.append((sid, x.astype(np.float32), lab))

        if allowed is None:
            found = [k for _, _, lab in kept for k in ([lab] if isinstance(lab, str) else lab)]
            allowed = _class_order(found)
        self.class_labels = list(allowed)
        cls = {k: i for i, k in enumerate(self.class_labels)}

        self.series_ids: list[Any] = []
        self._x: list[np.ndarray] = []
        self._y: list[Any] = []
        self.index: list[tuple[Any, int, int]] = []
        self._where: list[tuple[int, int, int]] = []
        for sid, x, lab in kept:
            y = np.array([cls[k] for k in lab], dtype=np.int64) if self.per_step else cls[lab]
            si = len(self._x)
            self.series_ids.append(sid)
            self._x.append(x)
            self._y.append(y)
            for start, stop in self._spans(x.shape[0]):
                if nan == "skip" and window is not None:
                    n_bad = int((~np.isfinite(x[start:stop])).sum())
                    if n_bad:
                        self.skips.add(
                            f"{self.name}[{id_col}={sid}][{start}:{stop}]",
                            f"missing values: {n_bad} missing or non-finite values in window",
                        )
                        continue
                self.index.append((sid, start, stop))
                self._where.append((si, start, stop))
        if self.fills:
            log.warning("%s: %s", self.name, self.fills.summary())
        if not self.index:
            raise DataError(f"{self.name}: no usable series ({self.skips.summary()})")

    def _require(self, df: pd.DataFrame, cols: Sequence[str]) -> None:
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{self.name}: missing columns {missing}; the table has {list(df.columns)}")

    def _skip(self, source: str, reason: str) -> None:
        if self.strict:
            raise DataError(f"{source}: {reason} (strict=True)")
        self.skips.add(source, reason)

    def _time_values(self, t: pd.Series, col: str) -> pd.Series:
        if pd.api.types.is_numeric_dtype(t) or pd.api.types.is_datetime64_any_dtype(t):
            return t
        try:
            # Text times sort correctly only as parsed times; ISO 8601 is the one unambiguous text form.
            return pd.to_datetime(t, format="ISO8601")
        except (ValueError, TypeError) as e:
            raise DataError(
                f"{self.name}: time column {col!r} is neither numeric, datetime nor ISO 8601 text: {e}"
            ) from e

    def _series_label(
        self,
        g: pd.DataFrame,
        src: str,
        label_col: str | None,
        mapping: dict[str, Any] | None,
        row_label_col: str | None,
        sid: Any,
        allowed: list[str] | None,
    ) -> str | list[str] | None:
        """The series' label key, or per-row keys; None after recording why there is none."""
        if row_label_col is not None:
            raw = g[row_label_col]
            if raw.isna().any():
                self._skip(src, f"missing label: {int(raw.isna().sum())} rows without a {row_label_col!r} value")
                return None
            keys = [label_key(v) for v in raw.to_numpy()]
            if allowed is not None:
                unknown = sorted(set(keys) - set(allowed))
                if unknown:
                    self._skip(src, f"unknown label: {unknown} not in {allowed}")
                    return None
            return keys
        if mapping is not None:
            key = label_key(sid)
            if key not in mapping or _is_missing(mapping[key]):
                self._skip(src, "missing label: series id not in label_map")
                return None
            lab = label_key(mapping[key])
        else:
            col = g[label_col]
            values = col.dropna().unique()
            if len(values) == 0:
                self._skip(src, f"missing label: no {label_col!r} value")
                return None
            if len(values) > 1 or col.isna().any():
                shown = sorted({label_key(v) for v in values}) + (["<missing>"] if col.isna().any() else [])
                self._skip(src, f"inconsistent label: {label_col!r} is not constant within the series: {shown}")
                return None
            lab = label_key(values[0])
        if allowed is not None and lab not in allowed:
            self._skip(src, f"unknown label: {lab!r} not in {allowed}")
            return None
        return lab

    def _spans(self, n: int) -> list[tuple[int, int]]:
        if self.window is None:
            return [(0, n)]
        w, s = self.window, self.stride
        starts = list(range(0, n - w + 1, s))
        if starts[-1] + w < n:
            starts.append(n - w)
        return [(a, a + w) for a in starts]

    @property
    def labels(self) -> list[Any]:
        return [self._y[si] if not self.per_step else self._y[si][a:b] for si, a, b in self._where]

    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        si, a, b = self._where[i]
        x = torch.from_numpy(self._x[si][a:b].copy())
        if self.per_step:
            return x, torch.from_numpy(self._y[si][a:b].copy())
        return x, self._y[si]
