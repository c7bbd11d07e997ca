"""The scorer's direct WAV reading (ssm_signal.data.wav_pcm16 through ScoreDataset.__getitems__):
bit for bit soundfile's samples where it accepts a file, the previous per-file path's result for
every file, and rows identical to scoring with soundfile alone."""

from __future__ import annotations

import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.score import ScoreConfig, score
from pipelines.score.batching import ScoreDataset
from pipelines.score.inputs import Item
from pipelines.score.readers import read_pcm16
from ssm_signal import save_bundle
from ssm_signal.data.wav_pcm16 import PCM_SUBFORMAT, pcm16_layout, read_pcm16_wav
from tests.test_bundle import small_model

RATE = 8000


def chunk(cid: bytes, payload: bytes, size: int | None = None, pad: bool = True) -> bytes:
    """A RIFF chunk: id, size (the payload's unless given), payload, the pad byte after an odd payload."""
    return cid + struct.pack("<I", len(payload) if size is None else size) + payload + \
        (b"\0" if pad and len(payload) % 2 else b"")


def fmt(channels: int = 1, rate: int = RATE, bits: int = 16, tag: int = 1, block_align: int | None = None,
        extensible: bool = False, valid_bits: int = 16, subformat: bytes = PCM_SUBFORMAT, extra: bytes = b"") -> bytes:
    align = channels * ((bits + 7) // 8) if block_align is None else block_align
    body = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align, align, bits)
    if extensible:
        body += struct.pack("<HHI", 22, valid_bits, (1 << channels) - 1) + subformat
    return chunk(b"fmt ", body + extra)


def riff(*chunks: bytes, riff_size: int | None = None, magic: bytes = b"RIFF") -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return magic + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def pcm(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(frames, channels) int16 covering the whole range (extremes included)."""
    x = np.random.default_rng(seed).integers(-32768, 32768, size=(frames, channels), dtype=np.int16)
    x.flat[:2] = [-32768, 32767]
    return x


def data(x: np.ndarray, size: int | None = None) -> bytes:
    return chunk(b"data", x.astype("<i2").tobytes(), size)


INFO = chunk(b"LIST", b"INFO" + chunk(b"INAM", b"odd name\0x"))  # 9-byte string: a padded subchunk


def accepted_files() -> dict[str, tuple[bytes, int]]:
    """name -> (file bytes, channels): WAVs that the direct reader takes."""
    mono, stereo = pcm(1000), pcm(700, 2, seed=1)
    whole = riff(fmt(2), data(stereo))
    return {
        "mono": (riff(fmt(), data(mono)), 1),
        "stereo": (whole, 2),
        "extensible": (riff(fmt(2, extensible=True), chunk(b"fact", struct.pack("<I", 700)), data(stereo)), 2),
        "fmt with cbSize": (riff(fmt(extra=b"\0\0"), data(mono)), 1),
        "chunks before data": (riff(fmt(), INFO, chunk(b"JUNK", bytes(27)), chunk(b"abc1", b"xyz"), data(mono)), 1),
        "chunks before fmt": (riff(chunk(b"bext", bytes(5)), fmt(), data(mono)), 1),
        "chunks after data": (riff(fmt(2), data(stereo), INFO, chunk(b"id3 ", bytes(11))), 2),
        "truncated mid-frame": (whole[:-3], 2),
        "truncated at a frame": (whole[:-400], 2),
        "data size 0xFFFFFFFF": (riff(fmt(), data(mono, size=0xFFFFFFFF), riff_size=0xFFFFFFFF), 1),
        "riff size 0xFFFFFFFF": (riff(fmt(), data(mono), riff_size=0xFFFFFFFF), 1),
        "empty data": (riff(fmt(), data(mono[:0])), 1),
        "odd data size, last in the file": (riff(fmt(), chunk(b"data", mono.astype("<i2").tobytes()[:-1], pad=False)), 1),
    }


def declined_files() -> dict[str, tuple[bytes, int]]:
    """name -> (file bytes, channels): files that the direct reader leaves to the general path."""
    mono = pcm(1000)
    odd = mono.astype("<i2").tobytes()[:-1]
    return {
        "rate": (riff(fmt(rate=16000), data(mono)), 1),
        "channels": (riff(fmt(3), data(pcm(500, 3))), 1),
        "8 bit": (riff(fmt(bits=8), chunk(b"data", bytes(1000))), 1),
        "24 bit": (riff(fmt(bits=24), chunk(b"data", bytes(3000))), 1),
        "float": (riff(fmt(bits=32, tag=3), chunk(b"data", np.zeros(1000, "<f4").tobytes())), 1),
        "extensible float": (riff(fmt(extensible=True, subformat=b"\3" + PCM_SUBFORMAT[1:]), data(mono)), 1),
        "extensible 12 valid bits": (riff(fmt(extensible=True, valid_bits=12), data(mono)), 1),
        "block align": (riff(fmt(block_align=4), data(mono)), 1),
        "big-endian RIFX": (riff(fmt(), data(mono), magic=b"RIFX"), 1),
        "RF64": (riff(fmt(), data(mono), magic=b"RF64"), 1),
        "not RIFF": (b"fLaC" + bytes(100), 1),
        "data before fmt": (riff(data(mono), fmt()), 1),
        "second fmt at another rate": (riff(fmt(), fmt(rate=16000), data(mono)), 1),
        "second fmt of 24 bits": (riff(fmt(), fmt(bits=24), chunk(b"data", bytes(3000))), 1),
        "second fmt the same": (riff(fmt(), fmt(), data(mono)), 1),
        "odd data size, padded": (riff(fmt(), chunk(b"data", odd)), 1),
        "chunk past the end": (riff(fmt(), chunk(b"LIST", b"INFO", size=10_000)), 1),
        "unprintable chunk id": (riff(fmt(), chunk(b"\x01\x02ab", bytes(4)), data(mono)), 1),
        "data past the RIFF end": (riff(fmt(), data(mono), riff_size=1000), 1),
        "short fmt": (riff(chunk(b"fmt ", fmt()[8:22]), data(mono)), 1),
        "short fmt, last": (riff(chunk(b"fmt ", fmt()[8:22])), 1),
        "short extensible fmt, last": (riff(chunk(b"fmt ", fmt(extensible=True)[8:32])), 1),
        "header only": (riff(fmt())[:30], 1),
    }


def write_all(root: Path, files: dict[str, tuple[bytes, int]]) -> dict[str, tuple[Path, int]]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (name, (raw, channels)) in enumerate(files.items()):
        p = root / f"{i:02d}.wav"
        p.write_bytes(raw)
        out[name] = (p, channels)
    return out


def test_accepted_files_read_as_soundfile_reads_them(tmp_path):
    for name, (p, channels) in write_all(tmp_path, accepted_files()).items():
        got = read_pcm16_wav(str(p), p.stat().st_size, RATE, channels)
        ref, rate = sf.read(p, dtype="int16", always_2d=True)
        assert got is not None, name
        assert rate == RATE and got.dtype == np.int16 and got.shape == ref.shape and np.array_equal(got, ref), name
        assert np.array_equal(read_pcm16_wav(str(p), None, RATE, channels), ref), name  # size from the file
        if name != "extensible" or sys.version_info >= (3, 12):  # wave takes WAVE_FORMAT_EXTENSIBLE from 3.12 on
            with wave.open(str(p)) as w:
                raw = w.readframes(w.getnframes())  # a final partial frame included
                assert raw[: len(raw) // (2 * channels) * 2 * channels] == got.tobytes(), name
    # what soundfile itself writes, extensible header included
    x = pcm(333, 2).astype(np.float32) / 32768
    for fmt_name in ("WAV", "WAVEX"):
        p = tmp_path / f"sf_{fmt_name}.wav"
        sf.write(p, x, RATE, subtype="PCM_16", format=fmt_name)
        ref, _ = sf.read(p, dtype="int16", always_2d=True)
        assert np.array_equal(read_pcm16_wav(str(p), p.stat().st_size, RATE, 2), ref)


def test_what_is_declined(tmp_path):
    for name, (p, channels) in write_all(tmp_path, declined_files()).items():
        assert read_pcm16_wav(str(p), p.stat().st_size, RATE, channels) is None, name
    p, _ = write_all(tmp_path / "grew", {"mono": accepted_files()["mono"]})["mono"]
    assert read_pcm16_wav(str(p), p.stat().st_size - 2, RATE, 1) is None  # larger than listed: not cut short
    assert read_pcm16_wav(str(tmp_path / "missing.wav"), 100, RATE, 1) is None
    assert pcm16_layout(b"RIFF", RATE, 1) is None


def test_cut_or_corrupted_files_never_raise_and_read_as_before(tmp_path, seed):
    """Prefixes of the accepted files (cut in the header or the data), and random bytes changed in their
    headers: the direct reader
    declines or reads what the general path (read_pcm16: soundfile) reads, never raises."""
    rng = np.random.default_rng(seed)
    variants = []
    for raw, channels in accepted_files().values():
        cuts = [*rng.choice(120, size=40, replace=False), len(raw) - 1, len(raw) - 2, len(raw) - 5]
        variants += [(raw[:k], channels) for k in cuts]
        for _ in range(20):
            b = bytearray(raw)
            for i in rng.integers(0, min(100, len(b)), size=int(rng.integers(1, 4))):
                b[i] = int(rng.integers(0, 256))
            variants.append((bytes(b), channels))
    accepted = 0
    for k, (raw, channels) in enumerate(variants):
        p = tmp_path / f"{k}.wav"
        p.write_bytes(raw)
        got = read_pcm16_wav(str(p), len(raw), RATE, channels)
        if got is None:
            continue
        accepted += 1
        before = read_pcm16(str(p), RATE, channels, 0)
        assert before is not None and np.array_equal(got, before), (k, raw[:64])
    assert accepted > len(variants) // 10


def test_reading_into_a_buffer_gives_the_same_samples(tmp_path):
    files = write_all(tmp_path, accepted_files())
    buf = memoryview(bytearray(1 << 16))
    for name, (p, channels) in files.items():
        size = p.stat().st_size
        buf[:] = b"\xff" * len(buf)  # stale bytes must not show through
        got = read_pcm16_wav(str(p), size, RATE, channels, buf[3:])  # any offset
        assert np.array_equal(got, read_pcm16_wav(str(p), size, RATE, channels)), name


@pytest.mark.parametrize("channels", [1, 2])
def test_batches_equal_the_per_file_path(tmp_path, channels):
    """__getitems__ with direct WAV reading, several batches through one dataset (its read buffer reused),
    against ScoreDataset.read, the per-file path the scorer took before, for every file: the same
    signals (int16 where that path gives int16, float otherwise), durations and errors."""
    files = write_all(tmp_path / "w", {**accepted_files(), **declined_files()})
    paths = [str(p) for p, _ in files.values()]
    # the files the direct reader takes: accepted, this channel count, at least min_samples frames
    direct = {str(files[name][0]) for name, (_, c) in accepted_files().items() if c == channels and name != "empty data"}
    x = pcm(900, channels).astype(np.float32) / 32768
    for name, rate, subtype in [("pcm16.flac", RATE, "PCM_16"), ("resampled.wav", 11025, "PCM_16"),
                                ("float.wav", RATE, "FLOAT")]:
        sf.write(tmp_path / name, x, rate, subtype=subtype)
        paths.append(str(tmp_path / name))
    paths += [str(tmp_path / "missing.wav"), str(tmp_path / "w")]  # no such file; a folder
    ds = ScoreDataset([Item(p, "lab") for p in paths], RATE, channels, min_samples=32)
    ref = [ds.read(p) for p in paths]
    general = []
    ds.read = lambda path: general.append(path) or ScoreDataset.read(ds, path)
    for start in range(0, len(paths), 7):
        keys = [(start // 7, i) for i in range(start, min(start + 7, len(paths)))]
        got = ds.__getitems__(keys)
        assert got.batch_no == start // 7 and got.files.path == [paths[i] for _, i in keys]
        assert got.files.label == ["lab"] * len(keys)
        signals = iter(got.signals)
        for j, (_, i) in enumerate(keys):
            signal, seconds, error = ref[i]
            assert got.files.ok[j] == (signal is not None), paths[i]
            assert (got.files.error[j], got.files.duration[j]) == (error, seconds), paths[i]
            if signal is not None:
                s = next(signals)
                assert type(s) is type(signal) and s.dtype == signal.dtype and s.shape == signal.shape, paths[i]
                assert np.array_equal(np.asarray(s), np.asarray(signal)), paths[i]
        assert next(signals, None) is None
    assert set(paths) - set(general) == direct and len(direct) >= 4
    assert sum(e is not None for _, _, e in ref) >= 10  # and the error paths were exercised


def test_rows_equal_scoring_with_soundfile_alone(tmp_path):
    """Whole scoring runs, two workers, batches through the ring: the direct reader's rows equal the
    soundfile path's (``direct_wav=False``; scores bit for bit, errors, durations)."""
    bundle_dir = save_bundle(small_model(), tmp_path / "bundle", name="tiny", version="1")
    data = tmp_path / "data"
    write_all(data / "a", accepted_files())
    write_all(data / "b", declined_files())
    rng = np.random.default_rng(2)
    (data / "c").mkdir()
    for i in range(20):  # ordinary clips of several lengths, some padded in their batch
        sf.write(data / "c" / f"{i:02d}.wav", (0.3 * rng.standard_normal(int(rng.integers(300, 2000)))).astype(
            np.float32), RATE)
    common = dict(model=str(bundle_dir), input=str(data), batch_size=4, num_workers=2, accelerator="cpu",
                  mlflow=False, ring=True)
    direct = score(ScoreConfig(output=str(tmp_path / "direct.parquet"), **common))
    old = score(ScoreConfig(output=str(tmp_path / "wave.parquet"), direct_wav=False, **common))
    assert direct["ok"] == old["ok"] >= 40 and direct["errors"] == old["errors"] >= 5
    a = pd.read_parquet(tmp_path / "direct.parquet").set_index("path").sort_index()
    b = pd.read_parquet(tmp_path / "wave.parquet").set_index("path").sort_index()
    assert a.index.equals(b.index)
    for col in ("status", "error", "label", "score", "duration_s", "true_label"):
        assert a[col].equals(b[col]), col
    for p in a.index:
        sa, sb = a.loc[p, "scores"], b.loc[p, "scores"]
        assert (sa is None and sb is None) or np.array_equal(sa, sb), p
