"""Driving the demo in a real headless Chromium: the shared plumbing of the browser tests.

Debian's /usr/bin/chromium is driven by the Python ``playwright`` package (never its own browser download).
``served_demo`` runs the demo on a free localhost port for the duration of a ``with``; the helpers poll the
page as a person would read it. Set SSM_SIGNAL_SCREENSHOTS=docs/img to save screenshots of the running demo.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from app.demo import launch

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]
SHOTS = os.environ.get("SSM_SIGNAL_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_demo(model: Path, **kwargs) -> Iterator[str]:
    """The demo of ``model`` on localhost (eager steps, no MLflow registry); yields its URL."""
    threads = torch.get_num_threads()
    port = free_port()
    demo = launch(str(model), "127.0.0.1", port, compile=False, block=False, registry=False, **kwargs)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        torch.set_num_threads(threads)


def chromium(pw, user_dir: Path, args: list[str] = (), permissions: list[str] = ()):
    """A fresh headless Chromium context (its own profile in ``user_dir``)."""
    return pw.chromium.launch_persistent_context(
        str(user_dir), executable_path=CHROMIUM, headless=True, permissions=list(permissions),
        args=FLAGS + list(args), viewport={"width": 1280, "height": 900})


def until(cond: Callable[[], object], timeout: float, what: str):
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def text(page, selector: str) -> str:
    loc = page.locator(selector)
    return loc.first.inner_text() if loc.count() else ""


def table_column(page, elem_id: str, col: int) -> list[str]:
    """A column of a Gradio table. Gradio's table renders its rows as ARIA grid cells in a virtual body (its
    <tbody> is an aria-hidden sizing row, not data)."""
    cells = page.locator(f'#{elem_id} .virtual-row [role="gridcell"][data-col="{col}"]')
    return [t.strip() for t in cells.all_inner_texts() if t.strip()]


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)
