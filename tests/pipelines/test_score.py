"""Batch scoring: one row per input, error rows for bad files, equality with predict,
windowed == whole, and a real process killed mid-run that resumes to exactly one row each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import ssm_signal.bundle as bundle_mod
from pipelines.score import ScoreConfig, score
from ssm_signal import load_bundle, save_bundle
from tests.test_bundle import small_model

ROOT = Path(__file__).resolve().parents[2]


def make_files(root: Path, n: int, seconds: float = 0.5, rate: int = 8000) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        label = ["yes", "no", "up"][i % 3]
        (root / label).mkdir(parents=True, exist_ok=True)
        p = root / label / f"f{i:04d}.wav"
        r = rate if i % 4 else 16000  # some at another rate: resampled
        t = np.arange(int(seconds * r)) / r
        sf.write(p, (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.normal(size=t.shape)).astype(
            np.float32), r)
        paths.append(p)
    return paths


@pytest.fixture
def bundle_dir(tmp_path):
    return save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="3")


def test_one_row_per_input_with_error_rows(tmp_path, bundle_dir):
    data = tmp_path / "data"
    good = make_files(data, 7)
    (data / "yes" / "corrupt.wav").write_bytes(b"RIFF....not a wav at all")
    sf.write(data / "no" / "empty.wav", np.zeros(0, np.float32), 8000)
    sf.write(data / "no" / "short.wav", np.zeros(5, np.float32), 8000)
    sf.write(data / "up" / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    (data / "up" / "notes.mp3").write_text("this is text")
    out = tmp_path / "scores.parquet"
    s = score(ScoreConfig(model=str(bundle_dir), input=str(data), output=str(out), frames=True, num_workers=0,
                          accelerator="cpu", mlflow=False))
    df = pd.read_parquet(out)
    assert len(df) == 12 and df["path"].is_unique
    bad = df[df["status"] == "error"]
    assert len(bad) == 5 and s["errors"] == 5 and s["ok"] == 7
    assert bad["error"].str.len().min() > 10  # each error row says what was wrong
    assert any("too short" in e for e in bad["error"]) and any("NaN" in e for e in bad["error"])
    # per-file results equal bundle.predict (same preparation, same model, batching is causal)
    b = load_bundle(bundle_dir)
    for p in good:
        x, rate = sf.read(p, dtype="float32")
        pred = b.predict(x, rate)
        row = df[df["path"] == str(p)].iloc[0]
        assert row["label"] == pred.label
        assert np.allclose(row["scores"], pred.scores, atol=1e-5)
        frames = pd.read_parquet(out.with_name("scores_frames"), filters=[("path", "==", str(p))])
        assert np.allclose(frames[b.labels].to_numpy(), pred.frame_scores, atol=1e-5)
    assert s["accuracy"] is not None and len(s["confusion"]["matrix"]) == 3


def test_rows_equal_a_streaming_session(tmp_path, bundle_dir, seed):
    """Batch scoring and a live session on the same file, pushed in random chunks, agree frame by frame."""
    from ssm_signal.streaming import StreamConfig, StreamingSession

    data = tmp_path / "data"
    files = make_files(data, 5, seconds=1.3)
    out = tmp_path / "s.parquet"
    score(ScoreConfig(model=str(bundle_dir), input=str(data), output=str(out), frames=True, num_workers=0,
                      accelerator="cpu", mlflow=False))
    b = load_bundle(bundle_dir)
    rng = np.random.default_rng(seed)
    for p in files:
        x, rate = sf.read(p, dtype="float32")
        # eager frame steps: what is compared is the arithmetic, not the compiled latency path
        session, got, i = StreamingSession(b, config=StreamConfig(compile=False)), [], 0
        while i < len(x):
            n = int(rng.integers(1, 2000))
            got.append(session.push(x[i:i + n], rate).frame_scores)
            i += n
        got.append(session.flush().frame_scores)
        stream = np.concatenate(got)
        frames = pd.read_parquet(out.with_name("s_frames"), filters=[("path", "==", str(p))])
        batch = frames.sort_values("frame")[b.labels].to_numpy()
        assert stream.shape == batch.shape
        assert np.abs(stream - batch).max() <= 1e-4


def test_windowed_equals_whole(tmp_path, bundle_dir, monkeypatch):
    data = tmp_path / "data"
    make_files(data, 4, seconds=2.0)
    whole = score(ScoreConfig(model=str(bundle_dir), input=str(data), output=str(tmp_path / "a.parquet"),
                              num_workers=0, accelerator="cpu", mlflow=False))
    monkeypatch.setattr(bundle_mod, "PREDICT_WINDOW_SECONDS", 0.13)
    windowed = score(ScoreConfig(model=str(bundle_dir), input=str(data), output=str(tmp_path / "b.parquet"),
                                 num_workers=0, accelerator="cpu", mlflow=False))
    a = pd.read_parquet(tmp_path / "a.parquet").set_index("path")
    b = pd.read_parquet(tmp_path / "b.parquet").set_index("path")
    assert whole["ok"] == windowed["ok"] == 4
    for p in a.index:
        assert np.allclose(a.loc[p, "scores"], b.loc[p, "scores"], atol=1e-5)


def test_manifest_input_and_missing_files(tmp_path, bundle_dir):
    data = tmp_path / "data"
    files = make_files(data, 3)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(f.relative_to(tmp_path)) for f in files] + ["missing.wav"],
                  "label": ["yes", "no", "up", "yes"]}).to_csv(manifest, index=False)
    s = score(ScoreConfig(model=str(bundle_dir), input=str(manifest), output=str(tmp_path / "o.parquet"),
                          num_workers=0, accelerator="cpu", mlflow=False))
    assert s["files"] == 4 and s["errors"] == 1


def test_split_list_input(tmp_path, bundle_dir):
    data = tmp_path / "data"
    files = make_files(data, 4)
    (data / "testing_list.txt").write_text("".join(f"{f.parent.name}/{f.name}\n" for f in files[:3]))
    s = score(ScoreConfig(model=str(bundle_dir), input=str(data / "testing_list.txt"),
                          output=str(tmp_path / "o.parquet"), num_workers=0, accelerator="cpu", mlflow=False))
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert s["files"] == 3 and set(df["path"]) == {str(f) for f in files[:3]}
    assert list(df.sort_values("path")["true_label"]) == [f.parent.name for f in sorted(files[:3])]


def test_killed_run_resumes_to_exactly_one_row_per_input(tmp_path, bundle_dir):
    data = tmp_path / "data"
    make_files(data, 80, seconds=2.0)
    out = tmp_path / "scores.parquet"
    parts = out.with_name(out.name + ".parts")
    cmd = [sys.executable, "-m", "pipelines.cli", "score", "--model", str(bundle_dir), "--input", str(data),
           "--output", str(out), "--batch-size", "2", "--num-workers", "0", "--accelerator", "cpu", "--no-mlflow",
           "--part-rows", "4"]  # two batches to a part
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not parts.exists() or len(list(parts.glob("part-*.parquet"))) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    on_disk = list(parts.glob("part-*.parquet"))
    assert 3 <= len(on_disk) < 20, "the run was not killed mid-way"
    assert {pq.read_metadata(f).num_rows for f in on_disk} == {4}  # whole parts of two batches, none torn
    assert not out.exists()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    df = pd.read_parquet(out)
    assert len(df) == 80 and df["path"].is_unique and (df["status"] == "ok").all()
    assert "80 files" in done.stdout
