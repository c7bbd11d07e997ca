"""End to end in a real headless Chromium: the demo on localhost, Chromium's fake microphone fed
from a spoken-keyword WAV, the live output, the upload path, and two concurrent sessions.

The demo runs the trained default bundle (tests/fixtures/kws_default); the tests assert the spoken
keyword itself, and for the upload also that the page shows what the engine computes. The browser
plumbing is shared with the sensor view's test (tests/app/browser.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssm_signal import load_bundle
from ssm_signal.streaming import Limits, LiveStream, StreamConfig, StreamEngine
from tests.app.browser import chromium, served_demo, shot, table_column, text, until


@pytest.fixture(scope="module")
def app_url(demo_bundle):
    limits = Limits(max_upload_bytes=5 * 2**20, max_upload_seconds=30)
    with served_demo(demo_bundle, limits=limits, artifacts=str(demo_bundle.parent), stream_every=0.2) as url:
        yield url


def browser(pw, wav: Path, user_dir: Path):
    """A fresh Chromium whose fake microphone plays ``wav`` in a loop; microphone granted."""
    return chromium(pw, user_dir, [f"--use-file-for-fake-audio-capture={wav}"], permissions=["microphone"])


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


def top_label(page, prefix: str = "live") -> str:
    return text(page, f"#{prefix}-top h2").strip()


def streamed(page) -> tuple[float, int]:
    m = re.search(r"streamed ([\d.]+) s \((\d+) frames\)", text(page, "#live-meters"))
    return (float(m.group(1)), int(m.group(2))) if m else (0.0, 0)


def log_labels(page, prefix: str = "live") -> list[str]:
    """The label column of a detection log."""
    return table_column(page, f"{prefix}-log", 1)


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
