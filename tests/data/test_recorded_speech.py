"""ssm_signal.data.recorded_speech: which of Tux Paint's spoken stamp descriptions become training clips (a fake
stamps folder: English, a keyword look-alike, a clip without text and an unknown language are left out), the
clips written, and the refusal when the package is absent. espeak-ng transcribes the texts (make system-deps)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from ssm_signal.data import recorded_speech as rs
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import CORE_WORDS
from tests.helpers import assert_training_extras


def _stamp(folder, stamp: str, texts: dict[str, str], audio: dict[str, float]) -> None:
    """A stamp: its text file (English first line, then ``<lang>.utf8=`` lines) and a description per language
    (``audio``: language -> seconds; "" is the English file ``<stamp>_desc.ogg``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stamp}.txt").write_text("\n".join([texts.get("", "A thing."),
                                                    *(f"{k}.utf8={v}" for k, v in texts.items() if k)]) + "\n")
    t = np.arange(44100 * 3) / 44100
    for lang, seconds in audio.items():
        n = int(44100 * seconds)
        tone = (0.5 * np.sin(2 * np.pi * 220 * t[:n])).astype(np.float32)
        sf.write(folder / f"{stamp}_desc{'_' + lang if lang else ''}.ogg", tone, 44100)


@pytest.fixture(scope="module")
def stamps(tmp_path_factory):
    root = tmp_path_factory.mktemp("stamps")
    _stamp(root / "animals" / "fox", "fox", {"": "A fox.", "es": "Un zorro rojo.", "fr": "Un renard."},
           {"": 1.0, "es": 1.4, "fr": 0.7})
    _stamp(root / "signs", "stop", {"": "Stop!", "es": "No girar en U."}, {"": 1.0, "es": 1.2})  # Spanish "no"
    _stamp(root / "food", "bread", {"": "Bread.", "ru": "Хлеб."}, {"ru": 0.9, "el": 1.0})  # no Greek text
    _stamp(root / "food", "cake", {"": "A cake.", "xx": "Kake."}, {"xx": 1.0})  # not a language of the module
    return root


def test_recordings_keep_texted_non_english_clips_without_a_keyword_look_alike(stamps):
    got = rs.recordings(CORE_WORDS, stamps)
    assert [(p.rsplit("/", 1)[1], lang, text) for p, lang, text in got] == [  # sorted by path
        ("fox_desc_es.ogg", "es", "Un zorro rojo."), ("fox_desc_fr.ogg", "fr", "Un renard."),
        ("bread_desc_ru.ogg", "ru", "Хлеб.")]


def test_write_clips_levels_places_and_draws_without_replacement(stamps, tmp_path):
    calls = []

    def place(voice: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        calls.append(voice.shape[0])
        clip = torch.zeros(16000)
        clip[: min(16000, voice.shape[0])] = voice[:16000]
        return clip

    paths = rs.write_clips(tmp_path / "a", 5, CORE_WORDS, 3, 16000, place, stamps=stamps)
    assert [p.name for p in paths] == [f"recorded{k:04d}_nohash_r0.wav" for k in range(3)]  # 3 recordings, not 5
    assert sorted(calls) == [int(0.7 * 16000), int(0.9 * 16000), 16000]  # the 1.4 s one cut to a 1 s window
    for p in paths:
        x, sr = sf.read(p)
        assert sr == 16000 and x.shape == (16000,) and np.abs(x).max() > 0.3
    again = rs.write_clips(tmp_path / "b", 2, CORE_WORDS, 3, 16000, place, stamps=stamps)
    other = rs.write_clips(tmp_path / "c", 2, CORE_WORDS, 3, 16000, place, stamps=stamps)
    assert [sf.read(p)[0].tolist() for p in again] == [sf.read(p)[0].tolist() for p in other]  # the seed decides


def test_absent_package_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=f"install {rs.PACKAGE}"):
        rs.recordings(CORE_WORDS, tmp_path / "absent")


def test_a_keyword_set_with_recorded_speech_has_them_as_training_unknowns(stamps, tmp_path, monkeypatch):
    """``training_speech.real_speech`` writes the recordings into ``_unknown_`` of the training split, counted in the
    set's summary, and the generated clips are those of the set without them (the recordings draw their own
    stream; noise is mixed in from the same folder)."""
    import dataclasses

    from ssm_signal.data import keywords as kw
    from ssm_signal.data import training_speech as kn

    monkeypatch.setattr(rs, "STAMPS", stamps)
    tiny = kw.KeywordSetConfig(n_speakers=10, words=("yes", "left"), other_words=("bed",), other_per_speaker=1,
                               validation_percent=30, testing_percent=30)
    plain = kw.generate_keyword_set(tmp_path / "plain", seed=2, config=tiny, workers=1)
    root = kw.generate_keyword_set(tmp_path / "rec", seed=2, workers=1,
                                   config=dataclasses.replace(tiny, training_speech=kn.TrainingSpeech(real_speech=2)))
    recorded = assert_training_extras(plain, root, tiny.words, "recorded", 2)
    assert [p.name for p in recorded] == ["recorded0000_nohash_r0.wav", "recorded0001_nohash_r0.wav"]
    assert {p.parent.name for p in recorded} == {"_unknown_"}
