"""benchmarks/fetch_real_validation.py: Zhuyin romanisation, the look-alike filter on Mandarin syllables, the
validation role in SOURCES.json, and that the validation set shares no recording package and no speaker with the
report set, nor any with training's recorded music or speech (no network, no sox)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssm_signal.data import dialogue, recorded_speech
from ssm_signal.data.training_speech import TRAINING_MUSIC_PACKAGES
from tests.helpers import load_benchmark

fra = load_benchmark("fetch_real_audio")
frv = load_benchmark("fetch_real_validation")


@pytest.mark.parametrize(
    "zhuyin, pinyin",
    [
        ("ㄊㄢ3", "tan"), ("ㄨㄛ", "wo"), ("ㄐㄩ", "ju"), ("ㄋㄩ3", "nu"), ("ㄒㄩㄥ2", "xiong"), ("ㄧㄡ", "you"),
        ("ㄉㄧㄡ1", "diu"), ("ㄍㄨㄟ4", "gui"), ("ㄓ", "zhi"), ("ㄅ", "bo"), ("ㄩㄝ4", "yue"), ("ㄉㄨㄥ", "dong"),
        ("ㄌㄧㄥ2", "ling"), ("ㄨㄣ2", "wen"), ("ㄏㄨㄣ", "hun"), ("ㄦ2", "er"), ("ㄚ", "a"),
    ],
)  # fmt: skip
def test_zhuyin_to_pinyin(zhuyin, pinyin):
    assert frv.zhuyin_to_pinyin(zhuyin) == pinyin


def test_zhuyin_rejects_other_text():
    with pytest.raises(ValueError, match="not a Zhuyin syllable"):
        frv.zhuyin_to_pinyin("ㄊx")


@pytest.mark.parametrize("pinyin", ["tu", "wan", "gou", "nai", "o"])
def test_report_filter_catches_mandarin_homophones(pinyin):
    """The look-alike table only adds to the report set's filter: these it already rejects."""
    assert fra.classify([pinyin], "zh")[0] == "drop"
    assert pinyin not in frv.MANDARIN_LOOKALIKES


def test_no_recording_package_or_speaker_in_common_with_the_report_set():
    def audio_packages(table: dict[str, str]) -> set[str]:
        # "audio package + transcript package": only the first holds recordings
        return {v.split(" + ")[0].split()[0].split("==")[0] for v in table.values()}

    report = audio_packages(fra.SET_PACKAGES)
    validation = audio_packages(frv.SET_PACKAGES)
    assert validation == {"openarena-data", "praat-parselmouth", "gcin-voice", "kajongg", "asterisk-prompt-es-co",
                          "asterisk-prompt-fr-armelle", "extremetuxracer-data", "lincity-ng-data",
                          "fillets-ng-data-cs", "fillets-ng-data-nl", "flight-of-the-amazon-queen",
                          "drascula"}  # fmt: skip
    assert frv.FILLETS_TEXTS not in audio_packages(fra.SET_PACKAGES)  # nor the game's texts
    assert not report & validation
    assert not set(TRAINING_MUSIC_PACKAGES) & (report | validation)  # training music is heard by neither
    assert recorded_speech.PACKAGE not in report | validation  # nor training's recorded speech
    assert {p.name for p in dialogue.PACKAGES.values()} <= validation - report  # the game dialogue: validation only
    report_speakers = {v[4] for v in fra.ASTERISK.values()}
    assert not report_speakers & {v[4] for v in frv.ASTERISK_PROMPTS.values()}


def test_sources_json_says_validation(tmp_path, monkeypatch):
    def fake(name, dl, dest):
        src = fra.Source(name=name, package="fake-pkg", version="1", sha256="0", licence="MIT", language="en",
                         band="wideband", speakers=["tester"], kind="positives")  # fmt: skip
        fra.Builder(dest, src).add("positive", "yes_1", audio=(np.full(16000, 0.1, np.float32), 16000), label="yes")
        return [src]

    monkeypatch.setattr(frv, "SETS", {"fake": fake})
    dest = tmp_path / "real_val"
    assert frv.main(["--dest", str(dest)]) == 0
    doc = json.loads((dest / "SOURCES.json").read_text())
    assert doc["note"] == frv.VALIDATION_ONLY and "REPORTING ONLY" not in doc["note"]
    assert doc["built_by"] == "benchmarks/fetch_real_validation.py"
    assert fra.read_manifest(dest / "positives" / "manifest.csv")[0]["label"] == "yes"


def test_kajongg_labels_each_call_from_its_file_name(tmp_path, monkeypatch):
    """Suit calls are positives of their digit, "no choice" of "no", the other calls negatives, unknown files
    dropped; one source per voice (a fake package; sox replaced by a tone writer)."""
    root = tmp_path / "pkg" / "usr/share/kajongg/voices"
    for voice in frv.KAJONGG_VOICES:
        (root / voice).mkdir(parents=True)
        for stem in ("b1", "s9", "c5", "nochoice", "pung", "we", "chow", "newcall"):
            (root / voice / f"{stem}.ogg").write_bytes(b"")
    (root / "de").mkdir()  # the German voices: not read

    class FakeDownloads:
        workdir = tmp_path / "work"

        def deb(self, name):
            assert name == "kajongg"
            return fra.Package(name, "4:22.12.3-1", "0" * 64, tmp_path / "pkg")

    def tone(src, dst, rate, raw_rate=None):
        fra.write_wav(dst, (0.1 * np.sin(np.arange(rate) * 0.3)).astype(np.float32), rate)

    monkeypatch.setattr(fra, "sox_to_wav", tone)
    sources = frv.fetch_kajongg("kajongg", FakeDownloads(), tmp_path / "out")
    assert [s.name for s in sources] == [f"kajongg-{v}" for v in frv.KAJONGG_VOICES]
    for src in sources:
        pos = {c.transcript: c.label for c in src.clips if c.kind == "positive"}
        assert pos == {"bamboo one [one said last]": "one", "stone nine [nine said last]": "nine",
                       "character five [five said last]": "five", "no choice [no said first]": "no"}
        assert sorted(c.transcript for c in src.clips if c.kind == "speech") == ["chow", "east wind", "pung"]
        assert src.dropped == {"no text": 1} and len(src.speakers) == 1
    assert len({s.speakers[0] for s in sources}) == 4


def test_validation_music_is_each_track_a_clip(tmp_path, monkeypatch):
    """Each Ogg of the package's music folder becomes one music negative under negatives/music/<set>, named from
    its file name (spaces made "_", lower case); a package without one is refused (a fake package; sox writes a tone)."""
    root = tmp_path / "pkg" / "usr/share/games/lincity-ng/music/default"
    root.mkdir(parents=True)
    for stem in ("01 - pronobozo - lincity", "02 - Robert van Herk - City Blues"):
        (root / f"{stem}.ogg").write_bytes(b"")
    (root / "default.xml").write_text("<x/>")

    class FakeDownloads:
        workdir = tmp_path / "work"

        def deb(self, name):
            return fra.Package(name, "1", "0" * 64, tmp_path / "pkg")

    def tone(src, dst, rate, raw_rate=None):
        fra.write_wav(dst, (0.1 * np.sin(np.arange(rate) * 0.3)).astype(np.float32), rate)

    monkeypatch.setattr(fra, "sox_to_wav", tone)
    [src] = frv.SETS["lincity-music"]("lincity-music", FakeDownloads(), tmp_path / "out")
    assert src.kind == "music" and src.package == "lincity-ng-data" and src.licence.startswith("GPL-2+")
    names = sorted(Path(c.path).name for c in src.clips)
    assert names == ["01_-_pronobozo_-_lincity.wav", "02_-_robert_van_herk_-_city_blues.wav"]
    assert {c.kind for c in src.clips} == {"music"}
    assert all((tmp_path / "out" / "negatives" / "music" / "lincity-music" / n).is_file() for n in names)
    with pytest.raises(fra.FetchError, match="holds no"):
        frv.SETS["etr-music"]("etr-music", FakeDownloads(), tmp_path / "out2")


def test_fillets_lines_parses_ids_characters_and_escaped_text():
    lua = ('\ndialogId("vit-hs-klid1", "font_statue", "Citizens, please remain calm.")\n'
           'dialogStr("Občané. Zachovejte klid a rozvahu.")\n\n'
           'dialogId("m-x", "font_small", "He said \\"go\\".")\ndialogStr("Řekl \\"jdi\\".")\n'
           'dialogId("dlg-n", "", "...")\ndialogStr("")\n'
           'dialogLoad("script/"..codename.."/")\n')
    assert frv.fillets_lines(lua) == {"vit-hs-klid1": ("statue", "Občané. Zachovejte klid a rozvahu."),
                                      "m-x": ("small", 'Řekl "jdi".'), "dlg-n": ("narrator", "")}


def test_fillets_keeps_only_keyword_free_lines_with_text_and_recording(tmp_path, monkeypatch):
    """Lines whose text holds a keyword (spelled) or a word that sounds like one (espeak-ng, faked here) are
    dropped, as are lines with no text and recordings with no line; the speaker is the character."""
    root = tmp_path / "pkg" / frv.FILLETS_ROOT
    (root / "script/city").mkdir(parents=True)
    (root / "script/city/dialogs_nl.lua").write_text(
        'dialogId("a", "font_small", "x")\ndialogStr("Welkom in de stad.")\n'
        'dialogId("b", "font_big", "x")\ndialogStr("Stop daarmee!")\n'
        'dialogId("c", "font_big", "x")\ndialogStr("Tja, prima dan.")\n'
        'dialogId("d", "", "x")\ndialogStr("")\n'
        'dialogId("e", "font_big", "x")\ndialogStr("Zonder opname.")\n', encoding="utf-8")
    (root / "sound/city/nl").mkdir(parents=True)
    for stem in ("a", "b", "c", "d", "zz"):
        (root / f"sound/city/nl/{stem}.ogg").write_bytes(b"")

    class FakeDownloads:
        workdir = tmp_path / "work"

        def deb(self, name):
            assert name in ("fillets-ng-data-nl", frv.FILLETS_TEXTS)
            return fra.Package(name, "1.0.1-1.1", "0" * 64, tmp_path / "pkg")

    def tone(src, dst, rate, raw_rate=None):
        fra.write_wav(dst, (0.1 * np.sin(np.arange(rate) * 0.3)).astype(np.float32), rate)

    from ssm_signal.data import foreign_speech
    monkeypatch.setattr(foreign_speech, "without_lookalikes",
                        lambda texts, language, keywords: [t for t in texts if "Tja" not in t])
    monkeypatch.setattr(fra, "sox_to_wav", tone)
    [src] = frv.fetch_fillets("fillets-nl", FakeDownloads(), tmp_path / "out")
    assert [(c.transcript, c.speaker, c.kind) for c in src.clips] == [
        ("Welkom in de stad.", "fillets-nl small", "speech")]
    assert src.dropped == {"holds a keyword or homophone": 1, "a word sounds like a keyword": 1, "not speech": 1,
                           "no text": 1}
    assert src.package == f"fillets-ng-data-nl + {frv.FILLETS_TEXTS}" and src.language == "nl"
