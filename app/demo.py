"""The live demo: Gradio wiring only (the logic is ssm_signal.streaming.live and .replay).

    ssm-signal demo --model artifacts/kws_default          # or models:/kws_default/3, or make demo
    ssm-signal demo --model artifacts/sensor_anomaly       # a sensor model: the "Replay a stream" view
    ssm-signal demo --model artifacts/kws_default --runtime onnx   # its ONNX export (ssm-signal export), no torch step
    python -m app.demo --model artifacts/kws_default --port 7860   # local bundles only in the picker

The page adapts to the model's kind: an audio model gets the microphone and file views, a sensor
model the replay view (app.replay), where a recorded series streams through the same
StreamingSession at real time or faster. Every browser session gets its own LiveStream (engine
state) or Replay in a ``gr.State``; the microphone streams int16 chunks every ``stream_every``
seconds into it; an uploaded file goes through the same StreamingSession path. Models load once
per process, are warmed up before they serve (the compiled step and the resampler filters are
built then), and are shared by all sessions; their state never is.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

from app.replay import build_replay_tab, example_choices
from ssm_signal.bundle import BundleError, load_bundle
from ssm_signal.runtime import OnnxModel, RuntimeConfig
from ssm_signal.runtime.sidecar import PRECISIONS, RUNTIMES
from ssm_signal.streaming import Admission, Limits, LiveStream, LiveView, StreamConfig, StreamEngine, find_bundles

log = logging.getLogger("ssm_signal.app")

DEFAULT_MODEL = "artifacts/kws_default"
# 22 distinguishable colours (the default keyword set has 22 labels); a label keeps its colour
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5", "#393b79", "#000000"]
NO_MODEL = "No model found. Run `make train` to create artifacts/kws_default, or pass --model PATH|models:/NAME/VERSION."
DEFAULT_EXAMPLES = "data"


def title(engine: StreamEngine | None) -> str:
    """The page's heading for the model's kind."""
    if engine is None or engine.audio:
        what = "keyword spotting" if engine is None or engine.kind == "keyword" else "audio"
        return (f"# ssm-signal: streaming {what}\nA selective state-space model runs on your microphone chunk by "
                "chunk, with its state carried between chunks.")
    what = {"anomaly": "sensor anomaly detection", "keyword": "sensor classification"}.get(engine.kind, "sensor streams")
    return (f"# ssm-signal: streaming {what}\nA selective state-space model runs on a sensor stream chunk by chunk "
            f"({engine.in_channels} channels at {engine.rate:g} Hz), with its state carried between chunks: replay a "
            "recorded series at real time or faster.")


# ---------------------------------------------------------------------------------------------------
# models: listed from artifacts/ and the MLflow registry, loaded once, warmed up, shared
# ---------------------------------------------------------------------------------------------------
# lists registered bundles as dicts with name, version and uri or source; the caller that owns the registry
# (``pipelines``, which the app must not import) hands it in
Registry = Callable[[], list[dict]]


class Models:
    """The models the page serves, each loaded once. runtime: "torch" (a StreamEngine of the bundle) or
    "onnx" (the bundle's ONNX export, ``OnnxModel``: the torch-free runtime's sessions); precision: the
    export's graphs ("float32" or "int8")."""

    def __init__(self, artifacts: str | Path = "artifacts", compile: bool | str | None = None,
                 registry: Registry | None = None, runtime: str = "torch", precision: str = "float32"):
        if runtime not in RUNTIMES or precision not in PRECISIONS:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)} and precision one of "
                             f"{', '.join(PRECISIONS)}, got {runtime!r}, {precision!r}")
        self.artifacts, self.compile, self.registry = Path(artifacts), compile, registry
        self.runtime, self.precision = runtime, precision
        self._engines: dict[str, StreamEngine | OnnxModel] = {}
        self._lock = threading.Lock()

    def choices(self, extra: str | None = None) -> list[tuple[str, str]]:
        """(label, value) pairs: local bundles, registered MLflow models, and ``extra`` if given."""
        out = [(f"{b['name']} v{b['version']} ({b['source']})", b["source"]) for b in find_bundles(self.artifacts)]
        try:  # optional: the MLflow registry (absent or failing is fine)
            if self.registry is not None:
                for b in self.registry():
                    uri = b.get("uri") or f"models:/{b['name']}/{b['version']}"
                    out.append((f"{b['name']} v{b['version']} (MLflow)", uri))
        except Exception as e:  # the registry is a nicety: the demo runs without it
            log.info("MLflow registry not listed: %s", e)
        if extra and extra not in [v for _, v in out]:
            out.insert(0, (extra, extra))
        return out

    def engine(self, spec: str) -> StreamEngine | OnnxModel:
        with self._lock:
            if spec not in self._engines:
                if self.runtime == "onnx":
                    engine = OnnxModel(spec, RuntimeConfig(precision=self.precision))
                    name, version = engine.name, f"{engine.version}, onnx {self.precision}"
                else:
                    bundle = load_bundle(spec)
                    engine = StreamEngine(bundle, config=StreamConfig(compile=self.compile))
                    name, version = bundle.name, bundle.version
                seconds = engine.warm_up()
                log.info("loaded %s (%s v%s), warmed up in %.1f s", spec, name, version, seconds)
                self._engines[spec] = engine
            return self._engines[spec]


# ---------------------------------------------------------------------------------------------------
# view -> components
# ---------------------------------------------------------------------------------------------------
def top_markdown(v: LiveView) -> str:
    if v.message:
        return f"### ⚠️ {v.message}"
    if v.top_label is None:
        return "### waiting for audio…"
    last = f"\n\nlast detection: **{v.log[0].label}** at {v.log[0].time_s:.2f} s" if v.log else ""
    return f"## {v.top_label}\nconfidence {v.top_score:.2f}{last}"


def meters_markdown(v: LiveView) -> str:
    return (f"latency **{v.latency_ms:.1f} ms**/chunk (p95 {v.latency_p95_ms:.1f}) · real-time factor "
            f"**{v.rtf:.3f}** (mean) · backlog {v.backlog_s:.2f} s · streamed {v.stream_s:.1f} s ({v.frames} frames)")


def plot_frame(v: LiveView) -> pd.DataFrame:
    if not len(v.times):
        return pd.DataFrame({"time (s)": [], "score": [], "label": []})
    k = len(v.curve_labels)
    return pd.DataFrame({"time (s)": v.times.repeat(k), "score": v.values.reshape(-1),
                         "label": v.curve_labels * len(v.times)})


def log_frame(v: LiveView) -> pd.DataFrame:
    return pd.DataFrame({"time (s)": [round(e.time_s, 2) for e in v.log], "label": [e.label for e in v.log],
                         "score": [round(e.score, 3) for e in v.log]})


def outputs(v: LiveView) -> tuple:
    return top_markdown(v), meters_markdown(v), plot_frame(v), log_frame(v)


# ---------------------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------------------
def build_demo(model: str | None = None, *, artifacts: str | Path = "artifacts", limits: Limits | None = None,
               stream_every: float = 0.2, compile: bool | str | None = None, registry: Registry | None = None,
               examples: str | Path = DEFAULT_EXAMPLES, runtime: str = "torch", precision: str = "float32") -> gr.Blocks:
    """The Blocks app. model: bundle directory or models:/NAME/VERSION (default artifacts/kws_default);
    artifacts: where the picker looks for bundles; registry: lists registered models for the picker too;
    compile: the engine's step mode (StreamConfig.compile); examples: where the replay view looks for
    sensor tables to offer; runtime "onnx": every model runs from its ONNX export (a bundle directory's
    onnx/, or an export directory), in ``precision``."""
    limits = limits or Limits()
    models = Models(artifacts, compile, registry, runtime, precision)
    admission = Admission(limits.max_live_sessions, limits.idle_seconds)
    default = model or (DEFAULT_MODEL if Path(DEFAULT_MODEL).is_dir() else None)
    status = NO_MODEL
    if default is not None:
        try:
            models.engine(default)  # load and warm up before serving
            status = f"Model: `{default}`"
        except (BundleError, ValueError, OSError) as e:
            status = f"⚠️ cannot load `{default}`: {e}"
            default = None
    choices = models.choices(default)
    if default is None and choices:
        default = choices[0][1]

    def live_stream(engine: StreamEngine | OnnxModel) -> LiveStream:
        # every label is plotted: Gradio's LinePlot fixes its colour domain at the first data it
        # gets and drops series that were not in it, so the set of series must not change
        return LiveStream(engine, limits, plot_labels=len(engine.labels))

    try:
        engine0 = models.engine(default) if default else None
    except (BundleError, ValueError, OSError):
        engine0 = None
    labels = engine0.labels if engine0 is not None else []
    audio = engine0 is None or engine0.audio
    color_map = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)} or None

    def live_for(state: LiveStream | None, spec: str | None) -> LiveStream:
        if not spec:
            raise ValueError(NO_MODEL)
        engine = models.engine(spec)
        if state is None or state.engine is not engine:
            state = live_stream(engine)
        return state

    def on_chunk(chunk, state, spec):
        try:
            state = live_for(state, spec)
        except (BundleError, ValueError, OSError) as e:
            return (state, *outputs(LiveView(message=str(e))))
        if not admission.admit(id(state)):
            return (state, *outputs(LiveView(message=f"the demo serves {limits.max_live_sessions} live streams "
                                                     "already; try again in a moment")))
        if chunk is None:
            return (state, *outputs(state.view()))
        rate, samples = chunk
        return (state, *outputs(state.push(samples, rate)))

    def on_reset(state):
        if state is None:
            return (None, *outputs(LiveView()))
        admission.release(id(state))
        return (state, *outputs(state.reset()))

    def on_model(spec):
        engine = None
        try:
            engine = models.engine(spec)
            msg = f"Model: `{spec}`"
        except (BundleError, ValueError, OSError) as e:
            msg = f"⚠️ cannot load `{spec}`: {e}"
        is_audio = engine is None or engine.audio
        series = example_choices(examples, engine)
        # the page follows the model's kind: the microphone and file views for audio, the replay for sensors
        return (title(engine), msg, None, *outputs(LiveView()), gr.Tab(visible=is_audio), gr.Tab(visible=is_audio),
                gr.Tab(visible=not is_audio), gr.Tabs(selected="mic" if is_audio else "replay"),
                gr.Dropdown(choices=series, value=series[0][1] if series else None))

    def on_file(path, spec):
        try:
            engine = models.engine(spec) if spec else None
        except (BundleError, ValueError, OSError) as e:
            yield outputs(LiveView(message=str(e)))
            return
        if engine is None:
            yield outputs(LiveView(message=NO_MODEL))
            return
        live = live_stream(engine)  # a fresh stream per file: nothing shared with the live one
        for view in live.play_file(path):
            yield outputs(view)

    with gr.Blocks(title="ssm-signal live demo", analytics_enabled=False) as demo:
        heading = gr.Markdown(title(engine0), elem_id="title")
        with gr.Row():
            model_dd = gr.Dropdown(choices=choices, value=default, label="Model", allow_custom_value=True,
                                   scale=2, elem_id="model-picker")
            model_md = gr.Markdown(status, elem_id="model-status")
        live_state = gr.State(None)  # one LiveStream per browser session, created on its first chunk
        with gr.Tabs(selected="mic" if audio else "replay", elem_id="views") as tabs:
            with gr.Tab("Live microphone", id="mic", visible=audio, elem_id="mic-tab") as mic_tab:
                with gr.Row():
                    with gr.Column(scale=1):
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                                       elem_id="mic")
                        reset = gr.Button("Reset", elem_id="reset")
                    with gr.Column(scale=1):
                        top = gr.Markdown("### waiting for audio…", elem_id="live-top")
                        meters = gr.Markdown(meters_markdown(LiveView()), elem_id="live-meters")
                plot = gr.LinePlot(x="time (s)", y="score", color="label", y_lim=[0, 1], color_map=color_map,
                                   label=f"Smoothed scores, last {limits.history_seconds:g} s", elem_id="live-plot")
                events = gr.Dataframe(headers=["time (s)", "label", "score"], label="Detections (newest first)",
                                      elem_id="live-log", interactive=False)
            with gr.Tab("Upload a file", id="file", visible=audio, elem_id="file-tab") as file_tab:
                upload = gr.File(label="Audio file (WAV, FLAC, OGG, MP3)", type="filepath", elem_id="upload")
                f_top = gr.Markdown("### no file yet", elem_id="file-top")
                f_meters = gr.Markdown("", elem_id="file-meters")
                f_plot = gr.LinePlot(x="time (s)", y="score", color="label", y_lim=[0, 1], label="Timeline",
                                     color_map=color_map, elem_id="file-plot")
                f_events = gr.Dataframe(headers=["time (s)", "label", "score"], label="Detections",
                                        elem_id="file-log", interactive=False)
            replay_tab, series_dd, replay_state, replay_out, show_series = build_replay_tab(
                models.engine, model_dd, engine0, limits, admission, examples, visible=not audio)
        live_out = [top, meters, plot, events]
        mic.stream(on_chunk, [mic, live_state, model_dd], [live_state, *live_out], stream_every=stream_every,
                   time_limit=int(limits.max_session_seconds), concurrency_limit=limits.max_live_sessions,
                   show_progress="hidden")
        reset.click(on_reset, [live_state], [live_state, *live_out], show_progress="hidden")
        model_dd.change(on_model, [model_dd], [heading, model_md, live_state, *live_out, mic_tab, file_tab, replay_tab,
                                               tabs, series_dd])
        upload.upload(on_file, [upload, model_dd], [f_top, f_meters, f_plot, f_events], concurrency_limit=2)
        if not audio:  # a sensor model opens on its first example series, ready to start
            demo.load(show_series, [replay_state, model_dd, series_dd], [replay_state, *replay_out])
    return demo


def launch(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, *, threads: int = 1,
           compile: bool | str | None = None, limits: Limits | None = None, block: bool = True, **kwargs) -> gr.Blocks:
    """Build and serve the demo (``block=False`` returns once the server is up; ``demo.close()`` stops it)."""
    torch.set_num_threads(threads)  # many tiny ops per chunk: one thread each, sessions in parallel
    limits = limits or Limits()
    demo = build_demo(model, compile=compile, limits=limits, **kwargs)
    demo.queue(max_size=64)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False, quiet=not block,
                max_file_size=limits.max_upload_bytes, show_error=True)
    return demo


def main(argv: list[str] | None = None, registry: Registry | None = None) -> int:
    """The demo's command line; ``registry`` lists registered models (``ssm-signal demo`` passes MLflow's)."""
    p = argparse.ArgumentParser(prog="ssm-signal demo", description=(
        "Live Gradio demo of a bundle: the microphone for audio models, replayed tables for sensor models."))
    p.add_argument("--model", default=None, help=f"bundle directory or models:/NAME/VERSION (default {DEFAULT_MODEL})")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--artifacts", default="artifacts", help="where the model picker looks for bundles")
    p.add_argument("--no-compile", action="store_true", help="run the eager step (no compilation at start)")
    p.add_argument("--no-registry", action="store_true", help="do not list registered MLflow models")
    p.add_argument("--stream-every", type=float, default=0.2, help="seconds of audio per microphone chunk")
    p.add_argument("--examples", default=DEFAULT_EXAMPLES,
                   help="where the replay view of sensor models looks for tables to offer (default: data)")
    p.add_argument("--runtime", default="torch", choices=RUNTIMES,
                   help="onnx: run the bundle's ONNX export (`ssm-signal export`) with numpy and onnxruntime")
    p.add_argument("--precision", default="float32", choices=PRECISIONS, help="the export's graphs (onnx)")
    a = p.parse_args(argv)
    if not logging.getLogger("ssm_signal").handlers:  # `ssm-signal demo` has set one up already
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    launch(a.model, a.host, a.port, compile=False if a.no_compile else None, artifacts=a.artifacts,
           stream_every=a.stream_every, registry=None if a.no_registry else registry, examples=a.examples,
           runtime=a.runtime, precision=a.precision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
