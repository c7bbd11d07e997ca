"""Folders of generated data, cached by a marker file that holds the settings they were made with."""

from __future__ import annotations

import json
from pathlib import Path

from ssm_signal.data.skips import DataError


def holds_generated(root: Path, marker: str, settings: dict, what: str) -> bool:
    """Whether ``root`` already holds the ``what`` (e.g. "keyword set") generated with ``settings``.

    True if ``root / marker`` holds exactly ``settings``; False if ``root`` is absent or an empty folder.
    Anything else is never overwritten: a DataError for data generated with other settings, or for a
    folder (or file) that holds something without the marker.
    """
    path = root / marker
    if path.is_file():
        if json.loads(path.read_text()) == settings:
            return True
        raise DataError(f"{root} holds a {what} generated with other settings ({path}); "
                        "delete the folder or choose another root")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and is not a generated {what} (no {marker}); not overwriting it")
    return False
