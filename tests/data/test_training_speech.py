"""What training speakers say beyond isolated words: held-out texts stay held out, near-misses are no
keywords, only training speakers get any of it, the loader reads the negatives as ``_unknown_`` and the
keywords in context as their keyword, the keyword is whole in its window, and the words' clips do not
change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssm_signal.data import keywords as kw
from ssm_signal.data import negatives
from ssm_signal.data import training_speech as kn
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import CORE_WORDS, SpeechCommands, speaker_of

TINY = kw.KeywordSetConfig(n_speakers=10, words=("yes", "left"), other_words=("bed", "cat"), other_per_speaker=1,
                           validation_percent=30, testing_percent=30, engine_speakers={"flite": 1})
# no music here: music joins the background noise, which changes every clip's mixed-in noise
NEG = kn.TrainingSpeech(sentences_per_speaker=2, crops_per_sentence=2, near_misses_per_speaker=2,
                        in_context_per_speaker=3)


POOL = dataclasses.replace(NEG, pool_sentences_per_speaker=2, pool_foreign_per_speaker=1)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("kwneg")
    plain = kw.generate_keyword_set(root / "plain", seed=5, config=TINY, workers=1)
    with_neg = kw.generate_keyword_set(root / "neg", seed=5, config=dataclasses.replace(TINY, training_speech=NEG),
                                       workers=1)
    return plain, with_neg


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    return kw.generate_keyword_set(tmp_path_factory.mktemp("kwpool") / "pool", seed=5, workers=1,
                                   config=dataclasses.replace(TINY, training_speech=POOL))


def test_training_texts_are_not_the_evaluation_texts():
    assert not set(kn.TRAINING_TEXTS) & set(negatives.TEXT_SOURCES)
    pool = kn.training_sentences()
    assert len(pool) > 300
    assert not set(pool) & set(negatives.load_sentences())
    assert not any(negatives.holds_keyword(s) for s in pool)


def test_near_misses_are_no_keyword_homophone_or_form():
    assert set(kn.NEAR_MISSES) == set(CORE_WORDS)
    every = {m for ms in kn.NEAR_MISSES.values() for m in ms}
    assert not every & set(negatives.KEYWORD_LIKE)
    assert all(len(ms) >= 3 for ms in kn.NEAR_MISSES.values())
    assert kn.near_misses(("left", "lift")) == tuple(sorted({"loft", "theft", "laughed", "deft", "let"}))
    assert kn.near_misses(("hey nova",)) == ()


def test_only_training_speakers_get_negatives_and_the_loader_reads_them(sets):
    _, root = sets
    split = {s.id: s.split for s in kw.plan_speakers(dataclasses.replace(TINY, training_speech=NEG), 5)}
    files = sorted((root / kn.UNKNOWN_DIR).glob("*.wav"))
    assert files and {split[speaker_of(p)] for p in files} == {"training"}
    n_train = sum(v == "training" for v in split.values())
    # two near-misses each, and up to two windows of each of two sentences
    assert 2 * n_train + n_train * 2 <= len(files) <= 2 * n_train + n_train * 2 * 2
    for p in files:
        info = sf.info(p)
        assert (info.samplerate, info.frames) == (16000, 16000)
    train = SpeechCommands(root, "training", words=TINY.words)
    unknown = train.labels.index("_unknown_")
    got = {str(p.relative_to(root)) for p, t in zip(train._paths, train._targets, strict=True) if t == unknown}
    assert {f"{kn.UNKNOWN_DIR}/{p.name}" for p in files} <= got
    for subset in ("validation", "testing"):
        assert not any(kn.UNKNOWN_DIR in str(p) for p in SpeechCommands(root, subset, words=TINY.words)._paths)


def test_the_words_clips_are_those_of_the_set_without_negatives(sets):
    plain, neg = sets
    words = sorted(p.relative_to(plain) for p in plain.glob("*/*.wav") if not p.parent.name.startswith("_"))
    assert words and all(p.name.endswith("_nohash_0.wav") for p in words)
    for rel in words:
        a, _ = sf.read(plain / rel, dtype="int16")
        b, _ = sf.read(neg / rel, dtype="int16")
        # the same samples; a float sum's last bit may differ with the buffer's alignment (SIMD order), which
        # can move a rare sample by one step of 16-bit PCM, never more
        diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
        assert a.shape == b.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-3, rel


def test_keywords_in_context_are_training_clips_of_their_keyword(sets):
    _, root = sets
    split = {s.id: s.split for s in kw.plan_speakers(dataclasses.replace(TINY, training_speech=NEG), 5)}
    n_train = sum(v == "training" for v in split.values())
    ctx = sorted(p for w in TINY.words for p in (root / w).glob("*_nohash_c*.wav"))
    assert len(ctx) == 3 * n_train and {split[speaker_of(p)] for p in ctx} == {"training"}
    train = SpeechCommands(root, "training", words=TINY.words)
    label = {str(p.relative_to(root)): train.labels[t] for p, t in zip(train._paths, train._targets, strict=True)}
    assert all(label[str(p.relative_to(root))] == p.parent.name for p in ctx)


def test_in_context_keeps_the_whole_keyword():
    rng = np.random.default_rng(1)
    before, key, after = torch.full((9000,), 0.1), torch.full((5000,), 0.7), torch.full((7000,), 0.2)
    for _ in range(50):
        win = kn.in_context([before, key, after], 1, 16000, (0.02, 0.25), rng)
        assert win.shape[0] == 16000 and int((win == 0.7).sum()) == 5000
    long = torch.full((20000,), 0.7)
    assert torch.equal(kn.in_context([before, long], 1, 16000, (0.0, 0.0), rng), long[:16000])
    short = kn.in_context([torch.ones(100), key], 1, 16000, (0.0, 0.0), rng)
    assert short.shape[0] == 5100  # all of it: shorter than the window


def test_plan_is_for_training_speakers_only():
    cfg = kn.TrainingSpeech(sentences_per_speaker=1, near_misses_per_speaker=1, in_context_per_speaker=2)
    assert kn.plan(("yes", "no"), "validation", 7, cfg) == []
    plan = kn.plan(("yes", "no"), "training", 7, cfg)
    assert [u.kind for u in plan] == ["s", "n", "c", "c"]
    assert plan == kn.plan(("yes", "no"), "training", 7, cfg)  # deterministic for a seed
    for u in plan[2:]:
        assert u.label == u.texts[u.key] in ("yes", "no") and len(u.texts) >= 2
        assert not any(negatives.holds_keyword(t) for i, t in enumerate(u.texts) if i != u.key)


def test_keywords_can_end_their_phrase():
    """With no word after it the keyword is its phrase's last word, and its clip ends where the keyword ends."""
    cfg = kn.TrainingSpeech(in_context_per_speaker=40, in_context_words_after=0)
    plan = kn.plan(("yes", "no"), "training", 7, cfg)
    assert len(plan) == 40 and all(u.key == len(u.texts) - 1 >= 1 for u in plan)
    default = kn.plan(("yes", "no"), "training", 7, dataclasses.replace(cfg, in_context_words_after=2))
    assert any(u.key < len(u.texts) - 1 for u in default)  # words after the keyword, by default
    rng = np.random.default_rng(3)
    before, key = torch.full((14000,), 0.1), torch.full((5000,), 0.7)
    for _ in range(20):
        win = kn.in_context([before, key], 1, 16000, (0.02, 0.25), rng)
        assert win.shape[0] == 16000 and torch.equal(win[-5000:], key)


def test_near_misses_in_context_are_unknown_and_leave_the_other_draws_alone():
    """Each is a near miss of the set's keywords in a phrase built as a keyword's is (here ending it), labelled
    ``_unknown_``, after every other utterance, which stay as they were without them."""
    cfg = kn.TrainingSpeech(sentences_per_speaker=1, near_misses_per_speaker=1, in_context_per_speaker=2,
                            in_context_words_after=0)
    with_misses = dataclasses.replace(cfg, near_misses_in_context_per_speaker=30)
    plan = kn.plan(("yes", "no"), "training", 7, with_misses)
    assert plan[:4] == kn.plan(("yes", "no"), "training", 7, cfg)
    misses = set(kn.NEAR_MISSES["yes"] + kn.NEAR_MISSES["no"])
    assert len(plan) == 34 and {u.kind for u in plan[4:]} == {"m"}
    for u in plan[4:]:
        assert u.label == kn.UNKNOWN_DIR and u.texts[u.key] in misses and u.key == len(u.texts) - 1 >= 1
        assert not any(negatives.holds_keyword(t) for t in u.texts)
    assert len({u.texts[u.key] for u in plan[4:]}) > 5
    assert kn.windows(plan[4], [torch.full((8000,), 0.1)] * len(plan[4].texts), cfg, np.random.default_rng(0))[0].shape == (16000,)
    assert kw._settings(dataclasses.replace(TINY, training_speech=with_misses), 5)["config"]["training_speech"][
        "near_misses_in_context_per_speaker"] == 30


def test_a_later_field_at_its_old_value_leaves_cached_sets_valid():
    """Settings name ``in_context_words_after`` only when it differs from what sets before it were made with."""
    base = dataclasses.replace(TINY, training_speech=NEG)
    settings = kw._settings(base, 5)["config"]["training_speech"]
    assert "in_context_words_after" not in settings and settings["in_context_per_speaker"] == 3
    assert "real_music" not in settings
    final = dataclasses.replace(base, training_speech=dataclasses.replace(NEG, in_context_words_after=0))
    assert kw._settings(final, 5)["config"]["training_speech"]["in_context_words_after"] == 0
    music = dataclasses.replace(base, training_speech=dataclasses.replace(NEG, real_music=5))
    assert kw._settings(music, 5)["config"]["training_speech"]["real_music"] == 5
    only_music = dataclasses.replace(TINY, training_speech=kn.TrainingSpeech(real_music=2))
    assert only_music.training_speech.any and kw._settings(only_music, 5)["config"]["training_speech"]["real_music"] == 2
    assert "real_speech" not in settings
    only_speech = dataclasses.replace(TINY, training_speech=kn.TrainingSpeech(real_speech=40))
    assert only_speech.training_speech.any and not only_speech.training_speech.speech  # no generated speech needed
    assert kw._settings(only_speech, 5)["config"]["training_speech"]["real_speech"] == 40


def test_music_is_written_in_files_of_at_most_a_minute(tmp_path):
    paths = kn.write_music(tmp_path, 75.0, seed=1, sample_rate=16000)
    assert [p.name for p in paths] == [f"{kn.MUSIC_PREFIX}00.wav", f"{kn.MUSIC_PREFIX}01.wav"]
    frames = [sf.info(p).frames for p in paths]
    assert frames == [60 * 16000, 15 * 16000]
    x, _ = sf.read(paths[0])
    assert 10 ** (-12.5 / 20) < np.abs(x).max() < 10 ** (-2.5 / 20)  # levelled, not silent, not clipped
    assert np.abs(x[16000:32000]).max() > 0.01


def test_recorded_music_is_joined_and_cut_in_equal_parts(tmp_path):
    """Every sample of every track, in order, resampled to the set's rate and not levelled (two fake tracks)."""
    a = (0.3 * np.sin(np.arange(22050 * 3) * 0.05)).astype(np.float32)  # 3 s at 22.05 kHz
    b = (0.1 * np.sin(np.arange(16000 * 2) * 0.2)).astype(np.float32)  # 2 s at 16 kHz
    sf.write(tmp_path / "a.ogg", a, 22050)
    sf.write(tmp_path / "b.wav", b, 16000)
    paths = kn.write_real_music(tmp_path / "bg", 2, 16000, sources=(str(tmp_path / "a.ogg"), str(tmp_path / "b.wav")))
    assert [p.name for p in paths] == [f"{kn.REAL_MUSIC_PREFIX}00.wav", f"{kn.REAL_MUSIC_PREFIX}01.wav"]
    parts = [sf.read(p)[0] for p in paths]
    assert [len(x) for x in parts] == [40000, 40000]  # 5 s at 16 kHz, halved
    assert 0.25 < np.abs(parts[0]).max() < 0.35  # the first track's level, as recorded
    np.testing.assert_allclose(parts[1][-32000:], b, atol=1e-4)  # the second track whole at the end (PCM-16)


def test_recorded_music_not_installed_is_an_error_naming_the_packages(tmp_path):
    with pytest.raises(DataError, match="real_music: 1 of 1 recorded tracks are not installed.*xmoto-data"):
        kn.write_real_music(tmp_path, 3, 16000, sources=(str(tmp_path / "absent.ogg"),))
    assert not list(tmp_path.iterdir())


def test_training_music_is_installed_by_system_deps():
    """The packages named are the ones `make system-deps` installs, and each track lies under one of them."""
    deps = (Path(__file__).resolve().parents[2] / "scripts" / "system_deps.sh").read_text()
    assert all(f" {p}" in deps for p in kn.TRAINING_MUSIC_PACKAGES)
    assert {t.split("/")[4] for t in kn.TRAINING_MUSIC} == {"xmoto", "frozen-bubble"} and len(kn.TRAINING_MUSIC) == 10


def test_speech_windows_hold_speech():
    rng = np.random.default_rng(0)
    speech = torch.zeros(48000)
    speech[20000:30000] = torch.sin(torch.arange(10000) * 0.1)
    wins = kn.speech_windows(speech, 16000, 3, rng)
    assert len(wins) == 3 and all(w.shape == (16000,) and w[4000:12000].abs().max() > 0.5 for w in wins)
    assert kn.speech_windows(speech[:1000], 16000, 3, rng)[0].shape == (1000,)


def test_bad_settings():
    with pytest.raises(ValueError, match="crops_per_sentence"):
        kn.TrainingSpeech(crops_per_sentence=0)
    with pytest.raises(ValueError, match="music_seconds"):
        kn.TrainingSpeech(music_seconds=-1)
    assert kw.KeywordSetConfig(training_speech={"sentences_per_speaker": 2}).training_speech == \
        kn.TrainingSpeech(sentences_per_speaker=2)


def test_the_mining_pool_is_whole_sentences_of_training_speakers_and_no_clip(sets, pooled):
    _, neg = sets
    speakers = kw.plan_speakers(dataclasses.replace(TINY, training_speech=POOL), 5)
    split = {s.id: s.split for s in speakers}
    files = sorted((pooled / kn.POOL_DIR).glob("*.wav"))
    espeak = sum(s.split == "training" and s.engine == "espeak-ng" for s in speakers)
    n_train = sum(v == "training" for v in split.values())
    assert len(files) == 2 * n_train + espeak  # two English sentences each, one foreign per espeak-ng speaker
    assert {split[speaker_of(p)] for p in files} == {"training"}
    assert {p.stem.rsplit("_", 1)[1][0] for p in files} == {"p", "q"}
    lengths = [sf.info(p).frames for p in files]
    assert min(lengths) > 16000  # whole sentences, not 1 s windows
    # the pool is drawn from streams of its own: every clip is that of the set without a pool, and no loader
    # reads the pool
    clips = sorted(p.relative_to(neg) for p in neg.glob("*/*.wav") if p.parent.name != "_background_noise_")
    assert clips == sorted(p.relative_to(pooled) for p in pooled.glob("*/*.wav")
                           if p.parent.name not in ("_background_noise_", kn.POOL_DIR))
    for rel in clips[::7]:
        a, _ = sf.read(neg / rel, dtype="int16")
        b, _ = sf.read(pooled / rel, dtype="int16")
        assert a.shape == b.shape and np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 1, rel
    for subset in ("training", "validation", "testing"):
        assert not any(kn.POOL_DIR in str(p) for p in SpeechCommands(pooled, subset, words=TINY.words)._paths)
    # English pool sentences are none of the speaker's cropped ones
    for s in speakers:
        cropped = {t for u in kn.plan(TINY.words, s.split, s.seed, POOL, foreign=False) if u.kind == "s" for t in u.texts}
        pool = {t for u in kn.plan_pool(TINY.words, s.split, s.seed, POOL) if u.kind == "p" for t in u.texts}
        assert not cropped & pool
