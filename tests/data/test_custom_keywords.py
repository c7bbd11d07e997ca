"""A keyword set from text (issue 16): phrase folders and labels, the clip-length rule, a slow phrase said
faster rather than cut, and `ssm-signal keywords` with its one-line errors. Uses espeak-ng."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.cli import main
from ssm_signal.data import custom_keywords as ck
from ssm_signal.data import keywords as kw
from ssm_signal.data.phrases import PhraseError
from ssm_signal.data.speech_commands import SpeechCommands

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make system-deps)")

TINY = kw.KeywordSetConfig(n_speakers=8, validation_percent=30, testing_percent=30)


@pytest.fixture(scope="module")
def phrase_set(tmp_path_factory):
    return ck.generate_custom_set(["Hey Nova", "lights on"], tmp_path_factory.mktemp("ck") / "set", seed=3,
                                  base=TINY, workers=1)


def test_phrases_get_folders_and_everyday_words_as_unknown(phrase_set):
    marker = json.loads((phrase_set / kw.MARKER).read_text())
    assert marker["config"]["words"] == ["hey nova", "lights on"]  # the set records the phrases themselves
    others = marker["config"]["other_words"]
    assert "lights" not in others and "on" not in others and "nova" not in others and "one" in others
    assert marker["config"]["other_per_speaker"] == 4  # at least 4, twice the keywords
    folders = {p.name for p in phrase_set.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert {"hey_nova", "lights_on"} <= folders and not any(" " in f for f in folders)
    assert len(list((phrase_set / "hey_nova").glob("*.wav"))) == 8  # every speaker says each phrase
    listed = (phrase_set / "testing_list.txt").read_text().split() + (phrase_set / "validation_list.txt").read_text().split()
    assert any(r.startswith("hey_nova/") for r in listed) and all(" " not in r for r in listed)
    ds = SpeechCommands(phrase_set, "training", words=["hey_nova", "lights_on"])
    assert ds.class_counts()["hey_nova"] > 0 and ds.class_counts()["_unknown_"] > ds.class_counts()["hey_nova"]


def test_phrases_too_long_for_the_clip_are_refused_before_anything_is_written(tmp_path):
    assert ck.spoken_seconds("hey nova") < ck.MAX_SPOKEN_S < ck.spoken_seconds("turn the lights on")
    with pytest.raises(PhraseError, match=r"'turn the lights on' takes 1\.\d\d s .* choose a shorter phrase"):
        ck.generate_custom_set(["hey nova", "turn the lights on"], tmp_path / "set", base=TINY, workers=1)
    assert not (tmp_path / "set").exists()


SLOW = [kw.Speaker("s", "en-us", "klatt4", 110.0, 50.0, "training", ("okay computer",), 0),
        kw.Speaker("f", "", "slt", 0.7, 0.0, "training", ("okay computer",), 0, engine="flite")]


@pytest.mark.parametrize("slow", SLOW, ids=lambda s: s.engine)
def test_a_slow_phrase_is_said_faster_not_cut(slow):
    """At the slowest rate a phrase lasts over 1 s; its clip holds all of it (a single word is still cut, as
    a 1 s recording would cut it)."""
    if shutil.which(slow.engine) is None:
        pytest.skip(f"{slow.engine} not installed")
    if slow.engine == "espeak-ng":
        assert kw.synthesize("okay computer", "en-us+klatt4", 110.0, 50.0).shape[0] > 16000
    clip = kw.render_clip("okay computer", slow, np.random.default_rng(0), [], TINY)  # no noise: speech only
    voiced = torch.nonzero(clip).flatten()
    span = int(voiced[-1] - voiced[0]) + 1
    assert clip.shape == (16000,) and 0.8 * 16000 < span < 16000  # a cut voice would fill the clip to its edge


def test_keywords_command_writes_the_set_and_says_how_to_train(tmp_path, capsys):
    out = tmp_path / "my_words"
    rc = main(["keywords", "--words", "hey nova", "lights on", "--out", str(out), "--speakers", "6",
               "--workers", "1", "--seed", "3"])
    printed = capsys.readouterr().out
    assert rc == 0 and (out / "hey_nova").is_dir() and (out / "testing_list.txt").is_file()
    assert 'make train WORDS="hey nova,lights on"' in printed and f"--data.init_args.root {out}" in printed


@pytest.mark.parametrize("args, message", [
    (["--words", "hey nova", "Hey Nova"], "--words: keywords 'hey nova' and 'hey nova' are the same keyword"),
    (["--words", "hey nova,"], "--words: empty keyword"),
    (["--words", "r2d2"], "--words: keyword 'r2d2' has characters '2'"),
    (["--words", "turn the lights on"], "--words: keyword 'turn the lights on' takes"),
    (["--words", "hey nova", "--speakers", "0"], "--speakers must be >= 1, got 0"),
])
def test_keywords_command_errors_are_one_line(args, message, tmp_path, capsys):
    try:
        rc = main(["keywords", *args, "--out", str(tmp_path / "set")])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("INFO ")]
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "set").exists()


def test_the_keywords_command_writes_what_the_custom_config_trains_on():
    """`ssm-signal keywords` then `make train WORDS=...` finds its set: the command's training speech is the
    config's (a different one would be a set "generated with other settings")."""
    import yaml

    from ssm_signal.data.custom_keywords import TRAINING_SPEECH
    from ssm_signal.data.training_speech import TrainingSpeech

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "kws_custom.yaml").read_text())
    assert TrainingSpeech(**cfg["data"]["init_args"]["keyword_set"]["training_speech"]) == TRAINING_SPEECH
