"""Decoding video frames forward from a seek, with their times: what the window reader
(:func:`avssl.data.video_io.read_frames`) and the tools' streaming reader
(:func:`avssl.tools.stream_io.iter_frames_at`) share.

A seek goes to the keyframe at or before a time in most containers (MP4, Matroska, WebM), so
decoding from it reaches the time with at most one group of pictures decoded in vain. MPEG-TS
has no index: FFmpeg finds a time there by reading timestamps at byte offsets and lands on the
first packet it finds at or after the time, usually no keyframe, so the first frame it decodes
shows after the time asked for. Seeking again a little earlier (:data:`SEEK_BACK_S`) lands
before it; only when every rung overshoots is the file decoded from its start.
"""

from __future__ import annotations

from collections.abc import Iterator

from avssl.data.media_checks import DEFAULT_FRAME_S, frame_period_s, frame_time_slack_s
from avssl.data.stream_times import origin_s, seek_to

SEEK_BACK_S = (0.0, 1.0, 4.0, 16.0, 64.0)
"""How far before the first time wanted each seek goes, in turn (s). MPEG-TS overshoots by up to
one key interval (x264's default is 250 frames, 10 s at 25 fps; broadcasters use 0.5-2 s); the
geometric steps bound the frames decoded in vain to a few key intervals."""


class Overshoot(Exception):
    """After a seek, the first frame decoded shows after the first time wanted, or none decodes."""


def seek_targets(first: float) -> list[float]:
    """The times to seek to, in turn, before decoding from ``first`` s: ``first`` itself, then
    earlier by each rung of :data:`SEEK_BACK_S`, while the target is after the start (a seek to
    the start is no better than decoding from it, which the caller does last).

    Args:
        first: the first time wanted (s, relative to :func:`~avssl.data.stream_times.origin_s`).

    Returns:
        Ascending-distance targets, all ``> 0``; empty when ``first <= 0``.
    """
    return [first - back for back in SEEK_BACK_S if first - back > 0]


def decoded_frames(container, stream, first: float, seek_at: float | None) -> Iterator[tuple]:
    """Decode ``stream`` forward, from a seek to ``seek_at`` s unless it is None (then from where
    the demuxer stands), yielding each frame with the time it shows from.

    Times count from :func:`~avssl.data.stream_times.origin_s`; a raw stream without timestamps
    counts its frames at the stream's rate from 0.

    Args:
        container: an open PyAV input container.
        stream: its video stream to decode.
        first: the first time the caller wants (s); after a seek, a first frame later than it
            (by more than :func:`~avssl.data.media_checks.frame_time_slack_s`) is an overshoot.
        seek_at: where to seek first (s), or None.

    Yields:
        ``(frame, t)``: a decoded ``av.VideoFrame`` and its time (s).

    Raises:
        Overshoot: after a seek, before the first yield only.
    """
    origin = origin_s(container)
    frame_dur = frame_period_s(stream) or DEFAULT_FRAME_S
    if seek_at is not None:
        seek_to(container, stream, seek_at)
    t = None
    for frame in container.decode(stream):
        if frame.time is not None:
            shown = frame.time - origin
        else:  # no timestamps: frames follow one another at the stream's rate
            shown = 0.0 if t is None else t + frame_dur
        if t is None and seek_at is not None and shown > first + frame_time_slack_s(frame_dur):
            raise Overshoot
        t = shown
        yield frame, t
    if t is None and seek_at is not None:
        raise Overshoot
