"""A versioned JSON header: a file holding one JSON object whose ``format`` names what it is and whose
integer ``format_version`` says which layout (the bundle's config.json, the ONNX export's sidecar).
Torch-free, so the runtime reads its sidecar with the checks the bundle's loader makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_versioned(file: Path, *, format: str, version: int, what: str, error: type[Exception]) -> dict[str, Any]:
    """The JSON object in ``file`` if its ``format`` is ``format`` and its ``format_version`` is ``version``;
    else ``error`` with a one-line reason naming the file (``what``: the kind of file, e.g. "ssm-signal
    bundle", for the messages)."""
    try:
        d = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{file}: invalid JSON ({e})") from e
    except OSError as e:
        raise error(f"{file}: cannot read ({e.strerror or e})") from e
    if not isinstance(d, dict):
        raise error(f"{file}: must hold a JSON object, got a {type(d).__name__}")
    if d.get("format") != format:
        raise error(f"{file}: not an {what} (format={d.get('format')!r})")
    found = d.get("format_version")
    if isinstance(found, bool) or not isinstance(found, int):
        raise error(f"{file}: format_version must be an integer, got {found!r}")
    if found != version:
        raise error(f"{file}: {what} format version {found} is not supported by this ssm-signal "
                    f"(reads version {version})")
    return d
