"""The generated keyword set: Speech Commands layout, voice-disjoint splits, determinism, caching,
and clear failures. Uses espeak-ng (installed by `make test`) on a few speakers and words."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from ssm_signal.data import keywords as kw
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import SpeechCommands, speaker_of
from tests.helpers import require_tool, tree_digest


@pytest.fixture(scope="module", autouse=True)
def espeak_ng():
    require_tool("espeak-ng")

TINY = kw.KeywordSetConfig(n_speakers=10, words=("yes", "no"), other_words=("bed", "cat", "dog"),
                           other_per_speaker=1, validation_percent=30, testing_percent=30)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return kw.generate_keyword_set(tmp_path_factory.mktemp("kw") / "set", seed=5, config=TINY, workers=1)


def test_layout_and_clip_format(tiny_set):
    speakers = kw.plan_speakers(TINY, 5)
    wavs = sorted(p for p in tiny_set.glob("*/*.wav") if not p.parent.name.startswith("_"))
    assert len(wavs) == sum(len(s.words) for s in speakers) == 10 * 3
    for p in wavs:
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        assert p.name.endswith("_nohash_0.wav") and p.parent.name in TINY.words + TINY.other_words
    x, _ = sf.read(wavs[0])
    assert 0.003 < np.abs(x).max() <= 1.0  # levelled speech, not silence, not clipped
    noise = sorted((tiny_set / "_background_noise_").glob("*.wav"))
    assert noise, "real background noise recordings are copied in"
    assert json.loads((tiny_set / kw.MARKER).read_text())["seed"] == 5


def test_splits_are_voice_disjoint_and_complete(tiny_set):
    variant = {s.id: s.variant for s in kw.plan_speakers(TINY, 5)}
    lists = {name: (tiny_set / f"{name}_list.txt").read_text().split() for name in ("validation", "testing")}
    listed = set(lists["validation"]) | set(lists["testing"])
    train = [f"{p.parent.name}/{p.name}" for p in tiny_set.glob("*/*.wav")
             if not p.parent.name.startswith("_") and f"{p.parent.name}/{p.name}" not in listed]
    voices = {name: {variant[speaker_of(r)] for r in rels} for name, rels in {**lists, "training": train}.items()}
    assert all(voices.values()), f"every split gets voices: {voices}"
    assert not voices["training"] & voices["validation"]
    assert not voices["training"] & voices["testing"]
    assert not voices["validation"] & voices["testing"]


def test_the_speech_commands_loader_reads_it(tiny_set):
    ds = SpeechCommands(tiny_set, "training", setup="default", words=["yes", "no"])
    assert ds.labels == ["yes", "no", "_silence_", "_unknown_"]
    counts = ds.class_counts()
    assert counts["yes"] > 0 and counts["_unknown_"] > 0 and counts["_silence_"] > 0
    wave, label = ds[0]
    assert wave.shape == (16000,) and 0 <= label < 4


def test_deterministic_for_a_seed_and_cached(tiny_set, tmp_path):
    again = kw.generate_keyword_set(tmp_path / "again", seed=5, config=TINY, workers=2)
    assert tree_digest(again) == tree_digest(tiny_set)
    other = kw.generate_keyword_set(tmp_path / "other", seed=6, config=TINY, workers=1)
    assert tree_digest(other) != tree_digest(tiny_set)
    mtimes = {p: p.stat().st_mtime_ns for p in again.rglob("*.wav")}
    kw.generate_keyword_set(again, seed=5, config=TINY)  # cached: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*.wav")} == mtimes


def test_refuses_foreign_or_differently_generated_folders(tiny_set, tmp_path):
    with pytest.raises(DataError, match="other settings"):
        kw.generate_keyword_set(tiny_set, seed=7, config=TINY)
    real = tmp_path / "speech_commands"
    (real / "yes").mkdir(parents=True)
    (real / "validation_list.txt").write_text("")
    with pytest.raises(DataError, match="not a generated keyword set"):
        kw.generate_keyword_set(real, config=TINY)
    assert (real / "yes").is_dir()  # untouched


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(kw.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng not found"):
        kw.generate_keyword_set(tmp_path / "x", config=TINY)
    assert not (tmp_path / "x").exists()


def test_bad_config():
    with pytest.raises(ValueError, match="overlap"):
        kw.KeywordSetConfig(words=("yes",), other_words=("yes",), other_per_speaker=1)
    with pytest.raises(ValueError, match="sum to"):
        kw.KeywordSetConfig(validation_percent=60, testing_percent=50)
