"""Tell a cut-short WAV or AIFF file from its header, for ``--probe``.

libsndfile (and FFmpeg) count only the samples a file holds, so a download cut short reads as a
complete, shorter file. The header still says how long the sample data was meant to be: its
``data`` chunk (WAV: RIFF, RIFX, RF64, BW64) or ``SSND`` chunk (AIFF, AIFC) declares its size,
which :func:`truncation` compares with the bytes the file holds. Writers of streamed output,
which cannot seek back to fill the sizes in, leave them 0 or ``0xFFFFFFFF``: such a size (and
any header this module does not understand) is unknown, never a truncation. Only the header is
read, so the check costs a few small reads per file.
"""

from __future__ import annotations

import os
import struct

UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # sizes left unfilled by streaming writers
MAX_CHUNKS = 1000  # chunks walked before the sample data: a bound for crafted files
_WAVE_MAGIC = {b"RIFF": "<", b"RF64": "<", b"BW64": "<", b"RIFX": ">"}


def truncation(path: str | os.PathLike) -> str | None:
    """Why ``path`` is cut short, from its header; None if complete or not known.

    Args:
        path: any file; only WAV and AIFF headers are read, other files give None, as do
            files that cannot be opened (the decoders report those).

    Returns:
        A reason like ``"truncated: header declares 2.00 s, file holds 1.37 s"``, or None.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12:
                return None
            if head[:4] in _WAVE_MAGIC and head[8:12] == b"WAVE":
                found = _wave(f, _WAVE_MAGIC[head[:4]], size)
            elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                found = _aiff(f, size)
            else:
                return None
    except OSError:
        return None
    if found is None:
        return None
    offset, declared, frame_bytes, bytes_per_s = found
    held = max(0, size - offset)
    if declared - held < max(frame_bytes, 1) or bytes_per_s <= 0:
        return None
    return (
        f"truncated: header declares {declared / bytes_per_s:.2f} s, "
        f"file holds {held / bytes_per_s:.2f} s"
    )


def _chunks(f, order: str, size: int):
    """``(id, position of its data, declared size)`` of each chunk from the current offset."""
    pos = f.tell()
    for _ in range(MAX_CHUNKS):
        head = f.read(8)
        if len(head) < 8:
            return
        cid, length = head[:4], struct.unpack(order + "I", head[4:])[0]
        yield cid, pos + 8, length
        pos += 8 + length + (length & 1)  # chunks are padded to an even size
        if pos >= size:
            return
        f.seek(pos)


def _wave(f, order: str, size: int) -> tuple[int, int, float, float] | None:
    """``(data offset, declared data bytes, bytes of a block, bytes per second)`` of a WAV."""
    big_size = None  # RF64 / BW64: the real data size, from the ds64 chunk
    byte_rate = block = None
    for cid, pos, length in _chunks(f, order, size):
        if cid == b"ds64" and length >= 16:
            f.seek(pos)
            big_size = struct.unpack(order + "QQ", f.read(16))[1]
        elif cid == b"fmt " and length >= 14:
            f.seek(pos)
            byte_rate, block = struct.unpack(order + "8xIH", f.read(14))
        elif cid == b"data":
            if length == 0xFFFFFFFF and big_size not in (None, 0, 2**64 - 1):
                length = big_size
            if length in UNKNOWN_SIZES or byte_rate is None:
                return None
            return pos, length, block, byte_rate
    return None


def _aiff(f, size: int) -> tuple[int, int, float, float] | None:
    """``(sample data offset, declared bytes, bytes of a frame, bytes per second)``."""
    frames = rate = None
    for cid, pos, length in _chunks(f, ">", size):
        if cid == b"COMM" and length >= 18:
            f.seek(pos)
            frames, rate = _comm(f.read(18))
        elif cid == b"SSND":
            if length in UNKNOWN_SIZES or length < 8 or not frames or not rate:
                return None
            f.seek(pos)
            (skip,) = struct.unpack(">I", f.read(4))  # the SSND "offset" field
            declared = length - 8 - skip
            if declared <= 0:
                return None
            per_frame = declared / frames
            return pos + 8 + skip, declared, per_frame, per_frame * rate
    return None


def _comm(data: bytes) -> tuple[int, float]:
    """Sample frames and rate (Hz) of an AIFF ``COMM`` chunk (rate: an 80-bit extended float)."""
    frames = struct.unpack(">I", data[2:6])[0]
    exponent, mantissa = struct.unpack(">HQ", data[8:18])
    rate = mantissa * 2.0 ** ((exponent & 0x7FFF) - 16383 - 63) if exponent & 0x7FFF else 0.0
    return frames, rate
