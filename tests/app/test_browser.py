"""End to end in a real headless Chromium: the demo on localhost, Chromium's fake microphone fed
from a spoken-keyword WAV, the live output, the upload path, and two concurrent sessions.

Debian's /usr/bin/chromium is driven by the Python ``playwright`` package (never its own browser
download). The demo runs the trained default bundle (tests/fixtures/kws_default); the tests assert
the spoken keyword itself, and for the upload also that the page shows what the engine computes.
Set SSM_SIGNAL_SCREENSHOTS=docs/img to save screenshots of the running demo.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.demo import launch
from ssm_signal import load_bundle
from ssm_signal.streaming import Limits, LiveStream, StreamConfig, StreamEngine

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]
SHOTS = os.environ.get("SSM_SIGNAL_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(demo_bundle, tmp_path_factory):
    threads = torch.get_num_threads()
    port = free_port()
    limits = Limits(max_upload_bytes=5 * 2**20, max_upload_seconds=30)
    demo = launch(str(demo_bundle), "127.0.0.1", port, compile=False, block=False, limits=limits,
                  artifacts=str(demo_bundle.parent), stream_every=0.2, registry=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def playwright_api():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (make system-deps installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


def browser(pw, wav: Path, user_dir: Path):
    """A fresh Chromium whose fake microphone plays ``wav`` in a loop; microphone granted."""
    ctx = pw.chromium.launch_persistent_context(
        str(user_dir), executable_path=CHROMIUM, headless=True, permissions=["microphone"],
        args=FLAGS + [f"--use-file-for-fake-audio-capture={wav}"], viewport={"width": 1280, "height": 900})
    return ctx


@pytest.fixture(scope="module")
def yes_browser(playwright_api, keyword_wavs, tmp_path_factory):
    ctx = browser(playwright_api, keyword_wavs["yes"], tmp_path_factory.mktemp("chromium-yes"))
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def no_browser(playwright_api, keyword_wavs, tmp_path_factory):
    ctx = browser(playwright_api, keyword_wavs["no"], tmp_path_factory.mktemp("chromium-no"))
    yield ctx
    ctx.close()


def open_demo(ctx, url: str):
    page = ctx.new_page()
    page.goto(url)
    page.wait_for_selector("#mic", timeout=30_000)
    return page


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


def top_label(page, prefix: str = "live") -> str:
    return text(page, f"#{prefix}-top h2").strip()


def streamed(page) -> tuple[float, int]:
    m = re.search(r"streamed ([\d.]+) s \((\d+) frames\)", text(page, "#live-meters"))
    return (float(m.group(1)), int(m.group(2))) if m else (0.0, 0)


def log_labels(page, prefix: str = "live") -> list[str]:
    """The label column of a detection log. Gradio's table renders its rows as ARIA grid cells in
    a virtual body (its <tbody> is an aria-hidden sizing row, not data)."""
    cells = page.locator(f'#{prefix}-log .virtual-row [role="gridcell"][data-col="1"]')
    return [t.strip() for t in cells.all_inner_texts() if t.strip()]


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_live_microphone_shows_the_keyword(app_url, yes_browser):
    page = open_demo(yes_browser, app_url)
    page.get_by_role("button", name="Record").click()
    # the detection log and the "last detection" line keep it (the top label moves on)
    until(lambda: "yes" in log_labels(page), 25, "a 'yes' detection in the live log")
    assert "last detection: yes" in text(page, "#live-top")
    seconds, frames = streamed(page)
    assert seconds > 0.5 and abs(frames - seconds * 100) <= 2  # 100 frames per second of audio received
    meters = text(page, "#live-meters")
    assert re.search(r"latency [\d.]+ ms", meters) and re.search(r"real-time factor [\d.]+", meters)
    page.wait_for_timeout(1500)
    shot(page, "demo_live.png")
    page.close()


def test_upload_plays_through_the_stream(app_url, yes_browser, keyword_wavs, demo_bundle, tmp_path):
    page = open_demo(yes_browser, app_url)
    page.get_by_role("tab", name="Upload a file").click()
    page.locator("#upload input[type=file]").set_input_files(str(keyword_wavs["yes"]))
    label = until(lambda: top_label(page, "file"), 30, "the uploaded file's label")
    assert "yes" in until(lambda: log_labels(page, "file"), 10, "detections of the file")
    # the page shows what a LiveStream computes for the same file
    engine = StreamEngine(load_bundle(demo_bundle), config=StreamConfig(compile=False))
    expected = list(LiveStream(engine).play_file(keyword_wavs["yes"]))[-1]
    assert label == expected.top_label
    assert "frames" in text(page, "#file-meters")
    page.wait_for_timeout(1000)
    shot(page, "demo_upload.png")
    # a non-audio upload is refused with a message
    page.reload()
    page.wait_for_selector("#mic", timeout=30_000)
    page.get_by_role("tab", name="Upload a file").click()
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not audio")
    page.locator("#upload input[type=file]").set_input_files(str(notes))
    until(lambda: "not an audio file" in text(page, "#file-top"), 20, "the non-audio message")
    page.close()


def test_two_concurrent_sessions_are_independent(app_url, yes_browser, no_browser):
    a, b = open_demo(yes_browser, app_url), open_demo(no_browser, app_url)
    a.get_by_role("button", name="Record").click()
    b.get_by_role("button", name="Record").click()
    # generous waits: two browsers, the server and the model share a 2-core machine (CI's) with whatever
    # else runs; the waits end as soon as the condition holds
    until(lambda: streamed(a)[1] > 50 and streamed(b)[1] > 50, 60, "both sessions streaming")
    until(lambda: "yes" in log_labels(a) and "no" in log_labels(b), 60, "yes in A and no in B")
    assert "no" not in log_labels(a) and "yes" not in log_labels(b)
    # A stops and resets: A's stream restarts from zero, B's goes on untouched. The chunks A's browser sent
    # before Stop are still in the server's queue for a moment; a Reset processed before them would see them
    # land in the new stream, so the user here, like a person, resets once A's count has settled.
    a.get_by_role("button", name="Stop").click()
    settled = []
    until(lambda: settled.append(streamed(a)) or (len(settled) > 4 and len(set(settled[-5:])) == 1), 30,
          "A's last chunks after Stop")
    a.get_by_role("button", name="Reset").click()
    until(lambda: streamed(a) == (0.0, 0) and "waiting for audio" in text(a, "#live-top"), 30, "A's reset")
    before_b = streamed(b)[1]
    until(lambda: streamed(b)[1] > before_b + 40, 30, "B's stream to go on")
    assert streamed(a) == (0.0, 0)
    a.close()
    b.close()
