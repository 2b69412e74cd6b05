"""Decoding one audio stream with PyAV to mono at its own rate, each sample placed in time.

Samples are counted from the first frame's timestamp; later timestamps are read only where the
track has a gap or an overlap (see :func:`decode_track`). Resampling to a model's rate and
cutting windows are :mod:`avssl.data.audio_io`'s.
"""

from __future__ import annotations

import math

import av
import numpy as np

from avssl.data.stream_times import origin_s, seek_to

# a frame timestamp further than this from the samples counted so far marks a gap (filled with
# silence) or an overlap (dropped) in the track; WebM rounds its timestamps to 1 ms
GAP_S = 0.01


def decode_track(
    container, stream, lo: float, hi: float, rate: int, seek: bool, keep_from: float = 0.0
):
    """Decode ``stream`` from about ``lo`` (by a seek, else from its start) to ``hi`` s as mono
    at ``rate`` (the stream's own rate: resampling is left to the caller, which puts it on the
    output grid).

    Samples that end before ``keep_from`` s are dropped as they come, so a window late in a
    track decoded from its start needs the window's memory only. Their times are counted from
    the first frame's, as a decode that kept them would give; later frames' timestamps are read
    only where two in a row depart from that count by the same amount, more than :data:`GAP_S`
    (WebM's are rounded to milliseconds, and a Vorbis frame's alone can be 10 ms off): a gap in
    the track (packets lost in a recording or a download) is then filled with silence, or an
    overlap dropped, before the first of them, so the sound after it stays where its
    timestamps put it, as a decode that seeks past the gap places it.

    Returns:
        ``(mono [n] float32, time of mono[0] or None if nothing decoded, reached hi)``.
    """
    origin = origin_s(container)
    if seek:
        seek_to(container, stream, lo)
    resampler = av.AudioResampler(format="fltp", rate=rate)  # keeps the channel layout
    chunks, n, t0, skip = [], 0, None, 0

    def take(count: int, samples) -> None:
        """Count ``count`` samples; keep ``samples()`` (made only if kept) from the window."""
        nonlocal t0, n, skip
        first = min(skip, count)  # an overlap's samples, already counted: dropped
        skip, count = skip - first, count - first
        if not count:
            return
        if not chunks and t0 + (n + count) / rate < keep_from:
            n += count  # before the window: counted, not kept
            return
        if not chunks:
            t0, n = t0 + n / rate, 0
        chunks.append(samples()[first:])
        n += count

    def fill(k: int) -> None:
        """Silence for a gap of ``k`` samples where the count stands: its part before
        ``keep_from`` counted, not made, and none made past ``hi`` (a jump of hours in a
        transport stream's timestamps would otherwise allocate hours of zeros)."""
        nonlocal n
        if not chunks:
            before = min(k, max(0, int((keep_from - t0) * rate) - n))
            n, k = n + before, k - before
        k = min(k, max(0, math.ceil((hi - t0) * rate) - n))
        if k > 0:
            take(k, lambda: np.zeros(k, np.float32))

    held, pending = [], 0  # a frame whose stamp departs from the count, and by how much
    for frame in container.decode(stream):
        outs = [(o.samples, lambda o=o: o.to_ndarray().mean(axis=0, dtype=np.float32))
                for o in resampler.resample(frame)]  # fmt: skip
        off = 0  # samples: + a gap before the frame, - an overlap
        if t0 is None:
            t0 = (frame.time or 0.0) - origin
        elif frame.time is not None:
            off = round((frame.time - origin - t0) * rate) - n - sum(c for c, _ in held)
        if held:  # one frame's stamp can be off alone (Vorbis's block switches): the next one
            if abs(off - pending) <= GAP_S * rate / 2:  # ... shows the same gap: fill it
                if pending > 0:
                    fill(pending)
                skip, off = max(0, -pending), off - pending
            for count, samples in held:
                take(count, samples)
            held = []
        if abs(off) > GAP_S * rate:
            held, pending = outs, off
            continue
        for count, samples in outs:
            take(count, samples)
        if t0 + n / rate >= hi:
            break
    else:
        for count, samples in held:
            take(count, samples)
        if t0 is not None:
            for out in resampler.resample(None):
                take(out.samples, lambda o=out: o.to_ndarray().mean(axis=0, dtype=np.float32))
    if not chunks and t0 is not None:  # all before keep_from: nothing kept, ending where it ends
        t0, n = t0 + n / rate, 0
    mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return mono, t0, t0 is not None and t0 + n / rate >= hi
