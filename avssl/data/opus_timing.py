"""Opus's timing after a seek, for :mod:`avssl.data.audio_io`.

FFmpeg drops Opus's codec delay at the start of a track and again after every seek, and its
decoder state converges slowly on tonal sound; a window reached by seeking is therefore decoded
from further back, and its first frame's time is put back on the track's 2.5-ms frame grid.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from avssl.data.media_checks import open_container
from avssl.data.stream_times import origin_s

# decoded before a window of an Opus track reached by seeking: a steady tone read 80 ms after a
# seek was still 19 % (of its RMS) off a decode from the start, 0.3 % at 200 ms
OPUS_PREROLL_S = 0.2
# Opus packets last whole multiples of 2.5 ms, so every frame lies on a 2.5-ms grid from the
# track's first frame. After a seek, WebM's millisecond timestamps, and FFmpeg dropping the codec
# delay once more, put the first frame's reported time up to 1 ms off that grid.
OPUS_GRID_S = 0.0025


def codec_delay_s(stream) -> float:
    """Seconds FFmpeg drops at the start of an Opus track and again after every seek (the
    codec delay), so the first frame after a seek starts that much after its packet."""
    cc = stream.codec_context
    return cc.delay / cc.sample_rate if cc.name == "opus" and cc.delay and cc.sample_rate else 0.0


def on_opus_grid(path, t0: float) -> float:
    """``t0`` (s), the time of an Opus frame decoded after a seek, put on :data:`OPUS_GRID_S`'s
    grid from the track's first frame as a decode from the start gives it."""
    stat = os.stat(path)
    anchor = _first_frame_s(str(path), stat.st_size, stat.st_mtime_ns)
    if anchor is None:
        return t0
    return anchor + round((t0 - anchor) / OPUS_GRID_S) * OPUS_GRID_S


@functools.lru_cache(maxsize=256)
def _first_frame_s(path: str, size: int, mtime_ns: int) -> float | None:
    """Time (s) of the first decoded frame of a file's audio track, from a fresh demuxer (a seek
    back to 0 would drop Opus's codec delay again); cached per file version, as every window of
    an Opus track read by seeking needs it."""
    with open_container(Path(path)) as container:
        first = next(container.decode(container.streams.audio[0]), None)
        return None if first is None or first.time is None else first.time - origin_s(container)
