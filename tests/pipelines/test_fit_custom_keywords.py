"""Keywords from any text, end to end (issue 16): `ssm-signal fit --config configs/kws_custom.yaml` with
``words`` generates a tiny set from the phrases, trains a tiny model one epoch and writes a bundle whose
labels are the phrases; the bundle streams; the evaluation reads the set's folders as those labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.evaluate import job
from pipelines.evaluate.inputs import read_positives
from pipelines.train import run_fit
from ssm_signal import load_bundle
from ssm_signal.data.audio_io import read_audio
from ssm_signal.data.skips import SkipLog
from ssm_signal.streaming import StreamConfig, StreamingSession

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "kws_custom.yaml"
PHRASES = ["hey nova", "lights on"]
TINY = ["--trainer.logger", "false", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
        "--model.network.backbone.d_model", "16", "--model.network.backbone.layers", "[mamba2]",
        "--model.network.backbone.mixer_kwargs", "{mamba2: {d_state: 8, headdim: 16, chunk_size: 50}}",
        "--data.init_args.batch_size", "16", "--data.init_args.num_workers", "0",
        "--data.init_args.normalization_items", "20", "--output.register", "false"]

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make system-deps)")


def test_a_custom_bundle_trains_from_text_and_streams(tmp_path):
    root = tmp_path / "data" / "my_words"
    out = run_fit(["--config", str(CONFIG), *TINY, "--data.init_args.words", "Hey Nova, lights on",
                   "--data.init_args.root", str(root),
                   "--data.init_args.keyword_set", "{n_speakers: 6, validation_percent: 30, testing_percent: 30}",
                   "--output.bundle_dir", str(tmp_path / "bundle"), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert (root / "hey_nova").is_dir() and 0.0 <= out["metrics"]["test_acc"] <= 1.0
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.labels == [*PHRASES, "_silence_", "_unknown_"]  # the phrase text, not its folder
    assert bundle.name == "kws_hey_nova-lights_on"  # named after the words where the config leaves it empty

    clip = sorted((root / "hey_nova").glob("*.wav"))[0]
    session = StreamingSession(bundle, config=StreamConfig(compile=False))
    wave = read_audio(clip, 16000).numpy()
    pushed = [session.push(wave[i:i + 1600], 16000).frame_scores for i in range(0, len(wave), 1600)]
    scores = [f for f in [*pushed, session.flush().frame_scores] if len(f)]
    assert sum(len(f) for f in scores) == 100  # 1 s at 10 ms frames
    assert all(f.shape[1] == 4 and abs(f.sum(1) - 1).max() < 1e-4 for f in scores)  # posteriors over the labels

    # the evaluation's default positives for this bundle are its own set; its folders read as the phrases
    clips = read_positives(root / "testing_list.txt", bundle.labels, skips := SkipLog())
    assert {c.label for c in clips} >= set(PHRASES) and not skips


def test_default_positives_of_a_custom_bundle_are_its_own_set(monkeypatch, tmp_path):
    made = []
    monkeypatch.setattr("ssm_signal.data.custom_keywords.generate_custom_set",
                        lambda words, root: made.append((words, root)) or Path(root))
    got = job._default_positives("testing_list.txt", [*PHRASES, "_silence_", "_unknown_"])
    assert made == [(PHRASES, "data/keywords_hey_nova-lights_on")]
    assert got == "data/keywords_hey_nova-lights_on/testing_list.txt"
    monkeypatch.setattr("ssm_signal.data.keywords.generate_keyword_set", lambda root: made.append(root))
    # a bundle of the default set's words keeps the default set
    assert job._default_positives("testing_list.txt", ["yes", "no", "_silence_", "_unknown_"]) == "data/keywords/testing_list.txt"


def test_bad_words_in_the_config_are_one_line(capsys):
    rc = main(["fit", "--config", str(CONFIG), "--trainer.logger", "false", "--data.init_args.words", "[hey nova, r2d2]"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ssm-signal")]
    assert rc == 2 and err == ["ssm-signal fit: error: data.init_args.words: keyword 'r2d2' has characters '2': use "
                               "English letters, spaces and apostrophes only (write numbers as words)"], err
