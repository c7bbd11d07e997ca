"""SpeechCommands on tiny generated trees in the published layout (no network, no espeak).

Every word folder holds tones of a frequency of its own, so an item's label can be checked
against its content; speakers decide the split (validation_list.txt / testing_list.txt).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssm_signal.data.skips import DataError, SkipLog
from ssm_signal.data.speech_commands import (
    ALL_WORDS,
    BACKGROUND_DIR,
    COMMAND_WORDS,
    CORE_WORDS,
    SILENCE,
    TESTING_LIST,
    UNKNOWN,
    VALIDATION_LIST,
    SpeechCommands,
    read_split_list,
    setup_words,
    speaker_of,
)
from tests.helpers import best_lag, peak_hz

SR = 16000
SPEAKERS = {"training": ["aa000001", "ab000002"], "validation": ["ba000003"], "testing": ["ca000004"]}


def freq_of(word: str) -> float:
    """A distinct tone per word: 200 Hz + 40 Hz steps (multiples of 4 Hz: whole FFT bins on 0.25 s and 1 s)."""
    return 200.0 + 40.0 * (ALL_WORDS.index(word) if word in ALL_WORDS else len(ALL_WORDS))


def write_clip(path: Path, word: str, seconds: float = 0.25, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.5 * np.sin(2 * np.pi * freq_of(word) * t)).astype(np.float32)
    data = x if channels == 1 else np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype="PCM_16")
    return data


def make_tree(root: Path, words, per_speaker: int = 1, noise: bool = True) -> Path:
    """<root>/<word>/<speaker>_nohash_<n>.wav for every speaker of every subset, the split lists, and
    two background noise files (one at 8 kHz)."""
    val, test = [], []
    for w in words:
        for subset, speakers in SPEAKERS.items():
            for spk in speakers:
                for n in range(per_speaker):
                    rel = f"{w}/{spk}_nohash_{n}.wav"
                    write_clip(root / rel, w)
                    (val if subset == "validation" else test if subset == "testing" else []).append(rel)
    (root / VALIDATION_LIST).write_text("\n".join(val) + "\n")
    (root / TESTING_LIST).write_text("\n".join(test) + "\n")
    if noise:
        rng = np.random.default_rng(0)
        bg = root / BACKGROUND_DIR
        bg.mkdir(parents=True, exist_ok=True)
        sf.write(bg / "white_noise.wav", (0.3 * rng.standard_normal(3 * SR)).clip(-1, 1).astype(np.float32), SR)
        sf.write(bg / "hum_8k.wav", (0.2 * np.sin(np.arange(2 * 8000) * 0.3)).astype(np.float32), 8000)
        (bg / "README.md").write_text("background noise\n")
    return root


def count_rel(ds: SpeechCommands) -> list[str]:
    return [p.relative_to(ds.root).as_posix() for p in ds.paths]


@pytest.fixture(scope="module")
def tree12(tmp_path_factory) -> Path:
    """The 10 command words plus three other words (-> _unknown_)."""
    return make_tree(tmp_path_factory.mktemp("sc12"), COMMAND_WORDS + ("cat", "dog", "zero"))


# -- setups and splits -------------------------------------------------------------------------------------------


def test_setup_words():
    assert setup_words("12") == (COMMAND_WORDS, True)
    assert setup_words("default") == (CORE_WORDS, True) and len(CORE_WORDS) == 20
    assert setup_words("35") == (ALL_WORDS, False) and len(ALL_WORDS) == 35 and list(ALL_WORDS) == sorted(ALL_WORDS)
    with pytest.raises(ValueError, match="setup must be one of"):
        setup_words("10")
    assert speaker_of("right/bb05582b_nohash_3.wav") == "bb05582b"


def test_setup_12_labels_items_and_speaker_disjoint_splits(tree12):
    sets = {s: SpeechCommands(tree12, subset=s, setup="12") for s in SPEAKERS}
    for subset, ds in sets.items():
        assert ds.labels == [*COMMAND_WORDS, SILENCE, UNKNOWN] and ds.num_classes == 12
        words = [p for p in count_rel(ds) if not p.startswith(BACKGROUND_DIR)]
        # every word file of this subset's speakers, and nothing else
        n_per = len(SPEAKERS[subset])
        assert len(words) == 13 * n_per
        assert {speaker_of(p) for p in words} == set(SPEAKERS[subset])
        counts = ds.class_counts()
        assert all(counts[w] == n_per for w in COMMAND_WORDS)
        assert counts[UNKNOWN] == 3 * n_per  # cat, dog, zero
        # silence: the mean class size of the word items
        assert counts[SILENCE] == round(13 * n_per / 11)
        assert len(ds) == sum(counts.values()) and len(ds.skipped) == 0
    val, test = read_split_list(tree12 / VALIDATION_LIST), read_split_list(tree12 / TESTING_LIST)
    words = {s: {p for p in count_rel(ds) if not p.startswith(BACKGROUND_DIR)} for s, ds in sets.items()}
    assert words["validation"] == val and words["testing"] == test
    assert not words["training"] & (val | test)


def test_items_are_one_second_float32_with_the_labelled_content(tree12):
    ds = SpeechCommands(tree12, subset="training", setup="12", silence_count=0)
    assert len(ds) == 26
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (SR,) and x.dtype == torch.float32
        word = ds.paths[i].parent.name
        assert ds.labels[y] == (word if word in COMMAND_WORDS else UNKNOWN)
        assert ds.targets[i] == y
        # a 0.25 s clip zero-padded at the end to 1 s
        assert float(x[:4000].abs().max()) > 0.4 and not x[4100:].any()
        assert peak_hz(x[:4000]) == pytest.approx(freq_of(word), abs=4)


def test_setup_35_needs_no_background_and_ignores_other_folders(tmp_path, caplog):
    root = make_tree(tmp_path / "sc35", ALL_WORDS + ("mystery",), noise=False)
    with caplog.at_level(logging.INFO, logger="ssm_signal.data"):
        ds = SpeechCommands(root, subset="testing", setup="35")
    assert ds.labels == list(ALL_WORDS)
    assert len(ds) == 35 and ds.class_counts() == {w: 1 for w in ALL_WORDS}
    # the folder outside the label set is not silently dropped: the log names it
    assert any("mystery" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)


def test_setup_default_and_custom_words(tmp_path):
    root = make_tree(tmp_path / "kw", CORE_WORDS + ("bed", "bird"))
    ds = SpeechCommands(root, subset="validation", setup="default")
    assert ds.labels == [*CORE_WORDS, SILENCE, UNKNOWN]
    assert ds.class_counts()[UNKNOWN] == 2 and ds.class_counts()[SILENCE] == round(22 / 21)
    small = SpeechCommands(root, subset="validation", setup="default", words=["yes", "no"], silence_count=3)
    assert small.labels == ["yes", "no", SILENCE, UNKNOWN]
    assert small.class_counts() == {"yes": 1, "no": 1, SILENCE: 3, UNKNOWN: 20}


# -- _silence_ and _unknown_ ----------------------------------------------------------------------------------------


def test_silence_items_are_gained_noise_crops_deterministic_for_a_seed(tree12):
    a = SpeechCommands(tree12, subset="training", setup="12", silence_count=12, silence_gain=(0.1, 0.5), seed=3)
    b = SpeechCommands(tree12, subset="training", setup="12", silence_count=12, silence_gain=(0.1, 0.5), seed=3)
    c = SpeechCommands(tree12, subset="training", setup="12", silence_count=12, silence_gain=(0.1, 0.5), seed=4)
    sil = [i for i, t in enumerate(a.targets) if a.labels[t] == SILENCE]
    assert len(sil) == 12
    noise = {p.name: torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in (tree12 / BACKGROUND_DIR).glob("*.wav")}
    for i in sil:
        x, y = a[i]
        assert a.labels[y] == SILENCE and x.shape == (SR,)
        assert torch.equal(x, b[i][0])
        src = a.paths[i]
        assert src.parent.name == BACKGROUND_DIR
        if src.name == "white_noise.wav":
            # a 1 s window of the file scaled by a gain in [0.1, 0.5]: find it by cross-correlation
            ref = noise[src.name]
            k = best_lag(ref, x)
            window = ref[k : k + SR]
            gain = float(x @ window / window.pow(2).sum())
            assert 0.1 - 1e-3 <= gain <= 0.5 + 1e-3
            torch.testing.assert_close(x, gain * window, rtol=0, atol=2e-4)
    assert any(not torch.equal(a[i][0], c[i][0]) for i in sil)  # another seed, other crops
    # the 8 kHz noise file (2 s) was resampled: its crops are full 1 s windows too
    assert any(a.paths[i].name == "hum_8k.wav" for i in sil)


def test_unknown_subsampling_is_deterministic(tmp_path):
    root = make_tree(tmp_path / "unk", COMMAND_WORDS + ("cat", "dog", "bed", "bird"), per_speaker=5)
    kw = dict(subset="training", setup="12", silence_count=0)
    full = SpeechCommands(root, **kw)
    assert full.class_counts()[UNKNOWN] == 4 * 2 * 5
    a = SpeechCommands(root, unknown_fraction=0.25, seed=1, **kw)
    b = SpeechCommands(root, unknown_fraction=0.25, seed=1, **kw)
    c = SpeechCommands(root, unknown_fraction=0.25, seed=2, **kw)
    unknown = {s: [p for p, t in zip(count_rel(d), d.targets, strict=True) if d.labels[t] == UNKNOWN]
               for s, d in (("a", a), ("b", b), ("c", c))}
    assert len(unknown["a"]) == 10 and unknown["a"] == unknown["b"] and unknown["a"] != unknown["c"]
    assert set(unknown["a"]) <= {p for p, t in zip(count_rel(full), full.targets, strict=True)
                                 if full.labels[t] == UNKNOWN}
    assert a.class_counts()["yes"] == 10  # keywords are never subsampled
    assert SpeechCommands(root, unknown_fraction=0.0, **kw).class_counts()[UNKNOWN] == 0
    with pytest.raises(ValueError, match="unknown_fraction"):
        SpeechCommands(root, unknown_fraction=1.5, **kw)


def test_no_background_noise_is_an_error_unless_silence_is_off(tmp_path):
    root = make_tree(tmp_path / "nobg", COMMAND_WORDS, noise=False)
    with pytest.raises(DataError, match=f"{BACKGROUND_DIR}.*silence_count=0"):
        SpeechCommands(root, subset="training", setup="12")
    ds = SpeechCommands(root, subset="training", setup="12", silence_count=0)
    assert ds.class_counts()[SILENCE] == 0 and len(ds) == 20


def test_unreadable_background_file_is_counted_and_the_rest_used(tmp_path):
    root = make_tree(tmp_path / "badbg", COMMAND_WORDS)
    (root / BACKGROUND_DIR / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    ds = SpeechCommands(root, subset="training", setup="12", silence_count=20)
    assert ds.skipped.counts() == {"unreadable": 1} and ds.skipped.items[0][0].endswith("broken.wav")
    assert all(p.name != "broken.wav" for p in ds.paths)
    assert ds.class_counts()[SILENCE] == 20
    (root / BACKGROUND_DIR / "white_noise.wav").write_bytes(b"")
    (root / BACKGROUND_DIR / "hum_8k.wav").write_bytes(b"")
    with pytest.raises(DataError, match="no readable background noise"):
        SpeechCommands(root, subset="training", setup="12")


# -- bad input ----------------------------------------------------------------------------------------------------


@pytest.fixture
def messy(tmp_path) -> Path:
    """A 12-word tree with bad files in the training subset, and files at other rates and in stereo."""
    root = make_tree(tmp_path / "messy", COMMAND_WORDS + ("cat",))
    (root / "yes" / "dd000010_nohash_0.wav").write_bytes(b"")  # 0 bytes
    sf.write(root / "no" / "dd000011_nohash_0.wav", np.zeros(0, np.float32), SR)  # a header, 0 frames
    (root / "up" / "dd000012_nohash_0.wav").write_bytes(b"RIFF\xff\x00\x00\x00WAVEfmt garbage" * 3)  # corrupt
    (root / "cat" / "dd000013_nohash_0.wav").write_text("not audio\n")  # an _unknown_ file, corrupt
    x = np.full(800, 0.1, np.float32)
    x[5] = np.nan
    sf.write(root / "down" / "dd000014_nohash_0.wav", x, SR, subtype="FLOAT")  # NaN: only a full check sees it
    write_clip(root / "left" / "ee000020_nohash_0.wav", "left", seconds=0.5, rate=8000)
    write_clip(root / "right" / "ee000021_nohash_0.wav", "right", seconds=0.5, rate=44100)
    write_clip(root / "on" / "ee000022_nohash_0.wav", "on", seconds=0.5, channels=2)
    write_clip(root / "off" / "ee000023_nohash_0.wav", "off", seconds=1.5)  # longer than 1 s
    (root / "go" / "notes.txt").write_text("not a .wav: never listed\n")
    return root


def test_bad_files_are_counted_skips_header_check(messy):
    ds = SpeechCommands(messy, subset="training", setup="12", silence_count=0)
    assert ds.skipped.counts() == {"empty": 2, "unreadable": 2}
    skipped = {Path(s).name for s, _ in ds.skipped.items}
    assert skipped == {f"dd0000{i}_nohash_0.wav" for i in (10, 11, 12, 13)}
    assert not skipped & {p.name for p in ds.paths}
    # 11 words x 2 speakers + 5 new good-header files (the NaN one included) - none lost beyond the skips
    assert len(ds) == 22 + 5
    assert "4 items skipped" in ds.skipped.summary()


def test_full_check_also_skips_nan_audio(messy):
    ds = SpeechCommands(messy, subset="training", setup="12", silence_count=0, check="full")
    assert ds.skipped.counts() == {"empty": 2, "unreadable": 2, "NaN": 1}
    assert len(ds) == 22 + 4
    for i in range(len(ds)):  # every kept item decodes
        assert torch.isfinite(ds[i][0]).all()


def test_no_check_defers_errors_to_reading_with_a_clear_message(messy):
    """Found while reading: a counted skip with the reason, and an item of the same class in its place
    (issue 17: one bad file never stops an epoch)."""
    ds = SpeechCommands(messy, subset="training", setup="12", silence_count=0, check="none")
    assert len(ds.skipped) == 0 and len(ds) == 22 + 9
    i = [p.name for p in ds.paths].index("dd000012_nohash_0.wav")
    x, y = ds[i]
    assert y == ds.targets[i] and x.shape == (SR,)
    (path, reason), = ds.skipped.items
    assert path.endswith("dd000012_nohash_0.wav") and reason.startswith("unreadable: ")


def test_other_rates_are_resampled_stereo_downmixed_long_clips_cropped(messy):
    ds = SpeechCommands(messy, subset="training", setup="12", silence_count=0)
    by_name = {p.name: i for i, p in enumerate(ds.paths)}
    for name, word in (("ee000020_nohash_0.wav", "left"), ("ee000021_nohash_0.wav", "right")):
        x, y = ds[by_name[name]]
        assert ds.labels[y] == word and x.shape == (SR,)
        assert peak_hz(x[:8000]) == pytest.approx(freq_of(word), abs=4)  # the pitch survived resampling
        assert float(x[500:7500].abs().max()) == pytest.approx(0.5, abs=0.02) and not x[8100:].any()
    x, _ = ds[by_name["ee000022_nohash_0.wav"]]
    # channels at 0.5x and 1.0x of the tone: the mean is 0.75x
    assert float(x[:8000].abs().max()) == pytest.approx(0.375, abs=0.01)
    x, _ = ds[by_name["ee000023_nohash_0.wav"]]
    assert x.shape == (SR,) and float(x[-100:].abs().max()) > 0.3  # cropped, not padded


def test_shared_skip_log_counts_across_subsets(messy):
    (messy / "stop" / "ba000003_nohash_0.wav").write_bytes(b"")  # a validation file, now empty
    skips = SkipLog()
    for subset in SPEAKERS:
        SpeechCommands(messy, subset=subset, setup="12", silence_count=0, skips=skips)
    assert skips.counts() == {"empty": 3, "unreadable": 2}


def test_listed_files_that_do_not_exist_are_counted_as_missing(tmp_path):
    root = make_tree(tmp_path / "gone", COMMAND_WORDS + ("cat",))
    (root / "yes" / "ba000003_nohash_0.wav").unlink()  # listed in validation_list.txt
    (root / "cat" / "ba000003_nohash_0.wav").unlink()  # an _unknown_ file, listed too
    with open(root / VALIDATION_LIST, "a") as f:
        f.write("nosuchword/ba000003_nohash_0.wav\n")  # a folder that does not exist at all
    ds = SpeechCommands(root, subset="validation", setup="12", silence_count=0)
    assert ds.skipped.counts() == {"missing": 3}
    assert {s for s, _ in ds.skipped.items} == {str(root / r) for r in (
        "yes/ba000003_nohash_0.wav", "cat/ba000003_nohash_0.wav", "nosuchword/ba000003_nohash_0.wav")}
    assert len(ds) == 9  # 11 listed words present minus the two deleted
    # the training subset does not read the lists' entries, so it has nothing missing
    assert len(SpeechCommands(root, subset="training", setup="12", silence_count=0).skipped) == 0


@pytest.mark.parametrize("missing", [VALIDATION_LIST, TESTING_LIST])
def test_missing_split_list_is_an_error_naming_it(tmp_path, missing):
    root = make_tree(tmp_path / "nolist", COMMAND_WORDS)
    (root / missing).unlink()
    for subset in SPEAKERS:  # every subset needs both lists: training is "in neither"
        with pytest.raises(DataError, match=f"{missing}: split list missing"):
            SpeechCommands(root, subset=subset, setup="12")


def test_missing_word_folders_root_and_bad_arguments(tmp_path, tree12):
    with pytest.raises(DataError, match="missing word folders for setup '35'"):
        SpeechCommands(tree12, subset="training", setup="35")
    with pytest.raises(DataError, match="missing word folders.*: nine"):
        SpeechCommands(tree12, subset="training", setup="default", words=["yes", "nine"])
    with pytest.raises(DataError, match="root folder not found"):
        SpeechCommands(tmp_path / "absent")
    with pytest.raises(ValueError, match="subset must be one of"):
        SpeechCommands(tree12, subset="train")
    with pytest.raises(ValueError, match="check must be one of"):
        SpeechCommands(tree12, setup="12", check="deep")


def test_a_subset_with_nothing_usable_is_an_error(tmp_path):
    root = make_tree(tmp_path / "allbad", ("yes", "no"))
    for p in (root / "yes").glob("ca*.wav"):
        p.write_bytes(b"")
    for p in (root / "no").glob("ca*.wav"):
        p.write_bytes(b"")
    with pytest.raises(DataError, match="no usable items in subset 'testing'.*2 items skipped"):
        SpeechCommands(root, subset="testing", setup="35", words=["yes", "no"])


def test_split_list_normalises_separators_and_blank_lines(tmp_path):
    p = tmp_path / "list.txt"
    p.write_text("yes\\a_nohash_0.wav\n\n  no/b_nohash_1.wav  \n")
    assert read_split_list(p) == {"yes/a_nohash_0.wav", "no/b_nohash_1.wav"}


def test_transform_is_applied_to_items(tree12):
    ds = SpeechCommands(tree12, subset="testing", setup="12", silence_count=0, transform=lambda w: 2 * w)
    plain = SpeechCommands(tree12, subset="testing", setup="12", silence_count=0)
    torch.testing.assert_close(ds[0][0], 2 * plain[0][0])
    assert "subset='testing'" in repr(ds) and f"n={len(ds)}" in repr(ds)
