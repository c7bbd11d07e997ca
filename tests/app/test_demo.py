"""The demo's wiring without a browser: model listing (local + MLflow, tolerant), view rendering,
the missing-model message, and the CLI entry."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from app.demo import NO_MODEL, Models, build_demo, log_frame, meters_markdown, plot_frame, top_markdown
from ssm_signal import save_bundle
from ssm_signal.streaming import Event, LiveView
from tests.streaming.conftest import kws_model


def fake_tracking(monkeypatch, fn):
    mod = types.ModuleType("pipelines.tracking")
    mod.list_registered_bundles = fn
    monkeypatch.setitem(sys.modules, "pipelines.tracking", mod)


def test_model_choices_local_and_registered(tmp_path):
    save_bundle(kws_model(), tmp_path / "kws_default", name="kws_default", version="7")
    registry = lambda: [{"name": "kws", "version": "3", "source": "s3://x"},  # noqa: E731
                        {"name": "kws", "version": "2", "uri": "models:/kws/2"}]
    choices = Models(tmp_path, registry=registry).choices()
    assert choices == [(f"kws_default v7 ({tmp_path / 'kws_default'})", str(tmp_path / "kws_default")),
                       ("kws v3 (MLflow)", "models:/kws/3"), ("kws v2 (MLflow)", "models:/kws/2")]
    assert Models(tmp_path).choices("models:/other/1")[0] == ("models:/other/1", "models:/other/1")


def test_registry_failure_or_absence_is_tolerated(tmp_path, monkeypatch):
    from pipelines.cli import _registered_bundles

    def broken(uri=None):
        raise RuntimeError("no tracking server")

    save_bundle(kws_model(), tmp_path / "kws_default", name="kws_default", version="7")
    local = [(f"kws_default v7 ({tmp_path / 'kws_default'})", str(tmp_path / "kws_default"))]
    fake_tracking(monkeypatch, broken)
    assert Models(tmp_path, registry=_registered_bundles).choices() == local
    monkeypatch.setitem(sys.modules, "pipelines.tracking", None)  # MLflow's side does not import
    assert Models(tmp_path, registry=_registered_bundles).choices() == local
    assert Models(tmp_path).choices() == local  # no registry handed in (python -m app.demo)


def test_view_rendering():
    v = LiveView(top_label="yes", top_score=0.91, curve_labels=["yes", "no"], times=np.array([0.04, 0.08]),
                 values=np.array([[0.9, 0.1], [0.8, 0.2]]), log=[Event("keyword", "yes", 1.234, 0.876, 123)],
                 latency_ms=1.5, latency_p95_ms=2.5, rtf=0.01, stream_s=3.0, frames=300)
    assert "## yes" in top_markdown(v) and "0.91" in top_markdown(v)
    assert "last detection: **yes** at 1.23 s" in top_markdown(v)
    assert "1.5 ms" in meters_markdown(v) and "0.010" in meters_markdown(v) and "(300 frames)" in meters_markdown(v)
    df = plot_frame(v)
    assert list(df["label"]) == ["yes", "no", "yes", "no"] and list(df["score"]) == [0.9, 0.1, 0.8, 0.2]
    assert list(df["time (s)"]) == [0.04, 0.04, 0.08, 0.08]
    assert log_frame(v).values.tolist() == [[1.23, "yes", 0.876]]
    assert "waiting" in top_markdown(LiveView()) and plot_frame(LiveView()).empty
    assert "⚠️ boom" in top_markdown(LiveView(message="boom"))


def test_without_a_model_the_page_says_run_make_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no artifacts/kws_default here
    demo = build_demo(None, artifacts=tmp_path, compile=False)
    status = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model-status"][0]
    assert status.value == NO_MODEL and "make train" in NO_MODEL
    bad = build_demo(str(tmp_path / "missing"), artifacts=tmp_path, compile=False)
    status = [b for b in bad.blocks.values() if getattr(b, "elem_id", None) == "model-status"][0]
    assert "cannot load" in status.value and "make train" in status.value


def test_cli_has_the_demo_command(capsys):
    from pipelines.cli import main

    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    assert "--model" in capsys.readouterr().out


def _block(demo, elem_id: str):
    return [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id][0]


def test_the_page_follows_the_models_kind(tmp_path):
    from app.demo import title
    from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table
    from tests.streaming.conftest import sensor_model

    save_bundle(kws_model(), tmp_path / "kws", name="kws", version="1")
    save_bundle(sensor_model(), tmp_path / "sensor", name="sensor", version="1")
    make_sensor_anomaly_table(tmp_path / "data" / "t.parquet", n_train=1, n_val=0, n_test=1, channels=2,
                              length=600, anomalies_per_series=2)
    audio = build_demo(str(tmp_path / "kws"), artifacts=tmp_path, compile=False, examples=tmp_path / "data")
    assert "keyword spotting" in _block(audio, "title").value
    assert _block(audio, "mic-tab").visible and not _block(audio, "replay-tab").visible
    sensor = build_demo(str(tmp_path / "sensor"), artifacts=tmp_path, compile=False, examples=tmp_path / "data")
    assert "sensor anomaly detection" in _block(sensor, "title").value and "2 channels at 100 Hz" in title(
        Models(tmp_path, compile=False).engine(str(tmp_path / "sensor")))
    assert _block(sensor, "replay-tab").visible and not _block(sensor, "mic-tab").visible
    series = _block(sensor, "replay-series")
    assert series.value == f"{tmp_path / 'data' / 't.parquet'}::s001" and "2 labelled anomalies" in series.choices[0][0]


def test_replay_view_rendering():
    from app.replay import alarm_frame, headline, meters
    from ssm_signal.streaming.replay import ReplayView

    live = LiveView(latency_ms=1.25, latency_p95_ms=2.5, rtf=0.0012, frames=300)
    alarms = [Event("anomaly", "anomaly", 12.0, 40.5, 11), Event("anomaly", "anomaly", 30.0, 9.25, 29)]
    v = ReplayView(live, "t.parquet · s001", ["ch0"], np.zeros(0), np.zeros((0, 1)), alarms, [(10.0, 20.0)], 8.0,
                   "anomaly", 300.0, 1500.0, 100.0, "playing")
    assert headline(v).startswith("## 2 alarms") and "last alarm at **30.00 s** (score 9.25)" in headline(v)
    assert "playing · position **300.0** of 1500.0 s (100x)" in meters(v) and "**0.0012**" in meters(v)
    assert alarm_frame(v).values.tolist() == [[30.0, "anomaly", 9.25], [12.0, "anomaly", 40.5]]  # newest first
    assert headline(None, "boom").startswith("### ⚠️ boom") and "pick a series" in headline(None)
    ready = ReplayView(LiveView(), "t.parquet · s001", ["ch0"], np.zeros(0), np.zeros((0, 1)), [], [], 8.0,
                       "anomaly", 0.0, 1500.0, 100.0, "ready")
    assert headline(ready) == "### ready: t.parquet · s001 (1500 s of stream)"


def test_onnx_runtime_serves_the_export(exported, tmp_path):
    """--runtime onnx: the page's model is the bundle's export, streamed by the torch-free session, and its
    live view shows what the torch engine's shows; a bundle without an export says how to make one."""
    from ssm_signal.streaming import LiveStream, StreamConfig, StreamEngine
    from tests.streaming.conftest import speechlike

    bundle, out = exported("mamba2")
    models = Models(tmp_path, runtime="onnx")
    engine = models.engine(str(out))
    assert type(engine).__name__ == "OnnxModel" and models.engine(str(out)) is engine  # loaded once
    x = (speechlike(1.5, 48000, 2) * 32767).astype(np.int16)
    onnx_view = LiveStream(engine).push(x, 48000)
    torch_view = LiveStream(StreamEngine(bundle, config=StreamConfig(compile=False))).push(x, 48000)
    assert onnx_view.message is None and onnx_view.frames == torch_view.frames == 149  # the resampler holds 101 samples
    assert onnx_view.top_label == torch_view.top_label
    assert np.abs(onnx_view.values - torch_view.values).max() <= 1e-4
    status = [b for b in build_demo(str(out), artifacts=tmp_path, runtime="onnx").blocks.values()
              if getattr(b, "elem_id", None) == "model-status"][0]
    assert status.value == f"Model: `{out}`"
    save_bundle(kws_model(), tmp_path / "plain", name="plain", version="1")
    status = [b for b in build_demo(str(tmp_path / "plain"), artifacts=tmp_path, runtime="onnx").blocks.values()
              if getattr(b, "elem_id", None) == "model-status"][0]
    assert "cannot load" in status.value and "ssm-signal export" in status.value
