"""ssm_signal.data.game_lines, Flight of the Amazon Queen: a container written here in the game's layout (a
dialogue file, Joe's strings, speech entries as MPEG audio) and the clip names each string gives: pieces split at
``*`` commands, Joe and the person he talks to, the opening line, a description, the menu labels left out, a
name two texts would give left out, and the audio read back. (Drascula's reader: tests/data/test_dialogue.py.)"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from ssm_signal.data import game_lines as gl
from ssm_signal.data.skips import DataError


def test_pieces_split_at_commands_and_grabs_number_a_piece_that_is_not_said():
    assert gl.pieces("Hello.*15 How are you?") == [(1, "Hello."), (2, " How are you?")]
    assert gl.pieces("Look!*XY00(237,112)There.*GDThe end") == [(1, "Look!"), (3, "The end")]  # 2 ends in a grab
    assert gl.pieces("*GMTake it.") == [(2, "Take it.")]
    assert gl.pieces("Just this") == [(1, "Just this")]


def _string(s: str, align: int) -> bytes:
    raw = bytes([len(s)]) + s.encode("latin-1")
    return raw + b"\0" * (-len(raw) % align) if s else raw


def _dog(key: int, joe: list[tuple[int, str]], person: list[tuple[int, str]], again: tuple[str, str]) -> bytes:
    """A dialogue file with no levels: Joe's strings from offset 32, the person's after them, then the pair."""
    joe_part = b"".join(b"\0\0" + struct.pack(">h", sid) + _string(s, 4) for sid, s in joe)
    person_part = b"".join(b"\0\0" + struct.pack(">h", sid) + _string(s, 4) for sid, s in person)
    person1 = 32 + len(joe_part)
    person2 = person1 + len(person_part)
    head = bytearray(32)
    struct.pack_into(">hhhhh", head, 0, 0, 0, key, len(joe), len(person))
    struct.pack_into(">H", head, 22, person1)
    struct.pack_into(">H", head, 26, person2)
    return b"\0" * 20 + bytes(head) + joe_part + person_part + _string(again[0], 2) + _string(again[1], 2)


def _mp3(seconds: float) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(11025 * seconds)) / 11025
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 11025, format="MP3")
    return buf.getvalue()


def _container(path, entries: dict[str, bytes]) -> None:
    names = sorted(entries)
    offset = 15 + 21 * len(names)
    table, body = b"", b""
    for name in names:
        table += name.encode().ljust(12, b"\0") + b"\0" + struct.pack(">II", offset + len(body), len(entries[name]))
        body += entries[name]
    path.write_bytes(b"QTBL" + b"CEM10" + b"\0" * 4 + struct.pack(">H", len(names)) + table + body)


@pytest.fixture(scope="module")
def queen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fotaq")
    jas = b"\0" * 20 + struct.pack(">4H", 0, 0, 0, 1)  # rooms, names, objects, descriptions
    responses = [f"Response {n}" for n in range(1, 41)]
    responses[34] = "No"  # a menu label (35): left out
    jas2 = "\r\n".join(["It's a door.*15Locked, too.", *[f"verb{v}" for v in range(12)], *responses])
    dog = _dog(2, joe=[(0, "Hi there."), (6, "Go left.*15Now!")], person=[(6, "No, thanks."), (7, "Bye.")],
               again=("You again?", "Yes."))
    clips = ["02SSSSJ1", "020006J1", "020006J2", "020006P1", "02XXXXP1", "02XXXXJ1", "JOE00011", "JOE00351",
             "JOE00411", "JOE00412"]  # no 020007P1: a string without a recording
    entries = {"AND1.DOG": dog, "QUEEN.JAS": jas, "QUEEN2.JAS": jas2.encode("latin-1"),
               **{c + ".SB": _mp3(0.5) for c in clips}}
    _container(folder / gl.QUEEN_CONTAINER, entries)
    return folder


def test_each_speech_file_gets_the_text_its_name_points_at(queen):
    got = {ln.clip: (ln.speaker, ln.text) for ln in gl.queen_lines(queen)}
    assert got == {
        "02SSSSJ1.SB": ("JOE", "Hi there."),  # Joe's opening line (string id 0)
        "020006J1.SB": ("JOE", "Go left."), "020006J2.SB": ("JOE", "Now!"),  # pieces of one string
        "020006P1.SB": ("ANDERSON", "No, thanks."),  # the person, named after the file
        "02XXXXP1.SB": ("ANDERSON", "You again?"), "02XXXXJ1.SB": ("JOE", "Yes."),
        "JOE00011.SB": ("JOE", "Response 1"),  # a stock response; 35 is a menu label, left out
        "JOE00411.SB": ("JOE", "It's a door."), "JOE00412.SB": ("JOE", "Locked, too."),  # description 1
    }  # 020007P1 has no recording: no line


def test_speech_is_read_as_mpeg_audio(queen):
    wave, rate = gl.read_queen(queen, "020006J1.SB")
    assert rate == 11025 and wave.dtype == np.float32 and abs(wave.shape[0] - 5512) < 1200
    assert 0.2 < float(np.abs(wave).max()) < 0.4


def test_a_file_that_is_not_a_container_is_an_error(tmp_path):
    (tmp_path / "queen.1c").write_bytes(b"nothing")
    with pytest.raises(DataError, match="QTBL"):
        gl.queen_table(tmp_path / "queen.1c")
