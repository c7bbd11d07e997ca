"""The demo's sensor view end to end in a real headless Chromium: a sensor model turns the page into the replay
view; a series of the generated table replays through the model's session, its alarms fire at the labelled
anomalies and are the ones the engine computes for the same chunks; Stop holds the stream, Reset starts over,
and a table the model cannot read is refused with a message.

The model is tests/fixtures/sensor_anomaly (configs/sensor_anomaly.yaml, trained by `make train`); the browser
plumbing is the microphone test's (tests/app/browser.py).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ssm_signal import load_bundle
from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table
from ssm_signal.streaming import StreamConfig, StreamEngine
from ssm_signal.streaming.replay import Replay, read_recording
from tests.app.browser import chromium, served_demo, shot, table_column, text, until

SPEED = 1000  # the generated table's 1,500 steps (1 Hz) in 1.5 s
TABLE_SEED = 11


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    make_sensor_anomaly_table(root / "generated" / "table.parquet", n_train=1, n_val=0, n_test=2, seed=TABLE_SEED)
    return root


@pytest.fixture(scope="module")
def sensor_url(sensor_demo_bundle, examples):
    with served_demo(sensor_demo_bundle, artifacts=str(sensor_demo_bundle.parent), examples=str(examples)) as url:
        yield url


@pytest.fixture(scope="module")
def page(playwright_api, sensor_url, tmp_path_factory):
    ctx = chromium(playwright_api, tmp_path_factory.mktemp("chromium-sensor"))
    p = ctx.new_page()
    p.goto(sensor_url)
    p.wait_for_selector("#replay-series", timeout=30_000)
    yield p
    ctx.close()


def meters(page) -> tuple[str, float, int]:
    """(status, position in seconds, frames) as the page shows them."""
    m = re.search(r"(\w+) · position ([\d.]+) of [\d.]+ s .* · (\d+) frames", text(page, "#replay-meters"))
    return (m.group(1), float(m.group(2)), int(m.group(3))) if m else ("", 0.0, 0)


def alarm_times(page) -> list[float]:
    return sorted(float(t) for t in table_column(page, "replay-log", 0))


def set_speed(page, speed: int) -> None:
    page.locator("#replay-speed").get_by_role("radio", name=str(speed), exact=True).check()


def test_a_sensor_model_gets_the_replay_view(page):
    assert "streaming sensor anomaly detection" in text(page, "#title")
    assert page.locator("#replay-start").is_visible()
    assert not page.locator("#mic").is_visible()  # the microphone belongs to audio models
    until(lambda: "ready: table.parquet · s001" in text(page, "#replay-top"), 60, "the first series, ready")


def test_replay_alarms_at_the_labelled_anomalies_then_reset(page, sensor_demo_bundle, examples):
    set_speed(page, SPEED)
    page.locator("#replay-start").click()
    until(lambda: meters(page)[0] == "finished", 60, "the replay to finish")
    shown = until(lambda: alarm_times(page), 10, "alarms in the log")
    # the engine's own alarms for the same series and chunks
    engine = StreamEngine(load_bundle(sensor_demo_bundle), config=StreamConfig(compile=False))
    rec = read_recording(examples / "generated" / "table.parquet", engine, "s001")
    view = list(Replay(engine, rec, speed=SPEED).play(sleep=lambda s: None))[-1]
    assert shown == sorted(round(e.time_s, 2) for e in view.alarms)
    assert meters(page)[1:] == (rec.seconds, len(rec.x))
    # at the labelled anomalies: each labelled one raises an alarm, and most alarms fall in one
    labelled = rec.labelled()
    near = lambda t, a, b: a <= t <= b + 10  # noqa: E731  (10 s: the evaluation's hit window for this table)
    hit = [any(near(t, a, b) for t in shown) for a, b in labelled]
    inside = [any(near(t, a, b) for a, b in labelled) for t in shown]
    assert sum(hit) >= len(labelled) - 1 and np.mean(inside) >= 0.75, (labelled, shown)
    assert "alarm" in text(page, "#replay-top") and page.locator("#replay-plot img").count() == 1
    page.wait_for_timeout(500)
    shot(page, "demo_sensor.png")
    page.locator("#replay-reset").click()
    until(lambda: meters(page)[0] == "ready" and not alarm_times(page), 20, "the reset")
    assert meters(page)[1:] == (0.0, 0)


def test_stop_holds_the_stream_and_start_goes_on(page):
    set_speed(page, 10)
    page.locator("#replay-start").click()
    until(lambda: meters(page)[1] >= 20, 30, "the replay to stream 20 s")
    page.locator("#replay-stop").click()
    held = until(lambda: meters(page)[0] == "stopped" and meters(page), 20, "the stop")
    page.wait_for_timeout(1500)
    assert meters(page) == held  # nothing streams while stopped
    set_speed(page, SPEED)
    page.locator("#replay-start").click()
    until(lambda: meters(page)[0] == "finished", 60, "the rest of the series")
    page.locator("#replay-reset").click()
    until(lambda: meters(page)[0] == "ready", 20, "the reset")


def test_a_table_the_model_cannot_read_is_refused(page, tmp_path):
    bad = tmp_path / "three.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [0.0, 1.0]}).to_csv(bad, index=False)
    page.locator("#replay-upload input[type=file]").set_input_files(str(bad))
    until(lambda: "3 channel columns" in text(page, "#replay-top"), 20, "the refusal")
    page.reload()  # the file box holds the refused file now; a fresh page has an empty one
    page.wait_for_selector("#replay-series", timeout=30_000)
    good = tmp_path / "mine.csv"
    x = np.random.default_rng(0).normal(size=(50, 4))
    pd.DataFrame(x, columns=["w", "x", "y", "z"]).to_csv(good, index=False)
    page.locator("#replay-upload input[type=file]").set_input_files(str(good))
    until(lambda: "ready: mine.csv" in text(page, "#replay-top"), 20, "the uploaded table's series")
