"""Foreign speech (ssm_signal.data.foreign_speech): the look-alike rule catches foreign words that sound like a
keyword and lets the others through, sentences are cleaned and split three ways with no overlap, training
speakers read them only where their voice can, and the evaluation's streams are written and cached."""

from __future__ import annotations

import numpy as np
import pytest

from ssm_signal.data import foreign_speech as fs
from ssm_signal.data.audio_io import read_audio
from ssm_signal.data.speech_commands import CORE_WORDS
from ssm_signal.data.training_speech import TrainingSpeech, plan

KEYWORDS = tuple(CORE_WORDS)


@pytest.mark.parametrize("language,word", [("de", "nein"), ("es", "no"), ("es", "tu"), ("eo", "jes"),
                                           ("ru", "он"), ("de", "ab")])
def test_a_foreign_word_that_sounds_like_a_keyword_is_caught(language, word):
    assert fs.fold(fs.transcribe([word], language)[0]) in fs.keyword_sounds(KEYWORDS)


@pytest.mark.parametrize("language,word", [("de", "null"), ("de", "sechs"), ("es", "cinco"), ("it", "sette"),
                                           ("ru", "да"), ("cs", "dobrý")])
def test_other_foreign_words_pass(language, word):
    assert fs.fold(fs.transcribe([word], language)[0]) not in fs.keyword_sounds(KEYWORDS)


def test_fold_drops_stress_length_and_close_vowel_contrasts():
    assert fs.fold("nˈaɪn") == fs.fold("naɪn") == "nain"
    assert fs.fold("n_ˈoʊ") == fs.fold("nəʊ") == fs.fold("nˈo") == "no"
    assert fs.fold("tˈuː") == "tu"


def test_transcribe_gives_one_token_a_word():
    words = ["Haus", "z.B.", "Straße", "Baum"]  # an abbreviation reads as several words: redone word by word
    out = fs.transcribe(words, "de")
    assert len(out) == len(words) and all(out)


def test_clean_keeps_plain_sentences_in_any_script():
    text = ("Это простое предложение без цифр.\n-- Автор\n%\nDas hat 3 Zahlen in sich drin.\n%\n"
            "Ein Satz mit einer ABKÜRZUNG darin steht hier.\n%\nKurz.\n%\nUn poco de agua fría para todos.\n")
    assert fs.clean(text) == ["Это простое предложение без цифр.", "Un poco de agua fría para todos."]


def test_sentence_splits_are_disjoint_and_near_their_shares():
    parts = {p: set(fs.sentences("ga", KEYWORDS, p)) for p in ("training", "validation", "testing")}
    assert not (parts["training"] & parts["validation"]) and not (parts["training"] & parts["testing"])
    assert not (parts["validation"] & parts["testing"])
    shares = [fs.split_of_sentence(f"sentence number {i}") for i in range(4000)]
    assert 0.12 < shares.count("validation") / 4000 < 0.18 and 0.12 < shares.count("testing") / 4000 < 0.18


def test_kept_sentences_hold_no_lookalike():
    banned = fs.keyword_sounds(KEYWORDS)
    kept = fs.sentences("ga", KEYWORDS)
    words = sorted({w.lower() for s in kept for w in fs._LETTERS.findall(s)})
    assert len(kept) > 50
    assert not [w for w, t in zip(words, fs.transcribe(words, "ga"), strict=True) if fs.fold(t) in banned]
    assert "go" in fs.lookalikes("ga", KEYWORDS)  # Irish "go" ("to"): the rule did have something to drop
    assert "go" not in words


def test_training_speakers_read_foreign_sentences_only_where_their_voice_can():
    cfg = TrainingSpeech(foreign_per_speaker=3, languages=("ga",))
    ups = plan(KEYWORDS, "training", 7, cfg)
    foreign = [u for u in ups if u.kind == "f"]
    assert len(foreign) == 3 and {u.language for u in foreign} == {"ga"}
    assert all(u.label == "_unknown_" and u.texts[0] in fs.sentences(u.language, KEYWORDS) for u in foreign)
    assert not [u for u in plan(KEYWORDS, "training", 7, cfg, foreign=False) if u.kind == "f"]
    assert plan(KEYWORDS, "validation", 7, cfg) == []
    assert plan(KEYWORDS, "training", 7, cfg) == ups  # deterministic for a seed


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="languages must be some of"):
        TrainingSpeech(foreign_per_speaker=1, languages=("xx",))


def test_write_streams_writes_readable_speech_and_caches(tmp_path):
    out = fs.write_streams(tmp_path / "v", KEYWORDS, "validation", seconds=4.0, languages=("ga",))
    files = sorted((out / "ga").glob("*.wav"))
    assert files
    wave = np.concatenate([read_audio(f, 16000).numpy() for f in files])
    assert wave.shape[0] >= 4 * 16000 and np.abs(wave).max() > 0.05
    stamp = files[0].stat().st_mtime_ns
    fs.write_streams(tmp_path / "v", KEYWORDS, "validation", seconds=4.0, languages=("ga",))
    assert files[0].stat().st_mtime_ns == stamp
    with pytest.raises(Exception, match="other settings"):
        fs.write_streams(tmp_path / "v", KEYWORDS, "validation", seconds=5.0, languages=("ga",))
