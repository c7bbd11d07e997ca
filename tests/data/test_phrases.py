"""Custom keywords as text (issue 16): which phrases are accepted, their labels and folders, the words
spoken as _unknown_ for them, and one-line errors for the rest."""

from __future__ import annotations

import pytest

from ssm_signal.data import phrases as ph
from ssm_signal.data.speech_commands import ALL_WORDS


def test_phrases_are_normalised_and_keep_their_order():
    assert ph.parse_phrases(["Hey  Nova", " lights ON ", "what's up"]) == ("hey nova", "lights on", "what's up")
    assert ph.parse_phrases("hey nova, lights on") == ("hey nova", "lights on")  # the `make train WORDS=` form


@pytest.mark.parametrize("texts, message", [
    ([], "no keywords given"),
    ("", "no keywords given"),
    (["hey nova", "  "], "empty keyword"),
    ("hey nova,,lights on", "empty keyword"),
    (["hey nova", "Hey  NOVA"], "'hey nova' and 'hey nova' are the same keyword (duplicate)"),
    (["whats up", "what's up"], "same keyword (duplicate)"),  # one folder, so one keyword
    (["7up"], "'7up' has characters '7'"),
    (["hey-nova"], "characters '-'"),
    (["café"], "characters 'é'"),
    (["'hey"], "apostrophe outside a word"),
    (["please turn all lights on"], "too long: at most 4 words"),
    (["a" * 31], "too long"),
])
def test_unusable_phrases_fail_with_one_line_naming_them(texts, message):
    with pytest.raises(ph.PhraseError, match="^[^\n]*$") as e:
        ph.parse_phrases(texts)
    assert message in str(e.value)


def test_folders_are_safe_and_single_words_keep_theirs():
    assert ph.folder_of("hey nova") == "hey_nova" and ph.folder_of("what's up") == "whats_up"
    assert all(ph.folder_of(w) == w for w in ALL_WORDS)  # Speech Commands folders are unchanged
    labels = ["hey nova", "yes", "_silence_", "_unknown_"]
    assert ph.label_of_folder("hey_nova", labels) == "hey nova"
    assert ph.label_of_folder("yes", labels) == "yes" and ph.label_of_folder("_silence_", labels) == "_silence_"
    assert ph.label_of_folder("lights_on", labels) is None


def test_other_words_leave_out_the_keywords_and_their_words():
    others = ph.other_words(["lights on", "left"])
    assert {"lights", "light", "on", "left"}.isdisjoint(others)  # words of a phrase, with or without plural s
    assert {"one", "off", "night", "marvin", "kitchen"} <= set(others)  # near misses stay negatives
    assert set(ALL_WORDS) - {"on", "left"} <= set(others)  # the Speech Commands words minus the keywords
    assert len(others) >= 100 and len(set(others)) == len(others)


def test_set_names_are_readable_and_distinct_when_shortened():
    assert ph.set_name(["hey nova", "lights on"]) == "hey_nova-lights_on"
    long_a = ph.set_name(["turn on the light", "open the door please", "good morning", "stop now"])
    long_b = ph.set_name(["turn on the light", "open the door please", "good morning", "stop here"])
    assert len(long_a) <= ph.MAX_NAME_CHARS and long_a.startswith("turn_on_the_light-") and long_a != long_b
