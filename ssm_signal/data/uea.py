"""UEA/UCR ``.ts`` time-series archive files: a reader, a torch Dataset and a padding collate.

The ``.ts`` format (UEA & UCR time-series classification archive) in brief:

- Description lines start with ``#`` (one archive file also uses ARFF-style ``%``); blank lines are ignored.
- Header lines ``@<tag> <value>``, tags case-insensitive: ``@problemName``, ``@timeStamps``, ``@missing``,
  ``@univariate``, ``@dimensions``, ``@equalLength``, ``@seriesLength``, ``@classLabel true <labels...>`` or
  ``@classLabel false``, ``@targetLabel true|false`` (regression), then ``@data``.
- After ``@data`` one case per line: the dimensions (channels) separated by ``:``, the values of each
  dimension separated by ``,``, and (with ``@classLabel true`` or ``@targetLabel true``) the label or target
  as the last ``:`` field. ``?`` is a missing value.
- With ``@timeStamps true`` each dimension is a list of ``(timestamp,value)`` tuples instead. They are
  supported when every dimension of a case carries the same timestamps (the values come out in file order,
  the timestamps as written, in :attr:`TSData.timestamps`); differing timestamps across the dimensions of a
  case would need an alignment policy and raise :class:`DataError`.

Channels of one case must have the same length (the output is ``(L, C)``); variable length across cases is
fine (JapaneseVowels). Every format problem raises :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssm_signal.data.skips import DataError, SkipLog

log = logging.getLogger("ssm_signal.data")

NAN_POLICIES = ("error", "skip", "ffill", "zero")

_BOOL_TAGS = {
    "timestamps": "timestamps",
    "missing": "missing",
    "univariate": "univariate",
    "equallength": "equal_length",
}
_INT_TAGS = {"dimensions": "dimensions", "serieslength": "series_length"}
_TUPLE = re.compile(r"\(([^()]*)\)")


@dataclasses.dataclass
class TSData:
    """The contents of one ``.ts`` file.

    Attributes:
        series: N arrays, each float32 of shape (L_i, C); missing values are NaN.
        labels: N class labels (or regression targets) as written; empty when the file has none.
        class_labels: the labels declared by ``@classLabel true ...``, in header order (empty otherwise).
        metadata: header facts: ``problem_name``, ``timestamps``, ``missing``, ``univariate``, ``dimensions``,
            ``equal_length``, ``series_length``, ``class_label``, ``target_label`` (None where the header is
            silent), ``path``, and ``extra`` (unknown tags, lower-cased, with their raw values).
        lines: N line numbers (1-based) of the cases in the file, for messages.
        timestamps: with ``@timeStamps true``, N lists of L_i timestamps as written; else None.
    """

    series: list[np.ndarray]
    labels: list[str]
    class_labels: list[str]
    metadata: dict[str, Any]
    lines: list[int] = dataclasses.field(default_factory=list)
    timestamps: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.series)

    @property
    def n_channels(self) -> int:
        return int(self.series[0].shape[1]) if self.series else int(self.metadata.get("dimensions") or 0)

    @property
    def lengths(self) -> list[int]:
        return [int(s.shape[0]) for s in self.series]


def _parse_bool(value: str, where: str, tag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise DataError(f"{where}: @{tag} must be true or false, got {value.strip()!r}")


def _parse_int(value: str, where: str, tag: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise DataError(f"{where}: @{tag} must be a positive integer, got {value.strip()!r}") from None
    if n < 1:
        raise DataError(f"{where}: @{tag} must be a positive integer, got {n}")
    return n


def _to_float(tok: str, where: str) -> float:
    tok = tok.strip()
    if tok == "?":
        return math.nan
    try:
        return float(tok)
    except ValueError:
        what = "empty value" if not tok else f"value {tok!r} is not a number"
        raise DataError(f"{where}: {what}") from None


def _split_fields(line: str, timestamps: bool) -> list[str]:
    """Split a data line at ``:``; in timestamped lines only outside ``(...)``, since times contain ``:``."""
    if not timestamps:
        return line.split(":")
    fields, depth, start = [], 0, 0
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            fields.append(line[start:i])
            start = i + 1
    fields.append(line[start:])
    return fields


def _parse_plain(text: str, where: str) -> np.ndarray:
    return np.array([_to_float(t, where) for t in text.split(",")], dtype=np.float64)


def _parse_stamped(text: str, where: str) -> tuple[list[str], np.ndarray]:
    pairs = _TUPLE.findall(text)
    rest = _TUPLE.sub("", text)
    if not pairs or rest.replace(",", "").strip():
        raise DataError(f"{where}: expected a list of (timestamp,value) tuples, got {text[:60]!r}")
    times, values = [], []
    for pair in pairs:
        t, sep, v = pair.rpartition(",")
        if not sep:
            raise DataError(f"{where}: tuple ({pair}) has no ',' between timestamp and value")
        times.append(t.strip())
        values.append(_to_float(v, where))
    return times, np.array(values, dtype=np.float64)


def load_ts(path: str | Path) -> TSData:
    """Read a UEA/UCR ``.ts`` file.

    Args:
        path: the ``.ts`` file.

    Returns:
        :class:`TSData` with N series of shape (L_i, C) float32, their labels and the header metadata.

    Raises:
        DataError: (with path and line number) on an unreadable file, a malformed header or data line,
            a label outside ``@classLabel``, a dimension count or series length that contradicts the header
            or the other cases, channels of one case with different lengths, or no cases at all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read .ts file: {e}") from e

    meta: dict[str, Any] = {
        "problem_name": None,
        "timestamps": None,
        "missing": None,
        "univariate": None,
        "dimensions": None,
        "equal_length": None,
        "series_length": None,
        "class_label": None,
        "target_label": None,
        "path": str(path),
        "extra": {},
    }
    class_labels: list[str] = []
    series: list[np.ndarray] = []
    labels: list[str] = []
    lines: list[int] = []
    stamps: list[list[str]] = []
    in_data = False
    n_dims: int | None = None
    has_label = False
    stamped = False
    first_len: int | None = None

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{path}:{lineno}"
        if not line or line.startswith("#") or line.startswith("%"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{where}: data line before @data (or a header line without '@'): {line[:60]!r}")
            tag, _, value = line[1:].partition(" ")
            tag = tag.lower()
            if tag == "data":
                in_data = True
                if meta["class_label"] and meta["target_label"]:
                    raise DataError(f"{where}: both @classLabel true and @targetLabel true are declared")
                has_label = bool(meta["class_label"] or meta["target_label"])
                n_dims = meta["dimensions"]
                if meta["univariate"] is True:
                    if n_dims not in (None, 1):
                        raise DataError(f"{where}: @univariate true contradicts @dimensions {n_dims}")
                    n_dims = 1
                # Without a header flag, timestamped data is recognised by its '(' tuples per line.
                stamped = bool(meta["timestamps"])
                continue
            if tag == "problemname":
                meta["problem_name"] = value.strip()
            elif tag in _BOOL_TAGS:
                meta[_BOOL_TAGS[tag]] = _parse_bool(value, where, tag)
            elif tag in _INT_TAGS:
                meta[_INT_TAGS[tag]] = _parse_int(value, where, tag)
            elif tag == "classlabel":
                flag, *names = value.split() or [""]
                meta["class_label"] = _parse_bool(flag, where, tag)
                if meta["class_label"]:
                    if not names:
                        raise DataError(f"{where}: @classLabel true declares no class labels")
                    if len(set(names)) != len(names):
                        raise DataError(f"{where}: @classLabel declares a label twice: {names}")
                    class_labels = names
                elif names:
                    raise DataError(f"{where}: @classLabel false followed by labels {names}")
            elif tag == "targetlabel":
                meta["target_label"] = _parse_bool(value, where, tag)
            elif not tag:
                raise DataError(f"{where}: empty header tag '@'")
            else:
                meta["extra"][tag] = value.strip()
            continue

        # A data line.
        if line.startswith("@"):
            raise DataError(f"{where}: header line after @data: {line[:60]!r}")
        line_stamped = stamped or (meta["timestamps"] is None and "(" in line)
        fields = _split_fields(line, line_stamped)
        label = None
        if has_label:
            if len(fields) < 2:
                raise DataError(f"{where}: expected channel values and a label separated by ':', got one field")
            label = fields.pop().strip()
            if not label:
                raise DataError(f"{where}: empty label")
            if meta["class_label"] and label not in class_labels:
                raise DataError(f"{where}: label {label!r} is not among the declared class labels {class_labels}")
            if meta["target_label"]:
                _to_float(label, f"{where}: regression target")
        if n_dims is None:
            n_dims = len(fields)
        elif len(fields) != n_dims:
            origin = "the header" if meta["dimensions"] or meta["univariate"] else "the first case"
            raise DataError(f"{where}: {len(fields)} dimensions, but {origin} says {n_dims}")
        times: list[str] | None = None
        chans = []
        for d, field in enumerate(fields):
            dwhere = f"{where}: dimension {d}"
            if line_stamped:
                t, v = _parse_stamped(field, dwhere)
                if times is None:
                    times = t
                elif t != times:
                    raise DataError(
                        f"{dwhere}: timestamps differ from dimension 0; dimensions with different "
                        "timestamps are unsupported (they would need alignment)"
                    )
            else:
                v = _parse_plain(field, dwhere)
            chans.append(v)
        lens = {len(c) for c in chans}
        if len(lens) != 1:
            raise DataError(
                f"{where}: dimensions of one case have different lengths {[len(c) for c in chans]}; "
                "unsupported (each case must be (L, C))"
            )
        length = lens.pop()
        if meta["series_length"] is not None and meta["equal_length"] is not False and length != meta["series_length"]:
            raise DataError(f"{where}: series length {length}, but @seriesLength is {meta['series_length']}")
        if meta["equal_length"]:
            if first_len is None:
                first_len = length
            elif length != first_len:
                raise DataError(f"{where}: series length {length} differs from {first_len} under @equalLength true")
        series.append(np.stack(chans, axis=1).astype(np.float32))
        lines.append(lineno)
        if label is not None:
            labels.append(label)
        if line_stamped:
            stamps.append(times or [])

    if not in_data:
        raise DataError(f"{path}: no @data line: not a .ts file?")
    if not series:
        raise DataError(f"{path}: no cases after @data")
    if stamps and len(stamps) != len(series):
        raise DataError(f"{path}: some cases have (timestamp,value) tuples and some do not")
    meta["dimensions"] = meta["dimensions"] or n_dims
    return TSData(
        series=series,
        labels=labels,
        class_labels=class_labels,
        metadata=meta,
        lines=lines,
        timestamps=stamps or None,
    )


@dataclasses.dataclass
class FillLog:
    """Series whose missing (non-finite) values were filled in: counted, never silent.

    ``items`` holds (source, values forward-filled, values set to zero) per series touched.
    """

    items: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)

    def add(self, source: str, n_ffill: int, n_zero: int) -> None:
        log.debug("filled %s: %d forward-filled, %d set to 0", source, n_ffill, n_zero)
        self.items.append((str(source), int(n_ffill), int(n_zero)))

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        return {
            "forward_filled": sum(i[1] for i in self.items),
            "zeroed": sum(i[2] for i in self.items),
        }

    def summary(self) -> str:
        if not self.items:
            return "no missing values filled"
        c = self.counts()
        return (
            f"{len(self.items)} series had missing values: {c['forward_filled']} forward-filled, {c['zeroed']} set to 0"
        )


def check_nan_policy(nan: str) -> str:
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan must be one of {NAN_POLICIES}, got {nan!r}")
    return nan


def apply_nan_policy(x: np.ndarray, nan: str, source: str, skips: SkipLog, fills: FillLog) -> np.ndarray | None:
    """Apply a missing-value policy to one series.

    Non-finite values (NaN from ``?`` or empty cells, and +-inf) all count as missing: an inf would
    poison a model just as a NaN does.

    Args:
        x: (L, C) float array.
        nan: ``"error"`` raise :class:`DataError`; ``"skip"`` record in ``skips`` and return None;
            ``"ffill"`` carry the last valid value of each channel forward, leading gaps set to 0;
            ``"zero"`` set to 0. Filled series are recorded in ``fills``.
        source: names the series in messages and records.

    Returns:
        (L, C) array with no missing values (a new array when anything changed), or None when skipped.
    """
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return x
    if nan == "error":
        raise DataError(f"{source}: {n_bad} missing or non-finite values (nan='error'; use 'ffill', 'zero' or 'skip')")
    if nan == "skip":
        skips.add(source, f"missing values: {n_bad} missing or non-finite values")
        return None
    if nan == "zero":
        out = np.where(bad, 0, x).astype(x.dtype)
        fills.add(source, 0, n_bad)
        return out
    # ffill: index of the last valid row at or before t, per channel; rows before any valid one stay bad.
    rows = np.where(bad, 0, np.arange(x.shape[0])[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    out = np.take_along_axis(x, rows, axis=0)
    lead = ~np.isfinite(out)
    out[lead] = 0
    n_lead = int(lead.sum())
    fills.add(source, n_bad - n_lead, n_lead)
    return out


def uea_path(root: str | Path, name: str, split: str) -> Path:
    """The archive's layout: ``<root>/<Name>/<Name>_TRAIN.ts`` or ``_TEST.ts``.

    Raises:
        DataError: unknown split, or the file is absent (with the command that fetches it).
    """
    s = split.upper()
    if s not in ("TRAIN", "TEST"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(root) / name / f"{name}_{s}.ts"
    if not path.is_file():
        raise DataError(
            f"{path}: not found; fetch it with `python benchmarks/fetch_uea.py --dest {root} --names {name}`"
        )
    return path


class UEADataset(Dataset):
    """A UEA/UCR classification split as a torch Dataset.

    ``UEADataset("X_TRAIN.ts")`` or ``UEADataset("BasicMotions", split="train", root="data/uea")``.

    Items are ``(series, label)``: series a float32 Tensor (L_i, C), label the int index of the class in
    :attr:`class_labels` (header order). Training batches variable lengths with ``pipelines.data.pad_batch``.

    Args:
        source: a ``.ts`` path, or a problem name when ``split`` is given.
        split: ``"train"`` or ``"test"``; reads ``<root>/<Name>/<Name>_<SPLIT>.ts``.
        root: archive folder (required with ``split``).
        nan: missing-value policy, see :func:`apply_nan_policy`. The default ``"ffill"`` forward-fills and
            zeroes leading gaps, counted in :attr:`fills`; ``"skip"`` drops the series, recorded in
            :attr:`skips`; ``"error"`` raises :class:`DataError`.
        skips: a shared :class:`SkipLog` to record into (a new one otherwise).

    Attributes:
        labels: per-item class indices (list[int]).
        class_labels: class names, index order.
        lengths: per-item lengths L_i.
        sources: per-item ``path:line``.
        skips, fills: the records of dropped and filled series.
        data: the parsed :class:`TSData` (before the NaN policy).
    """

    def __init__(
        self,
        source: str | Path,
        split: str | None = None,
        root: str | Path | None = None,
        *,
        nan: str = "ffill",
        skips: SkipLog | None = None,
    ) -> None:
        check_nan_policy(nan)
        if split is not None:
            if root is None:
                raise ValueError("root is required with split")
            path = uea_path(root, str(source), split)
        else:
            path = Path(source)
        self.path = path
        self.data = load_ts(path)
        if not self.data.metadata["class_label"]:
            raise DataError(f"{path}: no @classLabel true header: not a classification file")
        self.class_labels = list(self.data.class_labels)
        index = {c: i for i, c in enumerate(self.class_labels)}
        self.skips = skips if skips is not None else SkipLog()
        self.fills = FillLog()
        self.series: list[torch.Tensor] = []
        self.labels: list[int] = []
        self.sources: list[str] = []
        for x, lab, line in zip(self.data.series, self.data.labels, self.data.lines, strict=True):
            src = f"{path}:{line}"
            x = apply_nan_policy(x, nan, src, self.skips, self.fills)
            if x is None:
                continue
            self.series.append(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            self.labels.append(index[lab])
            self.sources.append(src)
        if self.fills:
            log.warning("%s: %s", path, self.fills.summary())
        if not self.series:
            raise DataError(f"{path}: every series was skipped ({self.skips.summary()})")
        self.lengths = [int(s.shape[0]) for s in self.series]

    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    @property
    def num_channels(self) -> int:
        return int(self.series[0].shape[1])

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # A clone, so that a caller's in-place normalisation cannot corrupt the dataset.
        return self.series[i].clone(), self.labels[i]
