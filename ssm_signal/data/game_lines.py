"""Which recorded line says what, in the two voiced adventure games that :mod:`ssm_signal.data.dialogue` reads.

Both games name each speech file by where its text sits in the game's own data, so the text of a line is read,
not recognised. Written from the data files' layouts (big-endian throughout); each reader returns
:class:`Line` rows, sorted by clip.

**Drascula** (``drascula``): ``<prefix><N>.ALS`` (headerless 8-bit unsigned PCM, 11,025 Hz) says entry N of the
English text table of its prefix in ``drascula.dat``: no prefix is John Hacker's table, ``D`` Drascula's, ``VB``
Von Braun's, and so on (:data:`DRASCULA_TABLES`). ``S`` files are sound effects.

**Flight of the Amazon Queen** (``flight-of-the-amazon-queen``): one container, ``queen.1c`` (``QTBL``: a table
of named entries), whose ``*.SB`` entries are MPEG layer III streams at 11,025 Hz. A sentence is said in pieces,
split at each ``*`` command of its text (``*15``, ``*WT``, ``*XY00(237,112)``); piece k is its own file, named by
the sentence's place and ``k`` in hex as the last character:

- dialogue (``*.DOG``): ``"%2d%4x" % (talk key, string id)`` + ``J`` (Joe) or ``P`` (the person he talks to);
  ``SSSS`` for the id of Joe's opening line, ``XXXX`` for the "we have talked before" pair;
- Joe's stock responses and object descriptions (``QUEEN2.JAS``): ``JOE%04d``, response n (1-40) or
  description n - 40;
- cutscenes (``*.CUT``): the cutscene's name padded with ``_`` to 5 characters, then the 1-based number of the
  scripted object that speaks (2 digits); a caption object's whole text is one file.

Spaces in a name become ``0``. 6,584 of the 6,745 files map to a text; the rest are sound effects and a few
takes with names nothing generates. Joe's responses 30-40 are menu labels ("Close", "Yes", "Music Volume"),
whose files could not be confirmed to say them: they are left out.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import re
import struct
from pathlib import Path

import numpy as np

from ssm_signal.data.skips import DataError


@dataclasses.dataclass(frozen=True)
class Line:
    """One recorded line: ``clip`` names its audio in the game's files; ``speaker`` the character saying it."""

    source: str
    clip: str
    speaker: str
    text: str


# ------------------------------------------------------------------------------------------------ Drascula

DRASCULA_RATE = 11025
#: a speech file's prefix -> its text table in drascula.dat
DRASCULA_TABLES = {"": "text", "D": "textd", "B": "textb", "BJ": "textbj", "E": "texte", "I": "texti",
                   "L": "textl", "P": "textp", "T": "textt", "VB": "textvb"}
#: the tables of drascula.dat before the texts: (name, bytes per entry)
DRASCULA_BEFORE = (("charmap", 4), ("items", 4), ("pol", 4), ("verb_bar", 2), ("menu", 4), ("frame", 2),
                   ("candle", 4), ("pianist", 2), ("drunk", 2), ("pre_updates", 20), ("updates", 20),
                   ("actions", 10), ("talk_sequences", 8))
DRASCULA_TEXTS = ("text", "textd", "textb", "textbj", "texte", "texti", "textl", "textp", "textt", "textvb")
_DRASCULA_CLIP = re.compile(r"^(?P<prefix>[A-Z]*)(?P<n>\d+)\.ALS$")


def drascula_texts(dat: bytes) -> dict[str, list[str]]:
    """The English text tables of drascula.dat (version 6): table name -> its entries.

    Layout: ``DRASCULA``, a version byte, the engine's tables (each a uint16 count and fixed-size entries), the
    number of languages, then per text table a uint16 count and per language a uint16 size, 2 bytes of padding
    and entries of (uint16 record size, NUL-terminated Latin-1 text, padding); English first."""
    if dat[:8] != b"DRASCULA" or len(dat) < 9 or dat[8] != 6:
        raise DataError("game_lines: drascula.dat is not version 6 of the engine's data file")
    pos = 9

    def u16() -> int:
        nonlocal pos
        pos += 2
        return struct.unpack(">H", dat[pos - 2:pos])[0]

    for _, size in DRASCULA_BEFORE:
        count = u16()
        pos += count * size
    languages = u16()
    tables = {}
    for name in DRASCULA_TEXTS:
        count = u16()
        for lang in range(languages):
            u16()
            pos += 2
            entries = []
            for _ in range(count):
                size = u16()
                entries.append(dat[pos:pos + size - 2].split(b"\0")[0].decode("latin-1"))
                pos += size - 2
            if lang == 0:
                tables[name] = entries
    return tables


def drascula_lines(folder: Path) -> list[Line]:
    """Every speech file of the unpacked Drascula folder that has a line."""
    tables = drascula_texts((folder / "drascula.dat").read_bytes())
    out = []
    for path in sorted(folder.glob("*.ALS")):
        m = _DRASCULA_CLIP.match(path.name)
        if not m or m["prefix"] not in DRASCULA_TABLES:
            continue
        table, n = tables[DRASCULA_TABLES[m["prefix"]]], int(m["n"])
        if n < len(table) and table[n].strip():
            out.append(Line("drascula", path.name, m["prefix"] or "J", table[n].strip()))
    return out


def read_drascula(folder: Path, clip: str) -> tuple[np.ndarray, int]:
    """A speech file: (samples (L,) float32 in [-1, 1), sample rate)."""
    raw = np.fromfile(folder / clip, np.uint8).astype(np.float32)
    return (raw - 128.0) / 128.0, DRASCULA_RATE


# ------------------------------------------------------------------------------------------------ FOTAQ

QUEEN_CONTAINER = "queen.1c"
#: the resource header in front of every DOG, CUT and JAS entry
_HEADER = 20
_JOE_RESPONSES = 40
#: Joe's responses that are menu labels, not confirmed as said (see the module's docstring)
_MENU_LABELS = range(30, 41)
#: the person Joe talks to in a dialogue file, from its name's stem
_DOG_PERSON = {"AND": "ANDERSON", "SEC": "SECRETARY", "BOB": "TRADER BOB", "WITCH": "WITCH DOCTOR",
               "PRIN": "PRINCESS AZURA", "JIM": "JIMMY COOK", "TAM": "MARY-LOU COOK", "LARIS": "MIKE LARIS",
               "SHOWERAM": "SHOWERING AMAZON", "WEDGE": "WEDGEWOOD"}
_MARKUP = re.compile(r"\*(?:XY\d\d\(\d+,\d+\)|[A-Z]{2}|\d\d)")


def queen_table(container: Path) -> dict[str, tuple[int, int]]:
    """The entries of a ``QTBL`` container: name -> (offset, size)."""
    return _queen_table(Path(container))


@functools.lru_cache(maxsize=2)
def _queen_table(container: Path) -> dict[str, tuple[int, int]]:
    with container.open("rb") as f:
        head = f.read(15)
        if head[:4] != b"QTBL":
            raise DataError(f"game_lines: {container} is not a QTBL container")
        n = struct.unpack(">H", head[13:15])[0]
        raw = f.read(21 * n)
    table = {}
    for i in range(n):
        e = raw[21 * i:21 * (i + 1)]
        table[e[:12].split(b"\0")[0].decode("ascii").upper()] = struct.unpack(">II", e[13:21])
    return table


def _entry(container: Path, table: dict[str, tuple[int, int]], name: str) -> bytes:
    off, size = table[name]
    with container.open("rb") as f:
        f.seek(off)
        return f.read(size)


def _i16(b: bytes, o: int) -> int:
    return struct.unpack_from(">h", b, o)[0]


def _u16(b: bytes, o: int) -> int:
    return struct.unpack_from(">H", b, o)[0]


def _string(b: bytes, off: int, align: int = 2) -> tuple[str, int]:
    """A length-prefixed string at ``off`` and the aligned offset after it."""
    n = b[off]
    off += 1
    if not n:
        return "", off
    return b[off:off + n].decode("latin-1"), (off + n + align - 1) & ~(align - 1)


def pieces(sentence: str) -> list[tuple[int, str]]:
    """(1-based piece number, text) of each spoken piece of a sentence, split at its ``*`` commands; a piece that
    ends in a grab command (``*GD``, ``*GM``) is not said, and keeps its number."""
    out, i, start, idx = [], 0, 0, 0
    while i < len(sentence):
        if sentence[i] != "*":
            i += 1
            continue
        text, code = sentence[start:i], sentence[i + 1:i + 3]
        i += 3 + (11 if code == "XY" else 0)
        if code not in ("GD", "GM"):
            out.append((idx + 1, text))
        idx += 1
        start = i
    if start < len(sentence):
        out.append((idx + 1, sentence[start:]))
    return out


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKUP.sub(" ", text)).strip()


def _clip_name(prefix: str, piece: int) -> str:
    name = f"{prefix}{piece:x}"
    return (name[:8].replace(" ", "0") + name[8:]).upper() + ".SB"


def _dog(data: bytes):
    """(clip prefix, "J" or "P", sentence) of every spoken string of a dialogue file."""
    b = data[_HEADER:]
    levels, key, joe_count, person_count = abs(_i16(b, 0)), f"{_i16(b, 4):2d}", _i16(b, 6), _i16(b, 8)
    person1, person2 = _u16(b, 22), _u16(b, 26)
    off = 32 + levels * 96
    for _ in range(joe_count):
        sid = _i16(b, off + 2)
        s, off = _string(b, off + 4, 4)
        if not s:
            continue
        if sid == 0 and s != "0":  # Joe's opening line
            yield f"{key}SSSSJ", "J", s
        yield f"{key}{sid & 0xFFFF:4x}J", "J", s
    off = person1
    for _ in range(person_count):
        sid = _i16(b, off + 2)
        s, off = _string(b, off + 4, 4)
        if s:
            yield f"{key}{sid & 0xFFFF:4x}P", "P", s
    p2, off = _string(b, person2, 2)
    j2, off = _string(b, off, 2)
    if p2:
        yield f"{key}XXXXP", "P", p2
    if j2 and j2 != "0":
        yield f"{key}XXXXJ", "J", j2


class _Jas:
    """QUEEN.JAS (counts and object records) with QUEEN2.JAS (the strings, one per line)."""

    def __init__(self, container: Path, table: dict[str, tuple[int, int]]):
        jas = _entry(container, table, "QUEEN.JAS")[_HEADER:]
        rooms, names, objects, descriptions = struct.unpack_from(">4H", jas, 0)
        self.objects = [None] + [struct.unpack_from(">8h", jas, 8 + 16 * k) for k in range(objects)]
        text = _entry(container, table, "QUEEN2.JAS").decode("latin-1").replace("\r\n", "\n").split("\n")
        self.descriptions = text[:descriptions]
        self.names = text[descriptions:descriptions + names]
        o = descriptions + names + rooms + 12  # then the rooms' names and 12 verbs
        self.responses = text[o:o + _JOE_RESPONSES]

    def name(self, obj: int) -> str | None:
        if 0 < obj < len(self.objects):
            n = abs(self.objects[obj][0])
            if 0 < n <= len(self.names):
                return self.names[n - 1]
        return None

    def image(self, obj: int) -> int:
        return self.objects[obj][7] if 0 < obj < len(self.objects) else 0


def _cut_objects(b: bytes, jas: _Jas) -> list[int]:
    """The object number of each scripted object record of a cutscene, in order (as far as the records can be
    followed: an animated object's frame list has a variable length)."""
    count, ptr, nums = abs(_i16(b, 2)), 12, []
    try:
        for _ in range(count):
            rec = struct.unpack_from(">17h", b, ptr)
            ptr += 34
            obj, anims, execute, from_obj = rec[0], rec[4], rec[5], rec[12]
            ptr += 2 + 2 * max(_i16(b, ptr), 0)
            nums.append(obj)
            obj = 0 if obj == -1 else obj
            animated = (not (obj > 0 and not anims and jas.image(obj) in (-3, -4)) and not (obj == 0 and not anims)
                        and from_obj <= 0 and obj not in (-2, -3, -4) and bool(execute))
            if animated:  # frames until -2, 18 bytes each after their 2-byte header
                while (h := _i16(b, ptr)) != -2:
                    if h > 1000:
                        raise ValueError("not a frame header")
                    ptr += 20
                ptr += 2
    except (struct.error, ValueError):
        pass
    return nums


def _cut(name: str, data: bytes, jas: _Jas):
    """(clip prefix, speaker, sentence, whether a caption) of every spoken string of a cutscene."""
    b = data[_HEADER:]
    count = abs(_i16(b, 2))
    _, off = _string(b, _u16(b, 8), 2)  # the cutscene's entry string
    base = name.rsplit(".", 1)[0].upper()
    prefix = (base + "_" * 5)[:max(5, len(base))]
    objs = _cut_objects(b, jas)
    for i in range(count):
        s, off = _string(b, off, 2)
        if not s or s == "*" or s.startswith("#"):
            continue
        obj = objs[i] if i < len(objs) else None
        if obj in (0, -1):
            speaker = "JOE"
        elif obj in (-2, -3):
            speaker = "TEXT"
        elif obj is not None and obj > 0:  # the room object that speaks: a hint, objects are reused
            speaker = "NPC:" + (jas.name(obj) or f"OBJ{obj}").upper()
        else:
            speaker = "?"
        yield f"{prefix}{i + 1:02d}"[:len(prefix) + 2], speaker, s, obj in (-2, -3)


def queen_lines(folder: Path) -> list[Line]:
    """Every speech file of the unpacked Flight of the Amazon Queen folder that has a line. A file name that two
    different texts would give (a string id used twice) is left out."""
    container = folder / QUEEN_CONTAINER
    table = queen_table(container)
    files = {n for n in table if n.endswith(".SB")}
    jas = _Jas(container, table)
    rows: dict[str, Line] = {}
    ambiguous = set()

    def add(clip: str, speaker: str, text: str) -> None:
        text = _clean(text)
        if clip not in files or not text:
            return
        if clip in rows and rows[clip].text != text:
            ambiguous.add(clip)
        rows.setdefault(clip, Line("fotaq", clip, speaker, text))

    for name in sorted(n for n in table if n.endswith(".DOG")):
        stem = re.sub(r"\d+$", "", name[:-4]) or name[:-4]
        for prefix, role, sentence in _dog(_entry(container, table, name)):
            for k, text in pieces(sentence):
                add(_clip_name(prefix, k), "JOE" if role == "J" else _DOG_PERSON.get(stem, stem), text)
    for n, sentence in enumerate(jas.responses, 1):
        if n not in _MENU_LABELS:
            for k, text in pieces(sentence):
                add(_clip_name(f"JOE{n:04d}", k), "JOE", text)
    for n, sentence in enumerate(jas.descriptions, 1):
        for k, text in pieces(sentence):
            add(_clip_name(f"JOE{n + _JOE_RESPONSES:04d}", k), "JOE", text)
    for name in sorted(n for n in table if n.endswith(".CUT")):
        for prefix, speaker, sentence, caption in _cut(name, _entry(container, table, name), jas):
            for k, text in ([(1, sentence)] if caption else pieces(sentence)):
                add(_clip_name(prefix, k), speaker, text)
    return [rows[k] for k in sorted(rows) if k not in ambiguous]


def read_queen(folder: Path, clip: str) -> tuple[np.ndarray, int]:
    """A speech file decoded (libsndfile reads MPEG layer III): (samples (L,) float32, sample rate)."""
    import soundfile as sf

    container = folder / QUEEN_CONTAINER
    data = _entry(container, queen_table(container), clip)
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise DataError(f"game_lines: {clip} in {container} is not readable MPEG audio ({e})") from e
    return wave.mean(axis=1), int(rate)
