"""Letters and syllables said alone (ssm_signal.data.letters): each alphabet gives its letters and syllables,
look-alikes of a keyword are dropped and the rest kept, training speakers say them only where their voice can,
and the evaluation's letter streams are written, cached and reported as their own group."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.evaluate.job import FOREIGN_ROOT, _group_name
from ssm_signal.data import foreign_speech as fs
from ssm_signal.data import letters
from ssm_signal.data.audio_io import read_audio
from ssm_signal.data.speech_commands import CORE_WORDS
from ssm_signal.data.training_speech import TrainingSpeech, plan, windows

KEYWORDS = tuple(CORE_WORDS)


@pytest.mark.parametrize("language,unit", [("es", "no"), ("it", "tu"), ("ru", "но"), ("en-us", "go")])
def test_a_unit_that_sounds_like_a_keyword_is_dropped(language, unit):
    assert unit not in letters.units(language, KEYWORDS)
    assert unit in letters.lookalikes(language, KEYWORDS)


@pytest.mark.parametrize("language,unit", [("es", "ba"), ("en-us", "a"), ("da", "ø"), ("ru", "б"), ("ml", "ക")])
def test_letters_and_other_syllables_are_kept(language, unit):
    # "a" named in English is /eɪ/: a near miss of "eight", not "eight", so a hard negative worth keeping
    assert unit in letters.units(language, KEYWORDS)


def test_syllables_pair_consonants_with_vowels_where_vowels_are_letters():
    got = letters.units("de", KEYWORDS)
    assert {"b", "ä", "ba", "bu", "mi"} <= set(got)
    assert all(len(u) == 1 for u in letters.units("hi", KEYWORDS))  # an abugida's letter is a syllable already
    assert all(set(u) <= set(letters.ALPHABETS["ru"]) for u in letters.units("ru", KEYWORDS))


def test_no_unit_of_any_language_sounds_like_a_keyword():
    banned = fs.keyword_sounds(KEYWORDS)
    for language in ("en-gb", "nl", "pl", "el", "he"):
        kept = letters.units(language, KEYWORDS)
        assert kept and not any(fs.fold(t) in banned for t in fs.transcribe(list(kept), language))


def test_the_held_out_language_is_never_a_training_language():
    assert fs.HELD_OUT_LANGUAGE in letters.ALPHABETS
    assert fs.HELD_OUT_LANGUAGE not in letters.TRAINING_LANGUAGES
    assert fs.HELD_OUT_LANGUAGE not in TrainingSpeech().letter_languages


def test_training_speakers_say_letters_only_where_their_voice_can():
    cfg = TrainingSpeech(letters_per_speaker=5, letter_languages=("da", "ru"))
    said = plan(KEYWORDS, "training", 3, cfg)
    assert len(said) == 5 and {u.kind for u in said} == {"l"} and {u.label for u in said} == {"_unknown_"}
    assert all(u.language in ("da", "ru") and u.texts[0] in letters.units(u.language, KEYWORDS) for u in said)
    assert plan(KEYWORDS, "training", 3, cfg, foreign=False) == []  # flite and festival speak English alone
    assert plan(KEYWORDS, "validation", 3, cfg) == []
    assert windows(said[0], [torch.ones(3000)], cfg, np.random.default_rng(0))[0].shape == (3000,)


def test_bad_letter_settings():
    with pytest.raises(ValueError, match="letter_languages"):
        TrainingSpeech(letters_per_speaker=1, letter_languages=("xx",))
    with pytest.raises(ValueError, match="letter_languages"):
        TrainingSpeech(letters_per_speaker=1, letter_languages=())
    with pytest.raises(ValueError, match="letters_per_speaker"):
        TrainingSpeech(letters_per_speaker=-1)
    with pytest.raises(Exception, match="no alphabet"):
        letters.units("xx", KEYWORDS)


def test_letter_streams_are_written_cached_and_their_own_group(tmp_path):
    folder = tmp_path / FOREIGN_ROOT / "letters-validation-abc"
    out = fs.write_streams(folder, KEYWORDS, "validation", seconds=6.0, languages=("ga", "ru"), units="letters")
    for language in ("ga", "ru"):
        files = sorted((out / language).glob("*.wav"))
        wave = np.concatenate([read_audio(f, 16000).numpy() for f in files])
        assert wave.shape[0] >= 6 * 16000 and np.abs(wave).max() > 0.05
        # said alone: at least a third of the stream is the silence between units
        assert (np.abs(wave) < 1e-4).mean() > 0.33
    stamp = next((out / "ga").glob("*.wav")).stat().st_mtime_ns
    fs.write_streams(folder, KEYWORDS, "validation", seconds=6.0, languages=("ga", "ru"), units="letters")
    assert next((out / "ga").glob("*.wav")).stat().st_mtime_ns == stamp
    with pytest.raises(Exception, match="other settings"):
        fs.write_streams(folder, KEYWORDS, "validation", seconds=6.0, languages=("ga", "ru"))
    with pytest.raises(ValueError, match="units"):
        fs.write_streams(tmp_path / "x", KEYWORDS, "validation", units="words")
    assert _group_name(f"{FOREIGN_ROOT}/letters-testing-abc") == "generated/letters"
    assert _group_name(f"{FOREIGN_ROOT}/testing-abc") == "generated/foreign"
