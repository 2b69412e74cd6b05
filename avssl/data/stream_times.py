"""Where a file's streams start and end, in avssl's time: seconds from the container's start.

Containers disagree on what they declare: MP4 tracks carry their own durations, Matroska only
tags them, raw streams declare nothing, and a track's declared end can fall short of its last
packet. These helpers turn each into one answer the readers share.
"""

from __future__ import annotations

import math

from avssl.data.media_checks import DECODE_ERRORS, TOLERANCE_S

_AVFMT_NOTIMESTAMPS = 0x80  # libavformat's flag (PyAV exposes format flags as a bare int)


def origin_s(container) -> float:
    """Presentation time (s) that avssl calls 0: the container's start time."""
    start = container.start_time
    return 0.0 if start is None else start / 1e6


def seek_to(container, stream, seconds: float) -> None:
    """Seek ``stream`` to the keyframe at or before ``seconds``.

    Formats without timestamps (raw elementary streams) cannot seek: they decode from the start.

    Args:
        container: an open PyAV input container.
        stream: the stream of ``container`` to seek in.
        seconds: target time relative to :func:`origin_s`.
    """
    if container.format.flags & _AVFMT_NOTIMESTAMPS or not stream.time_base:
        return
    # a start past any real end (--start 1e308) seeks to the end rather than overflowing int64
    ts = int(min((seconds + origin_s(container)) / stream.time_base, 2**62))
    container.seek(ts, stream=stream, backward=True, any_frame=False)


def stream_end_s(container, stream) -> float | None:
    """Declared end (s, relative to :func:`origin_s`) of a stream, or of the container.

    Args:
        container: an open PyAV input container.
        stream: one of its streams; without a declared duration, the container's is used.

    Returns:
        The end in seconds, or ``None`` when neither the stream nor the container declares one.
    """
    tb = stream.time_base
    if stream.duration and tb:
        return float((stream.start_time or 0) * tb + stream.duration * tb) - origin_s(container)
    return container_duration_s(container)


def own_end_s(container, stream) -> float | None:
    """Declared end (s, relative to :func:`origin_s`) of a stream itself, not of the container.

    Args:
        container: an open PyAV input container.
        stream: one of its streams.

    Returns:
        The end from the stream's duration, else from the ``DURATION`` tag Matroska muxers
        write per track (``HH:MM:SS.fraction``, the track's last timestamp); ``None`` when the
        stream declares neither.
    """
    tb = stream.time_base
    if stream.duration and tb:
        return float((stream.start_time or 0) * tb + stream.duration * tb) - origin_s(container)
    tag = (stream.metadata or {}).get("DURATION", "")
    try:
        hours, minutes, seconds = tag.strip().split(":")
        end = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    return end - origin_s(container) if math.isfinite(end) and end > 0 else None


def demuxed_end_s(container, stream, near: float) -> float | None:
    """End (s, relative to :func:`origin_s`) of a stream's last packet, demuxed from ``near``.

    A track's declared duration can fall short of its last timestamp (an MP4 muxer sums packet
    durations that a variable frame rate made wrong), so a short track is checked this way.

    Args:
        container: an open PyAV input container.
        stream: one of its streams.
        near: where to start (s): demuxing goes from the keyframe before it to the file's end.

    Returns:
        The end in seconds, or ``None`` when no packet with a timestamp could be demuxed.
    """
    end = None
    try:
        seek_to(container, stream, max(0.0, near))
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = t if end is None else max(end, t)
    except DECODE_ERRORS:
        return None  # the declared end stands; decoding reports a damaged file
    return None if end is None else end - origin_s(container)


def container_duration_s(container) -> float | None:
    """Duration (s) the container declares, counted from :func:`origin_s`; ``None``: none.

    Matroska (and WebM) declare the segment's end time, counted from timestamp 0 rather than
    from the first timestamp, so a file whose timestamps start at T > 0 declares T too much.
    """
    if not container.duration:
        return None
    seconds = container.duration / 1e6
    if "matroska" in container.format.name:  # FFmpeg's demuxer name: "matroska,webm"
        seconds -= origin_s(container)
    return seconds


def checked_end_s(container, stream, duration: float | None) -> float | None:
    """A stream's declared end (else the file's ``duration``); one declared short of the file
    is checked against its packets (:func:`demuxed_end_s`)."""
    own = own_end_s(container, stream)
    if not own:
        return duration
    if duration is not None and own < duration - TOLERANCE_S:
        found = demuxed_end_s(container, stream, own)
        return own if found is None else max(own, found)
    return own


def file_duration_s(container, video) -> float | None:
    """Duration (s) of a file: the container's, else its longest declared stream, else found by
    demuxing (``video``, its video stream or None: a raw stream's frames are counted)."""
    if (declared := container_duration_s(container)) is not None:
        return declared
    ends = [e for s in container.streams if (e := stream_end_s(container, s)) is not None]
    if ends:
        return max(ends)
    end, n_video = None, 0
    for packet in container.demux():
        n_video += packet.stream is video and packet.size > 0
        if packet.pts is not None and packet.time_base is not None:
            t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = t if end is None else max(end, t)
    if end is None and n_video and (rate := video.average_rate or video.guessed_rate):
        return n_video / float(rate)  # raw streams without timestamps: count the frames
    return None if end is None else end - origin_s(container)
