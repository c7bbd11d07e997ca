"""Stream snapshots: one stream's state as bytes, in numpy, for every session (torch or ONNX).

The bytes are the safetensors layout, so any safetensors reader opens them (no pickling):

    8 bytes    n, the header's length (little-endian u64)
    n bytes    JSON: {key: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
               "__metadata__": {str: str}}, padded with spaces to a multiple of 8
    the rest   every tensor's bytes, little-endian, contiguous in offset order

Written and read here with numpy alone (the torch-free runtime cannot depend on torch's or
safetensors' readers; a test checks both ways against the safetensors package). The tensors are a
stream state's ``state_dict`` (the key layout of ``EngineState``); the metadata say what took the
snapshot (the bundle's name, version and fingerprint), a SHA-256 checksum over the tensors, and the
session's backlog and labels. :func:`open_snapshot` refuses anything else with a ValueError that says
why, before any of it reaches a stream; :func:`check_arrays` then checks the state against a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

FORMAT = "ssm-signal-stream"
VERSION = 2  # 2: a checksum over the state

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def encode(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Arrays and string metadata -> safetensors bytes."""
    header: dict = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    chunks, at = [], 0
    for k in sorted(arrays):
        a = np.asarray(arrays[k])  # (not ascontiguousarray: it makes a 0-d array 1-d)
        if a.dtype not in _CODES:
            raise ValueError(f"snapshot tensor {k!r} has dtype {a.dtype}, which the format does not hold")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": _CODES[a.dtype], "shape": list(a.shape), "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


def read_metadata(blob: bytes) -> dict[str, str]:
    """The header's ``__metadata__`` (empty if none); ValueError for bytes that are not a snapshot's."""
    return _header(blob)[0].get("__metadata__", {})


def decode(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Safetensors bytes -> (arrays, metadata), every offset and size checked."""
    header, start = _header(blob)
    meta = header.pop("__metadata__", {})
    data = memoryview(blob)[start:]
    arrays, spans = {}, []
    for k, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(int(n) for n in info["shape"])
            begin, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"damaged stream snapshot: bad header entry for {k!r}") from e
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(data) or \
                end - begin != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"damaged stream snapshot: {k!r} does not fit its bytes")
        arrays[k] = np.frombuffer(data[begin:end], dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        spans.append((begin, end))
    at = 0
    for begin, end in sorted(spans):
        if begin != at:
            raise ValueError("damaged stream snapshot: its tensors' bytes overlap or leave gaps")
        at = end
    if at != len(data):
        raise ValueError("damaged stream snapshot: bytes after the last tensor")
    return arrays, meta


def _header(blob: bytes) -> tuple[dict, int]:
    if not isinstance(blob, bytes | bytearray):
        raise ValueError(f"snapshot must be bytes, got {type(blob).__name__}")
    if len(blob) < 8:
        raise ValueError("stream snapshot is truncated")
    n = int.from_bytes(blob[:8], "little")
    if not 2 <= n <= len(blob) - 8:
        raise ValueError("stream snapshot is damaged (bad header length)")
    try:
        header = json.loads(bytes(blob[8:8 + n]))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"stream snapshot is damaged (header: {e})") from e
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise ValueError("stream snapshot is damaged (its header is not a JSON object)")
    return header, 8 + n


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: a snapshot with a flipped byte anywhere
    in its state no longer matches (the layout checks alone would not see it). Dtypes are spelled as
    torch spells them (``torch.float32``), as the first snapshots were hashed."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.asarray(arrays[k])  # (not ascontiguousarray: it makes a 0-d array 1-d)
        h.update(f"{k}:torch.{a.dtype.name}:{tuple(a.shape)};".encode())
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def make(arrays: dict[str, np.ndarray], *, bundle: str, version: str, fingerprint: str, backlog_s: float,
         labels: list[str]) -> bytes:
    """One stream's state (batch 1, the ``state_dict`` keys), its backlog and score labels, as snapshot bytes."""
    meta = {"format": FORMAT, "format_version": str(VERSION), "bundle": bundle, "bundle_version": version,
            "fingerprint": fingerprint, "checksum": checksum(arrays),
            "session": json.dumps({"backlog_s": backlog_s, "labels": labels})}
    return encode(arrays, meta)


def check_header(blob, *, bundle: str, version: str, fingerprint: str) -> dict[str, str]:
    """Refuse what is not a stream snapshot of this model (format, version, fingerprint), before anything
    is built for it; returns the metadata."""
    meta = read_metadata(blob)
    if meta.get("format") != FORMAT:
        raise ValueError("not a stream snapshot (no ssm-signal-stream metadata)")
    if meta.get("format_version") != str(VERSION):
        raise ValueError(f"stream snapshot version {meta.get('format_version')} is not supported "
                         f"(this ssm-signal reads {VERSION})")
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"snapshot was taken with model {meta.get('bundle')!r} version "
                         f"{meta.get('bundle_version')!r}, not with {bundle!r} version {version!r} "
                         "(or its configuration differs)")
    return meta


def open_snapshot(blob, *, bundle: str, version: str, fingerprint: str) -> tuple[dict[str, np.ndarray], float]:
    """The checked snapshot's arrays and backlog (seconds): header, layout and checksum."""
    meta = check_header(blob, bundle=bundle, version=version, fingerprint=fingerprint)
    arrays, _ = decode(bytes(blob))
    if meta.get("checksum") != checksum(arrays):
        raise ValueError("damaged stream snapshot: its state does not match its checksum")
    try:
        backlog = float(json.loads(meta.get("session", "{}")).get("backlog_s", 0.0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"damaged stream snapshot: session metadata ({e})") from e
    if not (math.isfinite(backlog) and backlog >= 0):
        raise ValueError(f"damaged stream snapshot: backlog_s {backlog!r}")
    return arrays, backlog


def check_arrays(arrays: dict[str, np.ndarray], template: dict[str, np.ndarray],
                 ranges: dict[str, tuple[int, int]]) -> None:
    """A snapshot's state against a fresh stream's (``template``): the same keys, shapes and dtypes, finite
    floats, and the counters named in ``ranges`` within [lo, hi]. (The checksum catches damage; this
    catches a state written by hand or by another program with a checksum recomputed, which would
    otherwise change scores silently.)"""
    if arrays.keys() != template.keys():
        missing, extra = sorted(template.keys() - arrays.keys()), sorted(arrays.keys() - template.keys())
        raise ValueError(f"damaged stream snapshot: its state has another structure (missing {missing[:4]}, "
                         f"unexpected {extra[:4]})")
    for k, a in arrays.items():
        want = template[k]
        if a.dtype != want.dtype:
            raise ValueError(f"damaged stream snapshot: {k} has dtype {a.dtype}, expected {want.dtype}")
        if a.shape != want.shape:
            raise ValueError(f"damaged stream snapshot: {k} has shape {a.shape}, expected {want.shape}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"damaged stream snapshot: {k} holds NaN or Inf")
    for k, (lo, hi) in ranges.items():
        a = arrays[k]
        if a.size and not (int(a.min()) >= lo and int(a.max()) <= hi):
            raise ValueError(f"damaged stream snapshot: {k} = {a.tolist()} is outside [{lo}, {hi}]")


# the key prefixes of a stream's parts in ``EngineState.state_dict()`` (class names included: State.state_dict
# spells them so); the torch-free session writes and reads the same keys
MODEL_KEYS, RESAMPLER_KEYS, DETECTOR_KEYS = "model.SignalModelState.", "resampler.0.ResamplerState.", "detector.DetectorState."


def check_stream(arrays: dict[str, np.ndarray], *, rate_ok, template_for, samples_per_frame: int, design_for) -> None:
    """A one-stream state in the layout of ``EngineState.state_dict()`` against what a fresh stream of this
    model at the snapshot's input rate holds: ``rate_ok(rate)`` says whether the model takes a rate,
    ``template_for(rate)`` gives a fresh stream's arrays (rate 0: not yet known), ``design_for(rate)`` the
    resampler's ``FilterDesign``. Raises ValueError naming the first problem."""
    rate = arrays.get("input_rate")
    if rate is None or rate.shape != (1,):
        raise ValueError("a stream snapshot holds exactly one stream")
    rate = int(rate[0])
    if rate != 0 and not rate_ok(rate):
        raise ValueError(f"damaged stream snapshot: input rate {rate} Hz is not one this model takes")
    ranges = {"n_pending": (0, samples_per_frame - 1), "samples_in": (0, 2**62), "finished": (0, 1),
              DETECTOR_KEYS + "seen": (0, 2**62)}
    if rate:
        d = design_for(rate)
        ranges |= {RESAMPLER_KEYS + "phase": (0, d.down - 1), RESAMPLER_KEYS + "primed": (0, d.delay)}
    check_arrays(arrays, template_for(rate), ranges)
