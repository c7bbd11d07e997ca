"""Issue 17, the scorer fed bad inputs and faults: resume keyed on the model and each file's identity,
outputs it must not overwrite, non-finite weights and outputs, files of the wrong kind, long files in
blocks, names that are not UTF-8, FIFOs, SIGTERM, 1 Hz headers, file errors in words, duplicated paths."""

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
import torch

import ssm_signal.bundle as bundle_mod
from pipelines.errors import UsageError
from pipelines.score import ScoreConfig, score
from pipelines.score import job as score_job
from pipelines.score import long_files as score_long
from ssm_signal import load_bundle, save_bundle
from tests.pipelines.test_score import make_files
from tests.test_bundle import small_model

ROOT = Path(__file__).resolve().parents[2]


def cfg(model, input, output, **kw) -> ScoreConfig:
    return ScoreConfig(model=str(model), input=str(input), output=str(output), num_workers=0, accelerator="cpu",
                       mlflow=False, **kw)


@pytest.fixture
def bundle_dir(tmp_path):
    return save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="3")


def test_resume_refuses_rows_of_a_retrained_model(tmp_path, bundle_dir):
    """Point 1: same name and version, other weights: the rerun refuses instead of keeping the old rows."""
    data = tmp_path / "data"
    make_files(data, 4)
    out = tmp_path / "s.parquet"
    score(cfg(bundle_dir, data, out))
    before = pd.read_parquet(out)
    retrained = save_bundle(small_model(), tmp_path / "bundle2", name="tiny", version="3")
    with pytest.raises(UsageError, match=r"another model \(tiny v3.*name another --output"):
        score(cfg(retrained, data, out))
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)  # nothing mixed in, nothing lost
    fresh = score(cfg(retrained, data, tmp_path / "fresh.parquet"))
    assert fresh["scored_this_run"] == 4 and set(pd.read_parquet(tmp_path / "fresh.parquet")["fingerprint"]) == {
        load_bundle(retrained).fingerprint}


def test_resume_rescores_a_file_that_changed(tmp_path, bundle_dir):
    """Point 1: a file's identity is its path, size and mtime: rewritten, it is scored again."""
    data = tmp_path / "data"
    files = make_files(data, 4)
    out = tmp_path / "s.parquet"
    score(cfg(bundle_dir, data, out))
    x = (0.2 * np.random.default_rng(1).normal(size=6000)).astype(np.float32)
    sf.write(files[1], x, 8000)
    os.utime(files[1], ns=(time.time_ns(), time.time_ns() + 10**9))
    s = score(cfg(bundle_dir, data, out))
    df = pd.read_parquet(out)
    assert s["scored_this_run"] == 1 and len(df) == 4 and df["path"].is_unique
    row = df[df["path"] == str(files[1])].iloc[0]
    assert row["duration_s"] == pytest.approx(6000 / 8000)
    # the new content's scores (not the old file's); 1e-3: float rounding of the two paths differs with the
    # random weights (up to 5e-5 seen), while another file's scores differ by far more
    assert np.allclose(row["scores"], load_bundle(bundle_dir).predict(x, 8000).scores, atol=1e-3)
    assert score(cfg(bundle_dir, data, out))["scored_this_run"] == 0


@pytest.mark.parametrize("kind", ["notes", "manifest", "directory"])
def test_output_that_is_not_ours_is_refused_before_scoring(tmp_path, bundle_dir, kind):
    """Point 2: a notes file, the input manifest, a directory: refused, untouched, nothing scored."""
    data = tmp_path / "data"
    files = make_files(data, 2)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(f) for f in files]}).to_csv(manifest, index=False)
    out = {"notes": tmp_path / "notes.txt", "manifest": manifest, "directory": tmp_path / "out.parquet"}[kind]
    if kind == "notes":
        out.write_text("my notes\n")
    elif kind == "directory":
        out.mkdir()
    before = out.read_bytes() if out.is_file() else None
    with pytest.raises(UsageError, match="--output"):
        score(cfg(bundle_dir, manifest, out))
    assert (out.read_bytes() if out.is_file() else None) == before
    assert not out.with_name(out.name + ".parts").exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_non_finite_model_output_is_an_error_row(tmp_path, bundle_dir, monkeypatch):
    """Point 3: a model that outputs NaN (weights damaged after the load check) gives error rows."""
    b = load_bundle(bundle_dir)
    with torch.no_grad():
        b.model.head.proj.bias.fill_(float("nan"))
    monkeypatch.setattr(score_job, "load_bundle", lambda *a, **k: b)
    data = tmp_path / "data"
    make_files(data, 3)
    s = score(cfg(bundle_dir, data, tmp_path / "s.parquet", frames=True))
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert s["ok"] == 0 and s["errors"] == 3
    assert df["error"].str.startswith("NonFiniteOutput").all() and df["scores"].isna().all()


def test_folder_holds_what_the_model_reads(tmp_path, bundle_dir):
    """Point 4: a .npy (or any other file) in an audio folder is skipped and counted, never read as
    a 1 Hz signal; named explicitly, it is an error row."""
    data = tmp_path / "data"
    make_files(data, 3)
    np.save(data / "yes" / "x.npy", np.random.default_rng(0).normal(size=(4000, 1)).astype(np.float32))
    (data / "README").write_text("about the data")
    s = score(cfg(bundle_dir, data, tmp_path / "a.parquet"))
    assert s["files"] == 3 and s["skipped_files"] == {".npy": 1, "(no suffix)": 1}
    s = score(cfg(bundle_dir, str(data / "*" / "*"), tmp_path / "b.parquet"))
    df = pd.read_parquet(tmp_path / "b.parquet")
    npy = df[df["path"].str.endswith(".npy")].iloc[0]
    assert s["files"] == 4 and npy["status"] == "error" and "not an audio file (.npy)" in npy["error"]


def test_long_files_in_blocks_equal_the_whole_file_path(tmp_path, bundle_dir, monkeypatch):
    """Point 7: read in blocks with the state carried (resampled, stereo downmixed, windows) equals the
    whole-file path, scores and frames."""
    data = tmp_path / "data"
    make_files(data, 3, seconds=1.7)
    t = np.arange(int(1.3 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 700 * t)], 1).astype(np.float32)
    sf.write(data / "up" / "stereo.wav", stereo, 44100)
    monkeypatch.setattr(bundle_mod, "PREDICT_WINDOW_SECONDS", 0.25)
    monkeypatch.setattr(score_long, "BLOCK_SECONDS", 0.37)
    whole = score(cfg(bundle_dir, data, tmp_path / "whole.parquet", frames=True))
    blocks = score(cfg(bundle_dir, data, tmp_path / "blocks.parquet", frames=True, long_bytes=1))
    assert whole["ok"] == blocks["ok"] == 4
    a = pd.read_parquet(tmp_path / "whole.parquet").set_index("path")
    b = pd.read_parquet(tmp_path / "blocks.parquet").set_index("path")
    fa, fb = pd.read_parquet(tmp_path / "whole_frames"), pd.read_parquet(tmp_path / "blocks_frames")
    labels = load_bundle(bundle_dir).labels
    for p in a.index:
        assert np.allclose(a.loc[p, "scores"], b.loc[p, "scores"], atol=1e-5)
        assert a.loc[p, "duration_s"] == pytest.approx(b.loc[p, "duration_s"])
        x, y = (f[f["path"] == p].sort_values("frame")[labels].to_numpy() for f in (fa, fb))
        assert x.shape == y.shape and np.abs(x - y).max() < 1e-5


def test_a_job_of_long_files_scores_without_lightning(tmp_path, bundle_dir):
    """Point 7: the long-file path stays within its memory bound partly by never importing Lightning
    (~220 MB resident; benchmarks/bench_score_memory.py): the default command, MLflow's store check
    included, scores long files and writes its rows without it."""
    data = tmp_path / "data"
    make_files(data, 2, seconds=1.0)
    code = ("import sys; from pipelines.score import ScoreConfig, score; "
            f"s = score(ScoreConfig(model={str(bundle_dir)!r}, input={str(data)!r}, "
            f"output={str(tmp_path / 's.parquet')!r}, num_workers=0, accelerator='cpu', long_bytes=1)); "
            "print(s['ok'], 'lightning' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["2", "False"]


def test_the_score_command_starts_without_lightning(tmp_path):
    """What the CLI runs before every ``score`` (its warning filters, its logging) imports no Lightning either:
    the long-file memory bound holds for the command, not just for the function."""
    code = ("import sys\nfrom pipelines.cli import main\ntry:\n    main(['score', '--help'])\n"
            "except SystemExit:\n    pass\nprint('lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"


def test_long_file_with_nan_is_an_error_row(tmp_path, bundle_dir):
    data = tmp_path / "data"
    data.mkdir()
    x = np.zeros(16000, np.float32)
    x[12000] = np.nan
    sf.write(data / "nan.wav", x, 8000, subtype="FLOAT")
    s = score(cfg(bundle_dir, data, tmp_path / "s.parquet", long_bytes=1))
    assert s["errors"] == 1 and "NaN" in pd.read_parquet(tmp_path / "s.parquet")["error"][0]


@pytest.mark.skipif(sys.platform != "linux", reason="needs a POSIX file system that takes any bytes in names")
def test_name_that_is_not_utf8_is_scored_and_written_losslessly(tmp_path, bundle_dir):
    """Point 8: one such name among good files: every file gets its row, the name's bytes exactly."""
    data = tmp_path / "data"
    make_files(data, 3)
    raw = os.fsencode(str(data / "yes")) + b"/caf\xe9-\xff.wav"
    x = (0.1 * np.sin(np.arange(4000) / 5)).astype(np.float32)
    with open(os.fsdecode(raw), "wb") as fh:  # soundfile takes no such str path itself
        sf.write(fh, x, 8000, format="WAV", subtype="FLOAT")  # FLOAT: not the int16 fast path
    s = score(cfg(bundle_dir, data, tmp_path / "s.parquet"))
    df = pd.read_parquet(tmp_path / "s.parquet")
    odd = df[df["path_bytes"].notna()]
    assert s["files"] == 4 and s["ok"] == 4 and len(odd) == 1
    assert odd["path_bytes"].iloc[0] == raw and odd["path"].iloc[0].endswith("caf\\xe9-\\xff.wav")
    assert score(cfg(bundle_dir, data, tmp_path / "s.parquet"))["scored_this_run"] == 0  # resumes by the bytes


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "score", *args, "--num-workers", "0", "--accelerator", "cpu",
            "--no-mlflow"]


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_an_error_row_without_being_opened(tmp_path, bundle_dir):
    """Point 9: a FIFO named pipe.wav would block any open for reading: it is an error row."""
    data = tmp_path / "data"
    make_files(data, 3)
    os.mkfifo(data / "yes" / "pipe.wav")
    out = tmp_path / "s.parquet"
    done = subprocess.run(_cli("--model", str(bundle_dir), "--input", str(data), "--output", str(out)), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    df = pd.read_parquet(out)
    pipe = df[df["path"].str.endswith("pipe.wav")].iloc[0]
    assert len(df) == 4 and pipe["error"] == "FileError: not a regular file (a FIFO (named pipe))"


def test_sigterm_stops_cleanly_keeps_the_finished_part_and_resumes(tmp_path, bundle_dir):
    """Point 10: SIGTERM mid-run: exit 143 soon, rows scored so far on disk, a rerun completes the rest."""
    data = tmp_path / "data"
    make_files(data, 80, seconds=2.0)
    out = tmp_path / "scores.parquet"
    parts = out.with_name(out.name + ".parts")
    cmd = _cli("--model", str(bundle_dir), "--input", str(data), "--output", str(out), "--batch-size", "2",
               "--part-rows", "4")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not parts.exists() or len(list(parts.glob("part-*.parquet"))) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and time.time() - t0 < 30
    assert "stopped by SIGTERM" in err and "rerun the same command to resume" in err
    kept = sum(pq.read_metadata(f).num_rows for f in parts.glob("part-*.parquet"))
    assert 4 <= kept < 80 and not out.exists()
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    df = pd.read_parquet(out)
    assert len(df) == 80 and df["path"].is_unique and (df["status"] == "ok").all()


def test_header_claiming_1_hz_is_refused_before_allocating(tmp_path, bundle_dir):
    """Point 11: a 40 KB WAV whose header says 1 Hz: a clear error row in well under a second's work."""
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "one_hz.wav", np.zeros(20000, np.int16), 1, subtype="PCM_16")
    t0 = time.perf_counter()
    s = score(cfg(bundle_dir, data, tmp_path / "s.parquet"))
    row = pd.read_parquet(tmp_path / "s.parquet").iloc[0]
    assert s["errors"] == 1 and "sample_rate 1 Hz is outside the supported range" in row["error"]
    assert time.perf_counter() - t0 < 20


def test_file_errors_say_what_happened(tmp_path, bundle_dir):
    """Point 16: no such file, symlink loop, not a regular file: in words, not "System error."."""
    data = tmp_path / "data"
    files = make_files(data, 1)
    os.symlink(tmp_path / "loop_b.wav", tmp_path / "loop_a.wav")
    os.symlink(tmp_path / "loop_a.wav", tmp_path / "loop_b.wav")
    (tmp_path / "dir.wav").mkdir()
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(files[0]), "missing.wav", "loop_a.wav", "dir.wav"]}).to_csv(manifest, index=False)
    score(cfg(bundle_dir, manifest, tmp_path / "s.parquet"))
    err = pd.read_parquet(tmp_path / "s.parquet").set_index("path")["error"]
    assert err[str(tmp_path / "missing.wav")] == "FileError: no such file"
    assert err[str(tmp_path / "loop_a.wav")] == "FileError: symlink loop"
    assert err[str(tmp_path / "dir.wav")] == "FileError: not a regular file (a directory)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_says_permission_denied(tmp_path, bundle_dir):
    data = tmp_path / "data"
    files = make_files(data, 2)
    files[0].chmod(0)
    score(cfg(bundle_dir, data, tmp_path / "s.parquet"))
    err = pd.read_parquet(tmp_path / "s.parquet").set_index("path")["error"]
    assert err[str(files[0])] == "FileError: permission denied"


def test_duplicated_manifest_path_keeps_every_row(tmp_path, bundle_dir):
    """Point 17: one output row per input row, each with its own true label; the file is scored once."""
    data = tmp_path / "data"
    files = make_files(data, 2)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(files[0]), str(files[1]), str(files[0])],
                  "label": ["yes", "no", "up"]}).to_csv(manifest, index=False)
    s = score(cfg(bundle_dir, manifest, tmp_path / "s.parquet"))
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert s["files"] == 3 and s["scored_this_run"] == 2
    assert list(df["path"]) == [str(files[0]), str(files[1]), str(files[0])]
    assert list(df["true_label"]) == ["yes", "no", "up"] and df.iloc[0]["scores"].tolist() == df.iloc[2]["scores"].tolist()
