"""`make system-deps` fails when it cannot provide the tools (the tests fail without them rather than skip, so
a machine that cannot install them must stop at this target, not pass CI with untested code)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import require_tool

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system_deps.sh"


def run_with_only(tmp_path: Path, tools: list[str]) -> subprocess.CompletedProcess:
    """The script on a PATH holding only ``tools`` (and what the script itself runs), as on a bare machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ["bash", "id", *tools]:
        (bin_dir / name).symlink_to(require_tool(name))
    return subprocess.run([str(bin_dir / "bash"), str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=60)


def test_a_machine_without_apt_get_or_espeak_ng_fails_naming_it(tmp_path):
    r = run_with_only(tmp_path, ["sox", "flite", "festival", "chromium"])
    assert r.returncode != 0
    assert "espeak-ng" in r.stderr and "apt-get not found" in r.stderr


def test_a_machine_with_every_tool_but_no_apt_get_passes(tmp_path):
    r = run_with_only(tmp_path, ["espeak-ng", "sox", "flite", "festival", "chromium"])
    assert r.returncode == 0, r.stderr
