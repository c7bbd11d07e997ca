"""16-bit PCM WAV files read straight from their bytes: one read per file and a RIFF chunk walk.

Why: the batch scorer's DataLoader workers read short clips at GPU rates, where the per-file Python
cost is the limit. The standard library's ``wave`` builds file objects, a chunk object per chunk
and does several reads per file; one ``os.open``, one read of the whole file and a chunk walk with
``struct`` take about a quarter of its time (docs/performance.md, "Figures behind code choices"), and
the samples stay where they were read (an int16 view, no copy).

What is accepted is deliberately narrow: a little-endian RIFF/WAVE file whose one ``fmt `` chunk is
WAVE_FORMAT_PCM, or WAVE_FORMAT_EXTENSIBLE with the PCM subformat and 16 valid bits, at exactly the
expected rate and channel count with 16 bits per sample, followed by a ``data`` chunk. Every file
accepted decodes to the samples soundfile (libsndfile) gives, bit for bit, and to those ``wave``
gives (WAVE_FORMAT_EXTENSIBLE from Python 3.12 on); anything where the two could disagree, or that
either would reject or repair, is declined (None), and the caller falls back to its general reader.
Details that follow libsndfile and ``wave``:

- chunks of odd size are followed by a pad byte (RIFF), which the walk skips;
- any chunks may come between ``fmt `` and ``data`` (``LIST``, ``fact``, ``JUNK``, ...) and after
  ``data`` (not read); a chunk id that is not four printable characters is declined (libsndfile
  tries to resynchronise there);
- a ``data`` chunk claiming more bytes than the file holds (a truncated file, or the size
  0xFFFFFFFF of an unfinished stream) yields the whole frames present, as soundfile reads it;
- declined: a second ``fmt `` chunk (``wave`` decodes by the last; libsndfile ignores it without
  skipping its body, and then finds no ``data``), a ``data`` chunk of odd size followed by its pad
  byte (libsndfile counts the pad byte as sample data), a block alignment other than 2 x channels,
  and data reaching past the RIFF chunk's stated end (``wave`` stops there, libsndfile does not).
"""

from __future__ import annotations

import os
import struct

import numpy as np

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_PCM, the GUID 00000001-0000-0010-8000-00aa00389b71 as stored (little-endian fields)
PCM_SUBFORMAT = bytes.fromhex("0100000000001000800000aa00389b71")

_PRINTABLE = bytes(range(0x20, 0x7F))  # what libsndfile takes for a chunk id it does not know

_chunk_header = struct.Struct("<4sI").unpack_from  # id, size
_fmt_fields = struct.Struct("<HHIIHH").unpack_from  # tag, channels, rate, bytes/s, block align, bits
_extensible_fields = struct.Struct("<2xH4x16s").unpack_from  # (cbSize), valid bits, (channel mask), subformat


def pcm16_layout(buf: bytes | memoryview, sample_rate: int, channels: int) -> tuple[int, int] | None:
    """Where a 16-bit PCM WAV's samples lie in its bytes.

    Args:
        buf: the whole file.
        sample_rate, channels: what the file must have (anything else is declined).

    Returns:
        ``(offset, frames)``: the samples are ``frames * channels`` little-endian int16 values
        (interleaved) from byte ``offset`` on; None where the file is not such a WAV or is one of
        the cases the module docstring lists as declined.
    """
    n = len(buf)
    if n < 12 or buf[0:4] != b"RIFF" or buf[8:12] != b"WAVE":
        return None
    # wave reads nothing past the RIFF chunk's stated end, libsndfile reads to the file's: a file is
    # accepted only where the two see the same samples
    riff_end = 8 + _chunk_header(buf, 0)[1]
    pos, have_fmt = 12, False
    while pos + 8 <= n:
        cid, size = _chunk_header(buf, pos)
        body = pos + 8
        if cid == b"data":
            if not have_fmt or (size & 1 and size < n - body):  # odd, with its pad byte: see above
                return None
            present = min(size, n - body)  # truncated: the whole frames present
            if body + present > riff_end:
                return None
            return body, present // (2 * channels)
        pos = body + size + (size & 1)  # the next chunk, after the pad byte of an odd-sized one
        if pos > n:  # a chunk running past the end: wave raises, libsndfile stops walking
            return None
        if cid == b"fmt ":
            if have_fmt or not _is_pcm16_fmt(buf, body, size, sample_rate, channels):
                return None
            have_fmt = True
        elif cid.translate(None, _PRINTABLE):  # a character left that is not printable ASCII
            return None
    return None


def _is_pcm16_fmt(buf: bytes | memoryview, body: int, size: int, sample_rate: int, channels: int) -> bool:
    """A ``fmt `` chunk (at ``body``, ``size`` bytes) of 16-bit PCM at this rate and channel count."""
    if size < 16:  # (and unpacking past the buffer's end would raise)
        return False
    tag, file_channels, rate, _, block_align, bits = _fmt_fields(buf, body)
    if (file_channels, rate, bits, block_align) != (channels, sample_rate, 16, 2 * channels):
        return False
    if tag == WAVE_FORMAT_PCM:
        return True
    if tag != WAVE_FORMAT_EXTENSIBLE or size < 40:
        return False
    # both decoders read the extension whatever its stated size (cbSize) when the chunk holds it
    valid_bits, subformat = _extensible_fields(buf, body + 16)
    return valid_bits == 16 and subformat == PCM_SUBFORMAT


def read_pcm16_wav(path: str, size: int | None, sample_rate: int, channels: int,
                   into: memoryview | None = None) -> np.ndarray | None:
    """(frames, channels) int16 samples of a 16-bit PCM WAV at this rate and channel count, else None.

    One ``os.open``, one read of the whole file, one ``os.close``; the result is a view into the bytes
    read, no copy. ``size``: the file's size in bytes when known (e.g. from a listing; one byte more
    is asked for, so a file that grew since is declined rather than cut short), None to ask the
    file. ``into``: a writable buffer of at least ``size + 1`` bytes to read into (reused by the
    caller, so no memory is allocated per file; the result then lives there); None reads into new
    bytes. None is returned for anything :func:`pcm16_layout` declines and for any OS error: the
    caller's general reader then handles, or reports, the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if size is None:
            size = os.fstat(fd).st_size
        if into is None:
            buf = os.read(fd, size + 1)
            got = len(buf)
        else:
            buf = into[: size + 1]
            got = os.readv(fd, [buf])
    except OSError:
        return None
    finally:
        os.close(fd)
    if got != size:  # changed since listed, or larger than one read returns (2 GiB)
        return None
    layout = pcm16_layout(buf[:size] if into is not None else buf, sample_rate, channels)
    if layout is None:
        return None
    offset, frames = layout
    return np.frombuffer(buf, dtype="<i2", count=frames * channels, offset=offset).reshape(frames, channels)
