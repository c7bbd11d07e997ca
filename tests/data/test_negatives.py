"""The held-out negative corpus: no keyword in any sentence, no training voice, no training noise file,
its layout, caching, the refusal to overwrite, determinism. Generates a tiny corpus (about a minute
of audio) with espeak-ng, flite and the Sonic Pi samples (installed by `make test`); a missing tool
fails these tests, it does not skip them."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import shutil
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from ssm_signal.data import keywords as kw
from ssm_signal.data import negatives as ng
from ssm_signal.data.negatives import materials
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import AUXILIARY_WORDS, CORE_WORDS

TINY = ng.NegativeCorpusConfig(
    speech_hours=0.008, music_minutes=0.2, noise_minutes=0.2, speech_sources=2, flite_sources=1,
    speakers_per_source=2, music_sources=4, noise_sources=4, speech_part_s=7, music_file_s=2, noise_file_s=2,
    speech_noise_fraction=0.5)
SEED = 3
BRIEF_HOMOPHONES = ("to", "too", "for", "fore", "know", "write", "rite", "won", "ate", "oh")
TRAINING_VARIANTS = {v for v in kw.VARIANTS if kw.split_of(v, kw.KeywordSetConfig.validation_percent,
                                                                kw.KeywordSetConfig.testing_percent) == "training"}


def digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ng.SUMMARY:  # the summary carries the generation time
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def spied(tmp_path_factory):
    """The tiny corpus, generated in this process while every synthesiser call and every audio file
    read is recorded, so the tests check what was actually done, not what the generator reports."""
    calls, reads = [], []
    real_run, real_read = subprocess.run, materials.read_audio

    def run(cmd, *args, **kwargs):
        calls.append((list(cmd), kwargs.get("input")))
        return real_run(cmd, *args, **kwargs)

    def read_audio(path, *args, **kwargs):
        reads.append(str(path))
        return real_read(path, *args, **kwargs)

    materials._SAMPLES.clear()  # a cached sample would not be read again
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "run", run)
        mp.setattr(materials, "read_audio", read_audio)
        root = ng.generate_negative_corpus(tmp_path_factory.mktemp("neg") / "corpus", seed=SEED, config=TINY,
                                           workers=1)
    spoken = []
    for cmd, stdin in calls:
        if cmd[0].endswith("espeak-ng"):
            spoken.append(("espeak-ng", cmd[cmd.index("-v") + 1], stdin.decode()))
        elif cmd[0].endswith("flite"):
            spoken.append(("flite", cmd[cmd.index("-voice") + 1], cmd[cmd.index("-t") + 1]))
    return root, spoken, reads


# --- the keyword check -------------------------------------------------------------------------------


@pytest.mark.parametrize("sentence", [
    "Turn left at the bridge.", "YES, said the captain.", "I went to bed early.", "It was far too late.",
    "This is for you.", "Fore! shouted the golfer.", "You know it well.", "Write it down.", "A solemn rite.",
    "We won the game.", "They ate the cake.", "Oh dear, oh dear.", "Room 101 is empty.", "The 3rd attempt.",
    "No-one came.", "Stop!", "Go's rules.", "A happy dog.", "Sheila said so.", "Zero hour.", "Nine lives.",
    "Owe nothing, lend nothing.", "O brave new world.", "The stopped clock.", "Forty thieves.", "Seventeen men.",
    "Little ones.", "The fourth wall.", "Where is it going?",
])  # fmt: skip
def test_holds_keyword_rejects(sentence):
    assert ng.holds_keyword(sentence, ng.KEYWORD_LIKE)


@pytest.mark.parametrize("sentence", [
    "The clock was often wrong.", "Nobody tones their voice.", "Someone knocked, then nothing.",
    "Upon the office roof, a bright light.", "Tonight the weather is upside out.", "The downside of upholstery.",
    "Third and fifth place.", "Writer and editor agree.", "Gone, owed, ovens, fortune.", "A mystery.",
])  # fmt: skip
def test_holds_keyword_accepts(sentence):
    assert not ng.holds_keyword(sentence, ng.KEYWORD_LIKE)


def test_holds_keyword_covers_every_keyword_homophone_and_digit():
    for word in CORE_WORDS + AUXILIARY_WORDS + BRIEF_HOMOPHONES + ng.KEYWORD_FORMS:
        assert word in ng.KEYWORD_LIKE
        assert ng.holds_keyword(f"They said {word} again.", ng.KEYWORD_LIKE), word
        assert ng.holds_keyword(f"{word.upper()}, they said.", ng.KEYWORD_LIKE), word
        assert ng.holds_keyword(f"a {word.capitalize()}'s tale", ng.KEYWORD_LIKE), word
        assert not ng.holds_keyword(f"They said x{word}x again.", ng.KEYWORD_LIKE), word
    # its own word list, and digits whatever the list
    assert ng.holds_keyword("the marvin show", ["marvin"]) and not ng.holds_keyword("the marvin show", ["cat"])
    assert ng.holds_keyword("route 66", []) and not ng.holds_keyword("route sixty", [])


def test_clean_sentences_keeps_only_plain_keyword_free_sentences():
    text = ("A clash of doctrine is not a disaster. It is an opportunity.\n\t\t-- Somebody Famous\n%\n"
            "Never put off until tomorrow what you can do today.\n%\n"
            "The LORD is my shepherd. Henry VIII had six wives. Chapter twenty has a 7 in it.\n%\n"
            "Wisdom is better than gold & silver. Send mail to root@example. Ask O Henry.\n%\n"
            "`Curiouser and curiouser!' cried Alice, quite forgetting herself.\n")
    got = ng.clean_sentences(text)
    # attributions are not spoken; "off", "six", "to", digits, "&", "@", LORD, VIII, a lone O and
    # fragments shorter than four words or not starting a sentence are all dropped
    assert got == ["A clash of doctrine is not a disaster.", "It is an opportunity."]


def test_the_sentence_pool_is_large_and_clean():
    pool = ng.load_sentences()
    assert len(pool) > 3000, "enough text for hours of speech without repeating a sentence"
    assert pool == sorted(set(pool))
    assert not [s for s in pool if ng.holds_keyword(s, ng.KEYWORD_LIKE)]


# --- the generated corpus ----------------------------------------------------------------------------


def test_no_spoken_sentence_holds_a_keyword(spied):
    root, spoken, _ = spied
    texts = [t for _, _, t in spoken]
    assert texts, "the synthesisers were called"
    listed = (root / ng.SENTENCES).read_text().splitlines()
    assert set(texts) == set(listed), "SENTENCES.txt lists exactly what was spoken"
    assert [t for t in texts if ng.holds_keyword(t, ng.KEYWORD_LIKE)] == []
    manifest = (root / ng.MANIFEST).read_text().splitlines()[1:]
    speech_rows = [r.split("\t") for r in manifest if r.startswith("speech/")]
    assert speech_rows and all(row[5] for row in speech_rows)
    assert not [row for row in speech_rows if ng.holds_keyword(row[5], ng.KEYWORD_LIKE)]
    assert {t for row in speech_rows for t in row[5].split(" | ")} == set(listed)


def test_no_sentence_is_spoken_in_two_sources(spied):
    root, _, _ = spied
    by_source: dict[str, set[str]] = {}
    for row in (root / ng.MANIFEST).read_text().splitlines()[1:]:
        path, *_, text = row.split("\t")
        if path.startswith("speech/"):
            by_source.setdefault(path.rsplit("/", 1)[0], set()).update(text.split(" | "))
    assert len(by_source) == 2 and all(by_source.values())
    a, b = by_source.values()
    assert not a & b, "a calibration/test split by source would share sentences"


def test_voices_are_held_out_of_training(spied):
    root, spoken, _ = spied
    espeak = {v for e, v, _ in spoken if e == "espeak-ng"}
    flite = {v for e, v, _ in spoken if e == "flite"}
    assert espeak and flite, f"both engines speak: {espeak}, {flite}"
    variants = {v.split("+", 1)[1] for v in espeak}
    assert not variants & TRAINING_VARIANTS, f"training voices used: {variants & TRAINING_VARIANTS}"
    assert {v.split("+", 1)[0] for v in espeak} <= set(kw.ACCENTS)
    assert flite <= set(ng.FLITE_VOICES)
    summary = json.loads((root / ng.SUMMARY).read_text())
    assert set(summary["voices"]["espeak-ng"]) == espeak and set(summary["voices"]["flite"]) == flite


def test_the_default_plan_uses_every_held_out_variant_and_no_training_one():
    held_out = set(ng.held_out_variants())
    assert held_out and not held_out & TRAINING_VARIANTS
    assert held_out == set(kw.VARIANTS) - TRAINING_VARIANTS
    for seed in range(3):
        sources = ng.plan_speakers(ng.NegativeCorpusConfig(), seed)
        espeak = {s.voice.split("+", 1)[1] for _, sp in sources for s in sp if s.engine == "espeak-ng"}
        assert espeak == held_out
        assert {s.engine for _, sp in sources for s in sp} == {"espeak-ng", "flite"}
        for _, speakers in sources:
            assert len({s.voice for s in speakers}) > 1, "a source has several voices"


def test_no_training_noise_file_is_used(spied):
    root, _, reads = spied
    assert reads, "recorded samples were read"
    assert all(r.startswith(ng.SONIC_PI_DIR) for r in reads)
    assert not set(reads) & set(kw.NOISE_SOURCES)
    summary = json.loads((root / ng.SUMMARY).read_text())
    assert set(summary["materials"]) == set(reads)
    all_names = (ng.DRUM_LOOPS + ng.LAYER_LOOPS + ng.BASS_C + ng.GUITAR_E + ng.KICKS + ng.SNARES + ng.HATS
                 + ng.CRASHES + ng.TABLA + ng.EVENTS + ng.MACHINES + ng.SPEECH_BACKGROUND)
    assert not {f"{ng.SONIC_PI_DIR}/{n}.flac" for n in all_names} & set(kw.NOISE_SOURCES)
    with pytest.raises(DataError, match="training noise"):
        materials.Materials(16000)("vinyl_hiss")


def test_layout_and_sizes(spied):
    root, _, _ = spied
    sources = ng.corpus_sources(root)
    expected = {"speech/espeak-00", "speech/flite-00", *(f"music/{s}-00" for s in ng.MUSIC_STYLES),
                *(f"noise/{s}-00" for s in ng.NOISE_STYLES)}
    assert set(sources) == expected
    summary = json.loads((root / ng.SUMMARY).read_text())
    for name, files in sources.items():
        assert [f.name for f in files] == [f"{i:05d}.wav" for i in range(len(files))]
        seconds = 0.0
        for f in files:
            info = sf.info(f)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            x, _ = sf.read(f)
            assert 0.003 < np.abs(x).max() <= 1.0, f"{f}: levelled sound, not silence"
            seconds += info.frames / 16000
        assert summary["sources"][name] == pytest.approx(seconds, abs=1e-3)
    assert summary["seconds"]["speech"] >= TINY.speech_hours * 3600
    assert summary["seconds"]["music"] == pytest.approx(TINY.music_minutes * 60, abs=0.01)
    assert summary["seconds"]["noise"] == pytest.approx(TINY.noise_minutes * 60, abs=0.01)
    assert summary["sentences"] == len((root / ng.SENTENCES).read_text().splitlines())
    assert json.loads((root / ng.MARKER).read_text())["seed"] == SEED
    assert not root.with_name(root.name + ".partial").exists()


def test_deterministic_for_a_seed_and_cached(spied, tmp_path):
    root, _, _ = spied
    again = ng.generate_negative_corpus(tmp_path / "again", seed=SEED, config=TINY, workers=2)
    assert digest(again) == digest(root), "worker processes and scheduling change nothing"
    mtimes = {p: p.stat().st_mtime_ns for p in again.rglob("*")}
    t0 = time.perf_counter()
    assert ng.generate_negative_corpus(again, seed=SEED, config=TINY) == again
    assert time.perf_counter() - t0 < 1.0, "cached: returns at once"
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*")} == mtimes
    other = ng.generate_negative_corpus(tmp_path / "other", seed=SEED + 1, config=TINY, workers=1)
    assert digest(other) != digest(root)


def test_never_overwrites_something_else(spied, tmp_path):
    root, _, _ = spied
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.wav").write_bytes(b"not yours")
    with pytest.raises(DataError, match="not overwriting"):
        ng.generate_negative_corpus(foreign, seed=SEED, config=TINY)
    assert (foreign / "keep.wav").read_bytes() == b"not yours" and len(list(foreign.iterdir())) == 1
    with pytest.raises(DataError, match="other settings"):
        ng.generate_negative_corpus(root, seed=SEED + 1, config=TINY)
    with pytest.raises(DataError, match="other settings"):
        ng.generate_negative_corpus(root, seed=SEED, config=ng.NegativeCorpusConfig())
    with pytest.raises(DataError, match="not a generated negative corpus"):
        ng.corpus_sources(foreign)


def test_concurrent_calls_take_turns(spied, tmp_path):
    """Two callers at once (an evaluation starting while another is generating): one generates, the
    other waits and finds it cached; neither wipes the other's half-written folder."""
    root, _, _ = spied
    target = tmp_path / "shared"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: ng.generate_negative_corpus(target, seed=SEED, config=TINY, workers=1), range(2)))
    assert got == [target, target]
    assert digest(target) == digest(root)
    assert not target.with_name("shared.partial").exists()


@pytest.mark.parametrize("tool", ["espeak-ng", "flite"])
def test_a_missing_synthesiser_is_a_clear_error(tool, tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == tool else real_which(name))
    with pytest.raises(DataError, match=f"{tool} not found"):
        ng.generate_negative_corpus(tmp_path / "c", seed=SEED, config=TINY)
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.partial").exists()


def test_config_is_validated():
    with pytest.raises(ValueError, match="flite_sources"):
        ng.NegativeCorpusConfig(speech_sources=2, flite_sources=3)
    with pytest.raises(ValueError, match="speech_hours"):
        ng.NegativeCorpusConfig(speech_hours=-1)
