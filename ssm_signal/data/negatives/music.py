"""Music of the negative corpus, in four styles (:data:`MUSIC_STYLES`): recorded loops, a band of
synthesised instruments over recorded drums, recorded guitar and piano with tabla, and all-synthesised
electronic tracks. Each style is ``make(n, sr, rng, mat) -> (>= n,) float32``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ssm_signal.data.negatives.dsp import add_at, bandpass, fade, reverb, semitones, speed, tile
from ssm_signal.data.negatives.materials import (
    BASS_C,
    CRASHES,
    DRUM_LOOPS,
    GUITAR_E,
    HATS,
    KICKS,
    LAYER_LOOPS,
    SNARES,
    TABLA,
    Materials,
)

# --- synthesised instruments ---------------------------------------------------------------------------


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def _tone(midi: float, dur: float, sr: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One synthesised note: additive harmonics under an envelope. kinds: pad, pluck, bass, square, bell."""
    n = max(int(dur * sr), 1)
    t = np.arange(n) / sr
    f0 = _hz(midi)
    amps = {"pad": lambda k: 1 / k, "pluck": lambda k: 1 / k**1.5, "bass": lambda k: (1.0, 0.35, 0.12)[k - 1] if k <= 3 else 0,
            "square": lambda k: (1 / k) if k % 2 else 0, "bell": lambda k: 0}[kind]  # fmt: skip
    x = np.zeros(n)
    if kind == "bell":
        for ratio, a, d in ((1.0, 1.0, 1.2), (2.76, 0.5, 0.6), (5.4, 0.25, 0.3), (8.9, 0.12, 0.15)):
            if f0 * ratio < sr / 2:
                x += a * np.sin(2 * np.pi * f0 * ratio * t) * np.exp(-t / d)
        return x.astype(np.float32)
    detune = (0.0, 0.004) if kind == "pad" else (0.0,)
    for k in range(1, 17):
        a = amps(k)
        if a == 0 or f0 * k * 1.01 >= sr / 2:
            continue
        for d in detune:
            x += a * np.sin(2 * np.pi * f0 * k * (1 + d) * t + rng.uniform(0, 2 * np.pi))
    if kind == "pad":
        att, rel = min(0.25, dur / 3), min(0.4, dur / 3)
        env = np.minimum(np.minimum(t / att, 1.0), np.minimum((dur - t) / rel, 1.0))
    elif kind == "pluck":
        env = np.minimum(t / 0.005, 1.0) * np.exp(-t / (0.15 + 0.1 * dur))
    else:
        env = np.minimum(t / 0.01, 1.0) * np.exp(-t / max(dur, 0.05)) * np.minimum((dur - t) / 0.02, 1.0)
    return (x * np.clip(env, 0, 1)).astype(np.float32)


def _synth_kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    f = 45 + 110 * np.exp(-t / 0.04)
    return (np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)).astype(np.float32)


def _synth_noise_hit(sr: int, rng: np.random.Generator, dur: float, decay: float, lo: float) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    return bandpass(rng.standard_normal(len(t)).astype(np.float32) * np.exp(-t / decay), lo, sr / 2, sr)


PROGRESSIONS = (
    ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
    ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),
    ((2, "min"), (7, "maj"), (0, "maj"), (0, "maj")),
    ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
    ((0, "min"), (5, "min"), (7, "min"), (0, "min")),
    ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")),
)
_TRIAD = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_PENTA = {"maj": (0, 2, 4, 7, 9), "min": (0, 3, 5, 7, 10)}


def _music_loops(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Real recorded drum/percussion loops, a section at a time, at varied tempo, with a layer loop and a
    sampled bass line following a chord progression; sections crossfaded."""
    out = np.zeros(n, np.float32)
    pos, xf = 0, int(0.25 * sr)
    while pos < n:
        sec = int(rng.uniform(6, 16) * sr)
        ratio = float(rng.uniform(0.88, 1.12))
        loop = speed(mat(DRUM_LOOPS[int(rng.integers(len(DRUM_LOOPS)))]), ratio)
        bar = len(loop) if len(loop) < 3 * sr else len(loop) // 4
        part = tile(loop, sec + xf) * float(rng.uniform(0.5, 1.0))
        if rng.random() < 0.5:
            layer = speed(mat(LAYER_LOOPS[int(rng.integers(len(LAYER_LOOPS)))]), ratio)
            part += tile(layer, sec + xf, int(rng.integers(len(layer)))) * float(rng.uniform(0.15, 0.45))
        if rng.random() < 0.7:
            bass = mat(BASS_C[int(rng.integers(len(BASS_C)))])
            prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
            key = int(rng.integers(-5, 7))
            for j, b in enumerate(range(0, sec, max(bar, sr // 2))):
                st = key + prog[j % 4][0]
                note = semitones(bass, st - 12 if st > 6 else st)[:bar]
                add_at(part, fade(note, 0, int(0.05 * sr)), b, float(rng.uniform(0.3, 0.6)))
        add_at(out, fade(part, xf if pos else 0, xf), pos)
        pos += sec
    return out


def _one_after_another(n: int, sr: int, rng: np.random.Generator, seconds: tuple[float, float],
                       gap_s: tuple[float, float], compose: Callable[[int], np.ndarray]) -> np.ndarray:
    """(n,) float32: pieces ``compose(length)`` of a length drawn from ``seconds`` placed one after another
    from the start, parted by gaps drawn from ``gap_s``; the last one cut at n. ``compose`` draws its own
    tempo, key and parts from the same ``rng`` (so the order of draws is length, piece, gap)."""
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        length = int(rng.uniform(*seconds) * sr)
        add_at(out, compose(length), pos)
        pos += length + int(rng.uniform(*gap_s) * sr)
    return out


def _tempo_and_chords(rng: np.random.Generator, bpm: tuple[float, float]) -> tuple[float, tuple]:
    """A piece's beat (seconds) drawn from a tempo range in beats per minute, and its chord progression."""
    beat = 60.0 / rng.uniform(*bpm)
    return beat, PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]


def _drum_kit(rng: np.random.Generator, mat: Materials) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (mat(KICKS[int(rng.integers(len(KICKS)))]), mat(SNARES[int(rng.integers(len(SNARES)))]),
            mat(HATS[int(rng.integers(len(HATS)))]))


def _band_song(song: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """One song of ``song`` samples (faded in and out)."""
    beat, prog = _tempo_and_chords(rng, (78, 140))
    key = 48 + int(rng.integers(0, 12))
    kick, snare, hat = _drum_kit(rng, mat)
    crash = mat(CRASHES[int(rng.integers(len(CRASHES)))])
    lead = ("pluck", "square", "bell")[int(rng.integers(3))]
    scale = _PENTA[prog[0][1]]  # the song's mode is its first chord's
    buf = np.zeros(song + 2 * sr, np.float32)
    bar_n = int(4 * beat * sr)
    note = 0
    for b, start in enumerate(range(0, song, bar_n)):
        root, quality = prog[b % 4]
        for m in _TRIAD[quality]:
            add_at(buf, _tone(key + 12 + root + m, 4 * beat, sr, "pad", rng), start, 0.08)
        for k in range(4):
            bs = start + int(k * beat * sr)
            if k % 2 == 0:
                add_at(buf, _tone(key - 12 + root, beat * 0.9, sr, "bass", rng), bs, 0.3)
                add_at(buf, kick, bs, 0.7)
            else:
                add_at(buf, snare, bs, 0.45)
            for h in range(2):
                add_at(buf, hat, bs + int(h * beat * sr / 2), float(rng.uniform(0.12, 0.25)))
        if b % 8 == 0:
            add_at(buf, crash, start, 0.3)
        for e in range(8):  # eighth-note melody, a random walk on the pentatonic scale
            if rng.random() < 0.3:
                continue
            note = int(np.clip(note + rng.integers(-2, 3), -3, 8))
            midi = key + 24 + scale[note % 5] + 12 * (note // 5)
            add_at(buf, _tone(midi, beat * 0.5, sr, lead, rng), start + int(e * beat * sr / 2), 0.12)
    buf = reverb(buf, rng, sr, float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.4, 1.2)))
    return fade(buf[:song], int(0.5 * sr), int(2 * sr))


def _music_band(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Songs: synthesised chords, bass and melody over recorded drum hits, in a random key and tempo."""
    return _one_after_another(n, sr, rng, (20, 60), (0.5, 2.0), lambda song: _band_song(song, sr, rng, mat))


def _guitar_piece(piece: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """One piece of ``piece`` samples (faded in and out)."""
    beat, prog = _tempo_and_chords(rng, (60, 96))
    key = int(rng.integers(-4, 5))
    inst = mat(GUITAR_E[int(rng.integers(len(GUITAR_E)))])
    tabla = [mat(t) for t in rng.choice(TABLA, size=4, replace=False)]
    pattern = rng.integers(-1, 4, size=16)
    buf = np.zeros(piece + 2 * sr, np.float32)
    bar_n = int(4 * beat * sr)
    if rng.random() < 0.3:
        add_at(buf, tile(mat("loop_tabla"), piece), 0, 0.25)
    for b, start in enumerate(range(0, piece, bar_n)):
        root = prog[b % 4][0]
        st = key + root - 12 * (key + root > 6)
        add_at(buf, fade(semitones(inst, st)[: bar_n + sr], 0, int(0.3 * sr)), start, 0.5)
        for s, hit in enumerate(pattern):
            if hit >= 0:
                add_at(buf, tabla[hit], start + int(s * beat * sr / 4), float(rng.uniform(0.15, 0.35)))
    buf = reverb(buf, rng, sr, float(rng.uniform(0.15, 0.35)), float(rng.uniform(0.6, 1.5)))
    return fade(buf[:piece], int(0.3 * sr), int(2 * sr))


def _music_guitar(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Slow pieces of recorded guitar and piano samples pitched along a chord progression, with tabla."""
    return _one_after_another(n, sr, rng, (20, 50), (0.5, 2.0), lambda piece: _guitar_piece(piece, sr, rng, mat))


def _synth_track(track: int, sr: int, rng: np.random.Generator, kick: np.ndarray) -> np.ndarray:
    """One track of ``track`` samples (faded in and out) over the given kick drum."""
    beat, prog = _tempo_and_chords(rng, (100, 140))
    key = 45 + int(rng.integers(0, 12))
    snare = _synth_noise_hit(sr, rng, 0.25, 0.06, 1500)
    hat = _synth_noise_hit(sr, rng, 0.08, 0.015, 6000)
    arp_kind = ("square", "pluck")[int(rng.integers(2))]
    buf = np.zeros(track + 2 * sr, np.float32)
    bar_n = int(4 * beat * sr)
    for b, start in enumerate(range(0, track, bar_n)):
        root, quality = prog[b % 4]
        chord = [key + 12 + root + m for m in _TRIAD[quality]]
        if b % 2 == 0:
            for m in chord:
                add_at(buf, _tone(m + 12, 8 * beat, sr, "pad", rng), start, 0.05)
        for k in range(4):
            bs = start + int(k * beat * sr)
            add_at(buf, kick, bs, 0.8)
            if k % 2:
                add_at(buf, snare, bs, 0.35)
        for s in range(16):
            ss = start + int(s * beat * sr / 4)
            add_at(buf, hat, ss, 0.12 if s % 2 else 0.2)
            if s % 2 == 0:
                add_at(buf, _tone(key - 12 + root + (12 if s % 8 == 6 else 0), beat * 0.45, sr, "bass", rng), ss, 0.3)
            add_at(buf, _tone(chord[s % 3] + 12 * (1 + (s // 3) % 2), beat * 0.25, sr, arp_kind, rng), ss, 0.06)
    buf = reverb(buf, rng, sr, float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.3, 0.8)))
    return fade(buf[:track], int(0.5 * sr), int(2 * sr))


def _music_synth(n: int, sr: int, rng: np.random.Generator, mat: Materials) -> np.ndarray:
    """Electronic tracks, all synthesised: kick, noise snares and hats, a bass line, arpeggios and pads."""
    kick = _synth_kick(sr)
    return _one_after_another(n, sr, rng, (25, 60), (0.3, 1.5), lambda track: _synth_track(track, sr, rng, kick))


def synth_music(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The fully synthesised style alone (no recorded sample): (n,) float32. Training negatives use it
    (:mod:`ssm_signal.data.training_speech`) from seed streams of their own."""
    return _music_synth(n, sr, rng, Materials(sr))[:n]


#: The music styles, in the order they are cycled over the music sources.
MUSIC_STYLES = ("loops", "band", "guitar", "synth")
MAKE_MUSIC = {"loops": _music_loops, "band": _music_band, "guitar": _music_guitar, "synth": _music_synth}
