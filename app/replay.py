"""The demo's "Replay a stream" tab for sensor models: Gradio wiring only (the logic is
ssm_signal.streaming.replay, the figure app.figures).

Pick an example series (tables under the examples folder whose channels fit the model) or upload a table
(CSV or Parquet, the layout the scorer reads), choose a speed, and Start: the series streams chunk by chunk
through the model's StreamingSession, at real time or faster, while the page shows the channels, the score or
the posteriors with the threshold, the alarms as they fire, latency and real-time factor. Stop pauses, Start
goes on, Reset starts over. Each browser session has its own Replay in a ``gr.State``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pandas as pd

from app.figures import replay_figure
from ssm_signal.bundle import BundleError
from ssm_signal.streaming import Admission, Limits, StreamEngine
from ssm_signal.streaming.replay import (
    Replay,
    ReplayView,
    find_recordings,
    read_recording,
    series_choices,
    split_choice,
)

SPEEDS = [1, 10, 100, 1000]
NOT_SENSOR = "this model listens to audio: pick a sensor model to replay a stream"


@dataclasses.dataclass
class ReplaySession:
    """One browser session's replay: the series chosen ("path::series_id") and its Replay."""

    choice: str
    replay: Replay


def default_speed(engine: StreamEngine) -> int:
    """A speed at which a few minutes of stream replay in seconds: 1 Hz tables 100x, 64 Hz sensors 10x."""
    return 100 if engine.rate < 10 else 10 if engine.rate < 1000 else 1


def headline(v: ReplayView | None, message: str | None = None) -> str:
    if message:
        return f"### ⚠️ {message}"
    if v is None:
        return "### pick a series, then Start"
    if v.live.message:
        return f"### ⚠️ {v.live.message}"
    if v.status == "ready":
        return f"### ready: {v.name} ({v.total_s:g} s of stream)"
    if v.kind == "anomaly":
        last = f"\n\nlast alarm at **{v.alarms[-1].time_s:.2f} s** (score {v.alarms[-1].score:.3g})" if v.alarms else ""
        return f"## {len(v.alarms)} alarm{'s' if len(v.alarms) != 1 else ''}{last}"
    last = f"\n\nlast event: **{v.alarms[-1].label}** at {v.alarms[-1].time_s:.2f} s" if v.alarms else ""
    return f"## {v.live.top_label or '…'}\nposterior {v.live.top_score:.2f}{last}"


def meters(v: ReplayView | None) -> str:
    if v is None:
        return ""
    live = v.live
    return (f"{v.status} · position **{v.position_s:.1f}** of {v.total_s:.1f} s ({v.speed:g}x) · latency "
            f"**{live.latency_ms:.1f} ms**/chunk (p95 {live.latency_p95_ms:.1f}) · real-time factor "
            f"**{live.rtf:.4f}** · {live.frames} frames")


def alarm_frame(v: ReplayView | None) -> pd.DataFrame:
    alarms = list(reversed(v.alarms)) if v is not None else []
    return pd.DataFrame({"time (s)": [round(e.time_s, 2) for e in alarms], "label": [e.label for e in alarms],
                         "score": [round(e.score, 3) for e in alarms]})


def outputs(v: ReplayView | None, message: str | None = None) -> tuple:
    return headline(v, message), meters(v), replay_figure(v) if v is not None else None, alarm_frame(v)


def example_choices(examples: str | Path, engine: StreamEngine | None) -> list[tuple[str, str]]:
    if engine is None or engine.audio:
        return []
    return find_recordings(examples, engine.in_channels)


def build_replay_tab(engine_for: Callable[[str], StreamEngine], model_dd: gr.Dropdown, default: StreamEngine | None,
                     limits: Limits, admission: Admission, examples: str | Path, visible: bool) -> tuple:
    """The tab inside the current Blocks; returns (tab, series dropdown, state, outputs, the handler that shows the
    chosen series) so the page can update them when it loads and when the model changes."""
    choices = example_choices(examples, default)
    speed0 = default_speed(default) if default is not None and not default.audio else SPEEDS[1]
    with gr.Tab("Replay a stream", id="replay", visible=visible, elem_id="replay-tab") as tab:
        with gr.Row():
            series = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Series",
                                 scale=3, elem_id="replay-series")
            speed = gr.Radio(SPEEDS, value=speed0, label="Speed (x real time)", scale=2, elem_id="replay-speed")
        upload = gr.File(label="…or upload a table (CSV or Parquet: [series_id, split, time,] channel columns "
                               "[, label])", file_types=[".csv", ".parquet", ".pq"], type="filepath",
                         elem_id="replay-upload", height=120)
        with gr.Row():
            start = gr.Button("Start", variant="primary", elem_id="replay-start")
            stop = gr.Button("Stop", elem_id="replay-stop")
            reset = gr.Button("Reset", elem_id="replay-reset")
        top = gr.Markdown(headline(None), elem_id="replay-top")
        meter = gr.Markdown("", elem_id="replay-meters")
        plot = gr.Plot(label="Channels and score", format="png", elem_id="replay-plot")
        log = gr.Dataframe(headers=["time (s)", "label", "score"], label="Alarms (newest first)",
                           elem_id="replay-log", interactive=False)
    state = gr.State(None)  # one ReplaySession per browser session
    outs = [top, meter, plot, log]

    def session_for(state: ReplaySession | None, spec: str | None, choice: str | None) -> ReplaySession:
        if not spec:
            raise ValueError("no model: pick one above")
        engine = engine_for(spec)
        if engine.audio:
            raise ValueError(NOT_SENSOR)
        if not choice:
            raise ValueError("no series: pick an example or upload a table")
        if state is not None and state.replay.engine is engine and state.choice == choice:
            return state
        path, sid = split_choice(choice)
        return ReplaySession(choice, Replay(engine, read_recording(path, engine, sid, limits), limits))

    def on_start(state, spec, choice, speed):
        try:
            state = session_for(state, spec, choice)
        except (BundleError, ValueError, OSError) as e:
            yield (state, *outputs(None, str(e)))
            return
        replay, key = state.replay, id(state)
        if not admission.admit(key):
            yield (state, *outputs(replay.view(), f"the demo serves {limits.max_live_sessions} streams already; "
                                                  "try again in a moment"))
            return
        replay.speed = float(speed or SPEEDS[1])
        try:
            for view in replay.play():
                admission.admit(key)  # a replay that is playing keeps its place
                yield (state, *outputs(view))
        finally:
            admission.release(key)

    def on_stop(state):
        if state is not None:
            state.replay.stop()

    def on_reset(state):
        if state is None:
            return (None, *outputs(None))
        return (state, *outputs(state.replay.reset()))

    def on_series(state, spec, choice):
        if state is not None:
            state.replay.stop()
        if not choice:
            return (None, *outputs(None))
        try:
            state = session_for(None, spec, choice)
        except (BundleError, ValueError, OSError) as e:
            return (None, *outputs(None, str(e)))
        return (state, *outputs(state.replay.view()))

    def on_upload(path, spec):
        if path is None:
            return gr.update(), gr.update()
        try:
            engine = engine_for(spec) if spec else None
            if engine is None or engine.audio:
                raise ValueError(NOT_SENSOR)
            found = [(f"{Path(path).name} · {label}", f"{path}::{sid}") for label, sid in
                     series_choices(path, engine.in_channels)]
            if not found:
                raise ValueError(f"{Path(path).name}: no series in the table")
        except (BundleError, ValueError, OSError) as e:
            return gr.update(), headline(None, str(e))
        return gr.update(choices=found + example_choices(examples, engine), value=found[0][1]), gr.update()

    start.click(on_start, [state, model_dd, series, speed], [state, *outs], concurrency_limit=limits.max_live_sessions,
                show_progress="hidden")
    stop.click(on_stop, [state], None, show_progress="hidden")
    reset.click(on_reset, [state], [state, *outs], show_progress="hidden")
    series.change(on_series, [state, model_dd, series], [state, *outs], show_progress="hidden")
    upload.upload(on_upload, [upload, model_dd], [series, top], show_progress="hidden")
    return tab, series, state, outs, on_series
