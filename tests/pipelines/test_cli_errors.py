"""Issue 17, points 13 and 15: every CLI error is one line naming the problem and the field or path
(exit 2 for usage, 1 for failures; --debug adds the traceback), and an unreachable MLflow server
fails in seconds naming its URI."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.cli import main
from pipelines.tracking import TrackingUnreachable, tracking_client
from ssm_signal import save_bundle
from tests.test_bundle import small_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(tmp_path):
    bundle = save_bundle(small_model(), tmp_path / "bundle")
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "a.wav", (0.1 * np.sin(np.arange(4000) / 3)).astype(np.float32), 8000)
    return tmp_path, bundle, data


def score(capsys, *args: str) -> tuple[int, str]:
    rc = main(["score", *args, "--num-workers", "0", "--accelerator", "cpu", "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    return rc, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1, err
    return lines[0]


def test_usage_errors_exit_2_with_one_line(setup, capsys):
    tmp, bundle, data = setup
    (tmp / "empty").mkdir()
    pd.DataFrame({"file": ["a.wav"]}).to_csv(tmp / "m.csv", index=False)
    (tmp / "notes.txt").write_text("notes")
    cases = [
        (["--input", str(tmp / "empty")], "--input", "no input files found"),
        (["--input", str(tmp / "nowhere")], "--input", "no such file or directory"),
        (["--input", str(data), "--batch-size", "0"], "--batch-size", "--batch-size must be >= 1, got 0"),
        (["--input", str(data), "--batch-size", "-5"], "--batch-size", "got -5"),
        (["--input", str(tmp / "m.csv")], "--input", "needs a 'path' column"),
        (["--input", str(data), "--output", str(tmp / "notes.txt" / "s.parquet")], "--output", "cannot write there"),
        (["--input", str(data), "--output", str(tmp / "notes.txt")], "--output", "not an ssm-signal scoring output"),
    ]
    for args, field, words in cases:
        rc, err = score(capsys, "--model", str(bundle), *(args if "--output" in args else
                                                         [*args, "--output", str(tmp / "o.parquet")]))
        line = one_line(err)
        assert rc == 2 and field in line and words in line, (args, err)
    with pytest.raises(SystemExit) as e:  # argparse's own: exits 2, its message on one line
        score(capsys, "--model", str(bundle), "--input", str(data), "--batch-size", "x")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--batch-size" in one_line(err) and "invalid int value" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(setup, capsys):
    tmp, bundle, data = setup
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    rc, err = score(capsys, "--model", str(bundle), "--input", str(data), "--output", str(ro / "s.parquet"))
    assert rc == 2 and "permission denied" in one_line(err)


def test_bundle_failures_exit_1_with_one_line_and_debug_shows_the_traceback(setup, capsys):
    tmp, bundle, data = setup
    rc, err = score(capsys, "--model", str(tmp / "nope"), "--input", str(data), "--output", str(tmp / "o.parquet"))
    assert rc == 1 and "is not a model bundle" in one_line(err)
    meta = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps({**meta, "format_version": "1"}))
    rc, err = score(capsys, "--model", str(bundle), "--input", str(data), "--output", str(tmp / "o.parquet"))
    line = one_line(err)
    assert rc == 1 and "format_version must be an integer, got '1'" in line and "--debug" in line
    rc = main(["score", "--debug", "--model", str(bundle), "--input", str(data), "--output", str(tmp / "o.parquet"),
               "--no-mlflow"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback (most recent call last)" in err and "BundleError" in err


def test_fit_config_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """A negative n_mels (usage, 2) and a missing data root (failure, 1): one line each, no traceback."""
    monkeypatch.chdir(tmp_path)
    base = ["fit", "--config", str(ROOT / "configs/kws_default.yaml"), "--trainer.logger", "false"]
    rc = main([*base, "--model.network.frontend.n_mels", "-3"])
    err = capsys.readouterr().err
    assert rc == 2 and "frontend.n_mels must be >= 1, got -3" in err and "Traceback" not in err
    rc = main([*base, "--data.init_args.root", str(tmp_path / "missing"), "--data.init_args.generate", "false"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{tmp_path / 'missing'}: Speech Commands root folder not found" in err
    assert "Traceback" not in err


def test_a_data_check_is_said_alone_not_in_jsonargparse_s_union_report(tmp_path, capsys, monkeypatch):
    """A bound broken inside the data module's settings: the check's own words, not every Union subtype tried."""
    monkeypatch.chdir(tmp_path)
    rc = main(["fit", "--config", str(ROOT / "configs/kws_default.yaml"), "--trainer.logger", "false",
               "--data.init_args.channel.reverb", "2"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ssm-signal")]
    assert rc == 2 and err == ["ssm-signal fit: error: config: reverb must be >= 0 and <= 1, got 2.0"], err


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_unreachable_tracking_server_fails_in_seconds_naming_the_uri(setup, capsys, monkeypatch):
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.perf_counter()
    with pytest.raises(TrackingUnreachable, match=rf"MLflow tracking server {uri} is unreachable"):
        tracking_client()
    assert time.perf_counter() - t0 < 5
    tmp, bundle, data = setup
    t0 = time.perf_counter()
    rc = main(["score", "--model", str(bundle), "--input", str(data), "--output", str(tmp / "o.parquet"),
               "--num-workers", "0", "--accelerator", "cpu"])
    line = one_line(capsys.readouterr().err)
    assert rc == 1 and uri in line and "--no-mlflow" in line and time.perf_counter() - t0 < 10
    assert not (tmp / "o.parquet").exists()  # said before scoring, not after


def test_a_server_that_never_answers_fails_within_the_configured_time(monkeypatch):
    """It accepts the connection (the kernel does, for a listening socket) and never replies."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SSM_SIGNAL_MLFLOW_TIMEOUT", "1")
    for knob in ("MAX_RETRIES", "BACKOFF_FACTOR", "TIMEOUT"):  # set by the check; restored after the test
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{knob}", raising=False)
    t0 = time.perf_counter()
    try:
        with pytest.raises(Exception, match=uri.replace(".", r"\.")):
            tracking_client().search_experiments()
    finally:
        server.close()
    assert time.perf_counter() - t0 < 10  # MLflow's defaults: ~255 s
