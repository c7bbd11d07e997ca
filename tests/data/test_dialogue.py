"""ssm_signal.data.dialogue (and game_lines' Drascula reader): recorded game dialogue as real validation data. A
fake Drascula package (its data file written here in the engine's layout, speech files of tones) stands in for
the Debian one: the text tables, which file says which line, the cut around a pinned span, the validation set's
positives and keyword-free lines (benchmarks/fetch_real_validation.py), and the errors (a table that does not
match the lines, a package whose SHA-256 differs)."""

from __future__ import annotations

import csv
import dataclasses
import json
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from ssm_signal.data import dialogue, game_lines
from ssm_signal.data.skips import DataError
from ssm_signal.data.speech_commands import CORE_WORDS
from tests.helpers import load_benchmark

TEXTS = {  # table -> entries (entry 0 is empty in the game's tables)
    "text": ["", "YES, THAT'S DONE", "IT'S A DOOR", "NO THANKS, NO"],
    "textd": ["", "HEY IGOR, HOW IS EVERYTHING?"],
    "textvb": ["", "GO AWAY"],
}


def _records(entries: list[str]) -> bytes:
    out = b""
    for e in entries:
        raw = e.encode("latin-1") + b"\0"
        pad = 4 - (len(raw) + 2) % 4
        out += struct.pack(">H", len(raw) + pad + 2) + raw + b"\0" * pad
    return out


def _dat(languages: int = 2) -> bytes:
    """drascula.dat, version 6: the engine's tables (one zeroed entry each), then the ten text tables."""
    body = b"DRASCULA" + bytes([6])
    for _, size in game_lines.DRASCULA_BEFORE:
        body += struct.pack(">H", 1) + b"\0" * size
    body += struct.pack(">H", languages)
    for name in game_lines.DRASCULA_TEXTS:
        entries = TEXTS.get(name, [""])
        body += struct.pack(">H", len(entries))
        for lang in range(languages):
            shown = entries if lang == 0 else [e.lower() for e in entries]  # another language
            recs = _records(shown)
            body += struct.pack(">H", len(recs) + 2) + b"\0\0" + recs
    return body


def _tone(seconds: float) -> bytes:
    t = np.arange(int(game_lines.DRASCULA_RATE * seconds)) / game_lines.DRASCULA_RATE
    return np.round(128 + 100 * np.sin(2 * np.pi * 200 * t)).astype(np.uint8).tobytes()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A cache holding the fake package as :func:`dialogue.fetch` leaves a real one (so nothing is downloaded),
    the only source; where the validation set's fetch, working in ``tmp_path``, looks for it."""
    pkg = dialogue.PACKAGES["drascula"]
    monkeypatch.setattr(dialogue, "PACKAGES", {"drascula": pkg})
    folder = tmp_path / "dialogue" / "drascula" / pkg.folder
    folder.mkdir(parents=True)
    (folder / "drascula.dat").write_bytes(_dat())
    for name, seconds in (("1.ALS", 1.5), ("2.ALS", 1.0), ("3.ALS", 2.0), ("D1.ALS", 2.0), ("VB1.ALS", 0.8),
                          ("S1.ALS", 0.5), ("F1.ALS", 0.5), ("9.ALS", 0.5)):  # effects, no table, no entry
        (folder / name).write_bytes(_tone(seconds))
    (tmp_path / "dialogue" / "drascula" / "SOURCE.json").write_text(json.dumps({"sha256": pkg.sha256}))
    return tmp_path / "dialogue"


def test_drascula_texts_read_the_english_tables():
    tables = game_lines.drascula_texts(_dat())
    assert tables["text"] == TEXTS["text"] and tables["textvb"] == TEXTS["textvb"]
    assert tables["textb"] == [""]
    with pytest.raises(DataError, match="version 6"):
        game_lines.drascula_texts(b"DRASCULA" + bytes([5]) + _dat()[9:])


def test_each_speech_file_says_the_entry_of_its_prefix_table(cache):
    got = dialogue.lines("drascula", dialogue.fetch("drascula", cache))
    assert [(ln.clip, ln.speaker, ln.text) for ln in got] == [
        ("1.ALS", "J", "YES, THAT'S DONE"), ("2.ALS", "J", "IT'S A DOOR"), ("3.ALS", "J", "NO THANKS, NO"),
        ("D1.ALS", "D", "HEY IGOR, HOW IS EVERYTHING?"), ("VB1.ALS", "VB", "GO AWAY")]  # no S, F or entry-less file
    wave = dialogue.read_line("drascula", dialogue.fetch("drascula", cache), "2.ALS", 16000)
    assert wave.shape == (16000,) and 0.7 < float(wave.abs().max()) < 0.82  # 100/128, resampled to 16 kHz


def test_words_are_the_alignment_tokens():
    assert dialogue.words("NO-ONE? Yes, THAT'S it... go's") == ["no", "one", "yes", "that's", "it", "go's"]


def test_cut_keeps_the_margins_and_fades_both_ends():
    wave = torch.ones(16000)
    span = dialogue.Span("drascula", "1.ALS", "J", "yes", 0.25, 0.5)
    piece = dialogue.cut(wave, span, 16000)
    assert piece.shape[0] == int((0.5 + dialogue.MARGIN_S[1]) * 16000) - int((0.25 - dialogue.MARGIN_S[0]) * 16000)
    assert piece[0] == 0 and piece[-1] == 0 and piece[piece.shape[0] // 2] == 1
    assert dialogue.cut(wave, dataclasses.replace(span, start_s=0.0, end_s=0.99), 16000).shape[0] == 16000  # clipped


def _table(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "clip", "speaker", "word", "start_s", "end_s"])
        w.writerows(rows)
    return path


def _validation_set(tmp_path, monkeypatch, rows):
    monkeypatch.setattr(dialogue, "SPANS", _table(tmp_path / "spans.csv", rows))
    load_benchmark("fetch_real_audio")
    frv = load_benchmark("fetch_real_validation")
    return frv.fetch_dialogue("dialogue-drascula", frv.Downloads(tmp_path), tmp_path / "set")


def test_the_validation_set_has_the_spans_as_positives_and_keyword_free_lines_as_speech(cache, tmp_path,
                                                                                        monkeypatch):
    [src] = _validation_set(tmp_path, monkeypatch, [
        ["drascula", "1.ALS", "J", "yes", "0.10", "0.50"], ["drascula", "3.ALS", "J", "no", "0.20", "0.45"],
        ["drascula", "3.ALS", "J", "no", "1.40", "1.70"]])
    pos = [c for c in src.clips if c.kind == "positive"]
    assert [(c.label, c.speaker) for c in pos] == [("yes", "drascula J"), ("no", "drascula J"), ("no", "drascula J")]
    for c, span_s in zip(pos, (0.40, 0.25, 0.30), strict=True):
        x, sr = sf.read(tmp_path / "set" / c.path)
        assert sr == 16000 and abs(len(x) / sr - span_s - sum(dialogue.MARGIN_S)) < 0.002  # the cut, no more
    # 1.ALS, 3.ALS and VB1.ALS say "yes", "no" and "go": the other two lines are the negatives
    assert [(c.transcript, c.speaker) for c in src.clips if c.kind == "speech"] == [
        ("IT'S A DOOR", "drascula J"), ("HEY IGOR, HOW IS EVERYTHING?", "drascula D")]
    assert (src.package, src.version, src.sha256) == ("drascula", "1.0+ds4-2", dialogue.PACKAGES["drascula"].sha256)


def test_a_table_that_does_not_match_the_lines_is_refused(cache, tmp_path, monkeypatch):
    fetch_error = load_benchmark("fetch_real_audio").FetchError  # the set is skipped with a one-line warning
    with pytest.raises(fetch_error, match="do not match"):  # line 2 says "IT'S A DOOR"
        _validation_set(tmp_path, monkeypatch, [["drascula", "2.ALS", "J", "yes", "0.10", "0.50"]])


def test_fetch_refuses_a_package_that_is_not_the_pinned_one(tmp_path, monkeypatch):
    from ssm_signal.data import debian_package

    def fake_download(spec, folder):
        deb = folder / "drascula_1.0+ds4-2_all.deb"
        deb.write_bytes(b"not the package")
        return deb

    monkeypatch.setattr(debian_package, "download", fake_download)
    with pytest.raises(DataError, match="not the pinned"):
        dialogue.fetch("drascula", tmp_path)


def test_pinned_table_is_sorted_by_line_and_holds_only_keywords_of_sane_length():
    rows = dialogue.spans()
    assert len(rows) > 100 and {r.source for r in rows} <= set(dialogue.PACKAGES)
    assert {r.word for r in rows} <= set(CORE_WORDS)
    assert all(0.08 <= r.end_s - r.start_s <= 1.0 for r in rows)
    lines = [(r.source, r.clip) for r in rows]
    runs = [k for i, k in enumerate(lines) if i == 0 or k != lines[i - 1]]
    assert len(runs) == len(set(runs))  # each line's spans together: the validation set reads a line once
