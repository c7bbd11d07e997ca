"""benchmarks/fetch_real_audio.py's pure parts: transcript filtering, transcript files, manifests, pause
splitting, and the run loop's idempotence and missing-set handling, with a fake set (no network, no sox)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import load_benchmark

fra = load_benchmark("fetch_real_audio")


@pytest.mark.parametrize(
    "text",
    [
        "Please press 1 for sales.",  # a digit
        "Agent logged off.",  # a keyword
        "Say it to me",  # homophone of two
        "I know",  # homophone of no
        "Oh",
        "he won",
        "write it down",
        "Yesterday",  # starts with yes
        "the download failed",  # starts with down
        "fourteen sixty",  # number forms
        "alright then",  # ends with right
        "someone is waiting",
        "Zéro",  # accents removed before matching
        "No es posible",  # Spanish "no" sounds like the keyword
        "tu numero",  # Spanish/Italian "tu" sounds like two
        "non merci",
        "the nine's place",  # possessive
    ],
)
def test_keyword_or_homophone_rejected(text):
    assert fra.keyword_hits(text)
    assert not fra.is_keyword_free(text)


@pytest.mark.parametrize(
    "text",
    [
        "Please hold while I try that extension.",
        "The conference is now locked",
        "ten of clubs",
        "forward",  # a hard negative, not a keyword form
        "Активировано",  # Cyrillic: no keyword can match
        "Ese agente ya ha sido autenticado.",
        "patate boucle d oreille",
    ],
)
def test_keyword_free_text_kept(text):
    assert fra.keyword_hits(text) == []
    assert fra.is_keyword_free(text)


def test_empty_text_is_not_keyword_free():
    assert not fra.is_keyword_free("")
    assert not fra.is_keyword_free("...")


def test_keyword_label_only_for_a_lone_keyword():
    assert fra.keyword_label("One.") == "one"
    assert fra.keyword_label("  no ") == "no"
    assert fra.keyword_label("one two") is None
    assert fra.keyword_label("left brace") is None
    assert fra.keyword_label("oh") is None


def test_classify():
    assert fra.classify(["zero"], "en-US") == ("positive", "zero")
    assert fra.classify(["no"], "en_GB") == ("positive", "no")
    # Italian "zero" and Spanish "no" are look-alikes: in neither set.
    assert fra.classify(["zero"], "it-IT")[0] == "drop"
    assert fra.classify(["no"], "es")[0] == "drop"
    assert fra.classify(["Thank you."], "en-US") == ("negative", None)
    assert fra.classify(["[this is a simple beep tone]"], "en-US") == ("drop", "not speech")
    assert fra.classify([], "en-US") == ("drop", "no transcript")
    # A name listed twice must pass on every line (Spanish digits/0: "cero" and "diez").
    assert fra.classify(["diez", "cero"], "es-MX")[0] == "drop"
    assert fra.classify(["one", "two"], "en-US")[0] == "drop"


def test_parse_asterisk_transcripts():
    text = "\ufeff; Core Asterisk Sounds in Spanish\n\ndigits/0: cero\ndigits/0: diez\nauth-thankyou: Gracias: adios.\n"
    got = fra.parse_asterisk_transcripts(text)
    assert got == {"digits/0": ["cero", "diez"], "auth-thankyou": ["Gracias: adios."]}


def test_manifest_round_trip(tmp_path):
    rows = [
        {"path": "b/two.wav", "label": "two", "speaker": "Smith, A. (f)", "source": "b", "band": "telephone",
         "language": "en-US", "transcript": 'say "two", then stop', "extra": "dropped"},
        {"path": "a/left.wav", "label": "left", "speaker": "x", "source": "a", "band": "wideband",
         "language": "en", "transcript": "front left [left cut at 0.70-1.30 s]"},
    ]  # fmt: skip
    path = tmp_path / "positives" / "manifest.csv"
    fra.write_manifest(path, rows, fra.POSITIVE_COLUMNS)
    back = fra.read_manifest(path)
    assert [r["path"] for r in back] == ["a/left.wav", "b/two.wav"]  # sorted by path
    assert list(back[0]) == list(fra.POSITIVE_COLUMNS)
    assert back[1]["speaker"] == "Smith, A. (f)" and back[1]["transcript"] == 'say "two", then stop'
    assert not list(tmp_path.rglob("*.part"))


def test_speech_regions_split_on_pauses_and_merge_short_gaps():
    sr = 16000
    rng = np.random.default_rng(0)

    def burst(s):
        return 0.3 * rng.standard_normal(int(s * sr))

    def quiet(s):
        return 1e-4 * rng.standard_normal(int(s * sr))

    # "front" (0.4 s), a 0.3-s pause, "lef" (0.3 s), a 0.05-s stop closure, "t" (0.05 s), silence.
    x = np.concatenate([quiet(0.1), burst(0.4), quiet(0.3), burst(0.3), quiet(0.05), burst(0.05), quiet(0.2)])
    regions = fra.speech_regions(x, sr)
    assert len(regions) == 2
    (a0, e0), (a1, e1) = regions
    assert a0 == pytest.approx(0.1, abs=0.02) and e0 == pytest.approx(0.5, abs=0.02)
    assert a1 == pytest.approx(0.8, abs=0.02) and e1 == pytest.approx(1.2, abs=0.02)
    assert fra.speech_regions(np.zeros(50), sr) == []


def _fake_set(calls):
    def fetch(name, dl, dest):
        calls.append(name)
        src = fra.Source(name=name, package="fake-pkg", version="1.0", sha256="0" * 64, licence="CC0-1.0",
                         language="en", band="wideband", speakers=["tester"], kind="positives+speech")  # fmt: skip
        b = fra.Builder(dest, src)
        t = np.arange(8000) / 16000
        tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        b.add("positive", "yes_1", audio=(tone, 16000), label="yes", transcript="yes")
        b.add("speech", "hello", audio=(tone, 16000), transcript="hello there")
        assert b.add("speech", "hush", audio=(np.zeros(8000, np.float32), 16000), transcript="hush") is None
        return [src]

    return fetch


def _broken(name, dl, dest):
    raise fra.FetchError(f"apt-get download {name}-pkg failed: E: Unable to locate package")


def test_run_is_idempotent_and_records_missing_sets(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    monkeypatch.setattr(fra, "SETS", {"fake": _fake_set(calls), "broken": _broken})
    dest = tmp_path / "real"
    assert fra.main(["--dest", str(dest)]) == 0
    assert calls == ["fake"]
    pos = fra.read_manifest(dest / "positives" / "manifest.csv")
    assert pos == [{"path": "fake/yes_1.wav", "label": "yes", "speaker": "tester", "source": "fake",
                    "band": "wideband", "language": "en", "transcript": "yes"}]  # fmt: skip
    assert (dest / "positives" / "fake" / "yes_1.wav").is_file()
    neg = fra.read_manifest(dest / "negatives" / "manifest.csv")
    assert [r["path"] for r in neg] == ["speech/fake/hello.wav"]  # the silent clip was dropped
    doc = json.loads((dest / "SOURCES.json").read_text())
    assert "REPORTING ONLY" in doc["note"]
    fake = doc["sources"]["fake"]
    assert fake["files"] == 2 and fake["positives_per_keyword"] == {"yes": 1} and fake["dropped"] == {"silent": 1}
    assert fake["seconds"] == pytest.approx(1.0)
    assert doc["missing"]["broken"]["missing"] is True
    assert "apt-get download broken-pkg failed" in doc["missing"]["broken"]["error"]
    assert "warning: broken skipped" in capsys.readouterr().err

    # Everything present: the set is not fetched again.
    assert fra.main(["--dest", str(dest), "--sets", "fake"]) == 0
    assert calls == ["fake"]
    assert "fake: already in" in capsys.readouterr().out
    # A clip gone: the set is rebuilt.
    (dest / "positives" / "fake" / "yes_1.wav").unlink()
    assert fra.main(["--dest", str(dest), "--sets", "fake"]) == 0
    assert calls == ["fake", "fake"]


def test_nothing_fetched_exits_non_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(fra, "SETS", {"broken": _broken})
    assert fra.main(["--dest", str(tmp_path / "real")]) == 1
    doc = json.loads((tmp_path / "real" / "SOURCES.json").read_text())
    assert doc["sources"] == {} and "broken" in doc["missing"]
