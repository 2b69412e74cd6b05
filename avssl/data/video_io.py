"""Video decoding: the frames showing at regular times in a window of a video or still image.

Seeks to the keyframe before a window and decodes forward, never a long file from its start.
Frame times come from timestamps, so variable frame rates work.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from avssl.data.frame_fit import SQUASH, centre_crop, check_fit, cover_size
from avssl.data.frame_walk import Overshoot, decoded_frames, seek_targets
from avssl.data.media_checks import (
    DEFAULT_FRAME_S,
    MAX_OUTPUT_BYTES,
    TOLERANCE_S,
    check_coverage,
    check_file,
    check_pixels,
    check_window,
    decoder_of,
    frame_period_s,
    frame_time_slack_s,
    guard,
    open_container,
    quarter_turns,
    secs,
    upright,
)
from avssl.data.stream_kinds import decode_strictly, is_image, video_stream
from avssl.data.stream_times import demuxed_end_s, origin_s, stream_end_s
from avssl.errors import MediaError


def read_frames(
    path: str | os.PathLike,
    start: float,
    duration: float,
    fps: float,
    size: int | tuple[int, int] | None = None,
    fit: str = SQUASH,
) -> torch.Tensor:
    """Decode the frames showing at ``start + i / fps`` for ``i < round(duration * fps)``.

    Frame ``i`` is the last video frame whose timestamp is at or before its time (variable
    frame rates work). A stream ending up to ``TOLERANCE_S`` (or one frame) short of the window
    repeats its last frame, also for a window lying wholly in that padding (as a longer window
    decoded from before the end pads it); a still image is repeated ``T`` times.

    Args:
        path: a video file or a still image (png, jpg, jpeg, bmp, webp; an animated PNG is
            its first picture).
        start: window start in seconds.
        duration: window length in seconds.
        fps: output frame rate.
        size: ``None`` (native), ``S`` (``S x S``) or ``(H, W)``.
        fit: ``squash``: frames are resized without cropping, so normalised box coordinates
            stay valid; ``crop`` (needs ``size``): the picture as shown is scaled, its aspect
            ratio kept, to cover ``size`` and its centre kept (:mod:`avssl.data.frame_fit`).

    Returns:
        uint8 ``[T, H, W, 3]`` RGB frames, ``T = round(duration * fps)``.

    Raises:
        MediaError: missing/corrupt file, no video stream, or a window beyond the video.
    """
    if size is not None and not isinstance(size, int | np.integer) and len(size) != 2:
        raise ValueError(f"size must be None, an int or (H, W), not {size!r}")
    check_fit(fit, size)
    p = check_file(path)
    check_window(p, start, duration, fps, "fps")
    n = round(duration * fps)
    if n < 1:
        raise MediaError(p, f"a {duration} s window at {fps} fps holds no frame")
    container = open_container(p)
    with container, guard(p):
        stream = video_stream(container)
        if stream is None:
            raise MediaError(p, "no video stream")
        cc = decoder_of(p, stream)
        if cc.width and cc.height:
            check_pixels(p, cc.width, cc.height, "video size")
            _out_size(p, size, cc.width, cc.height, n)
        if is_image(container):
            decode_strictly(stream, p)
            frame = next(container.decode(stream), None)
            if frame is None:
                raise MediaError(p, "truncated or corrupt: no image could be decoded")
            turns = quarter_turns(frame)
            hw = _out_size(p, size, *shown_wh(frame), n)
            image = convert_frame(p, frame, hw, turns, scaled_size(p, stream, frame, hw, fit))
            return torch.from_numpy(np.broadcast_to(image, (n, *image.shape)).copy())
        declared = stream_end_s(container, stream)
        if declared is not None and start >= declared:  # fail before decoding the last GOP
            # unless packets go on past it (an MP4 muxer can sum a variable frame rate short)
            found = demuxed_end_s(container, stream, declared)
            declared = declared if found is None else max(declared, found)
            pad = max(TOLERANCE_S, frame_period_s(stream) or DEFAULT_FRAME_S)
            if start >= declared and start + duration > declared + pad:
                check_coverage(p, "video", start, duration, declared, None)
        stream.thread_type = "AUTO"
        window = (start, duration, fps, size, fit, declared)
        for seek_at in seek_targets(start):  # MPEG-TS lands after the time: seek earlier
            try:
                return _decode_window(p, container, stream, *window, seek_at=seek_at)
            except Overshoot:
                pass
    # Every seek landed after the window, or where nothing decodes (MPEG-TS seeks by byte, onto a
    # packet that is no keyframe, even when asked for time 0): decode from the first packet of
    # a fresh demuxer instead.
    container = open_container(p)
    with container, guard(p):
        stream = video_stream(container)
        stream.thread_type = "AUTO"
        return _decode_window(p, container, stream, *window, seek_at=None)


def _decode_window(
    p, container, stream, start, duration, fps, size, fit, declared, seek_at
) -> torch.Tensor:
    """Decode forward (from a seek to ``seek_at`` unless None) and pick the window's frames.

    Raises:
        Overshoot: after a seek, the first frame decoded is past the window, or none is.
    """
    times = start + np.arange(round(duration * fps)) / fps
    frame_dur = frame_period_s(stream) or DEFAULT_FRAME_S
    eps = frame_time_slack_s(frame_dur)
    n = len(times)
    out, i, prev, prev_t, prev_img, hw, turns = None, 0, None, None, None, None, 0
    for frame, t in decoded_frames(container, stream, times[0], seek_at):
        if prev is None:
            check_start(p, t, start, frame_dur)
            turns = quarter_turns(frame)  # the picture as shown (a phone's portrait video)
            hw = _out_size(p, size, *shown_wh(frame), n)
            out = np.empty((n, *hw, 3), dtype=np.uint8)  # numpy: torch copies contend for threads
        while i < n and prev is not None and times[i] + eps < t:
            if prev_img is None:
                # crop: each frame's own size (a stream may change it, as squash allows)
                prev_img = convert_frame(p, prev, hw, turns, scaled_size(p, stream, prev, hw, fit))
            out[i] = prev_img
            i += 1
        if i >= n:
            break
        prev, prev_t, prev_img = frame, t, None
    if i < n:  # the stream ended inside the window: its last frame pads up to `tolerance`
        end = None if prev is None else prev_t + frame_dur
        tolerance = max(TOLERANCE_S, frame_dur)
        if end is None or start + duration > end + tolerance:  # else padding, even from start
            check_coverage(p, "video", start, duration, end, declared, tolerance=tolerance)
        out[i:] = convert_frame(p, prev, hw, turns, scaled_size(p, stream, prev, hw, fit))
    return torch.from_numpy(out)


def check_start(p, first: float, start: float, frame_s: float) -> None:
    """Raise unless a video whose first frame shows at ``first`` s covers a window from
    ``start`` s: its first frame is repeated before it for up to ``TOLERANCE_S`` or one frame,
    as the last frame is after the end.

    Args:
        p: the file named in the error.
        first: time (s) of the video's first frame.
        start: window start (s).
        frame_s: the video's frame period (s).

    Raises:
        MediaError: the video track starts later than that (its sound may start earlier).
    """
    if first > start + max(TOLERANCE_S, frame_s):
        raise MediaError(
            p, f"video starts at {secs(first)} s, after the window start {secs(start)} s"
        )


def first_frame_s(path: str | os.PathLike) -> tuple[float, float] | None:
    """When a video's first frame shows, from its headers: what :func:`check_start` checks.

    Args:
        path: a video file or a still image.

    Returns:
        ``(first, frame_s)``: the video track's declared start (s from the container's start)
        and its frame period; ``None`` for a still image or a track declaring no start.

    Raises:
        MediaError: missing or unreadable file, or no video stream.
    """
    with opened_video(path) as (p, container, stream):
        if is_image(container) or stream.start_time is None or not stream.time_base:
            return None
        first = float(stream.start_time * stream.time_base) - origin_s(container)
        return first, frame_period_s(stream) or DEFAULT_FRAME_S


@contextmanager
def opened_video(path: str | os.PathLike) -> Iterator[tuple[Path, object, object]]:
    """``(path, container, stream)``: a file opened with PyAV and its first video stream; errors
    of the decoding library inside the block become one :class:`MediaError` (``guard``).

    Raises:
        MediaError: missing or unreadable file, or no video stream.
    """
    p = check_file(path)
    container = open_container(p)
    with container, guard(p):
        stream = video_stream(container)
        if stream is None:
            raise MediaError(p, "no video stream")
        yield p, container, stream


def _out_size(p, size, width: int, height: int, n: int) -> tuple[int, int]:
    """Output ``(H, W)`` for ``size`` and a native ``width x height``; checks the limits."""
    if size is None:
        h, w = height, width
    elif isinstance(size, int | np.integer):
        h = w = int(size)
    else:
        h, w = (int(x) for x in size)
    check_pixels(p, w, h, "output size")
    if n * h * w * 3 > MAX_OUTPUT_BYTES:
        raise MediaError(p, f"{n} frames of {w}x{h} exceed the {MAX_OUTPUT_BYTES >> 30} GiB limit")
    return h, w


_local = threading.local()


def shown_wh(frame) -> tuple[int, int]:
    """``(width, height)`` of a decoded frame as shown (turned upright)."""
    if quarter_turns(frame) % 2:
        return frame.height, frame.width
    return frame.width, frame.height


def shown_sar(stream):
    """A video stream's sample aspect ratio as players show it (FFmpeg's guess): the
    container's when it declares one (an MP4 ``pasp`` box: a stream copied with another
    aspect), else the codec's; ``None`` or 0 for square pixels."""
    return getattr(stream, "sample_aspect_ratio", None) or stream.codec_context.sample_aspect_ratio


def scaled_size(p, stream, frame, hw: tuple[int, int], fit: str) -> tuple[int, int] | None:
    """``(H, W)`` a frame of ``stream`` is scaled to before its centre ``hw`` is kept, for
    ``fit`` ``crop`` (:func:`~avssl.data.frame_fit.cover_size`: the picture as shown, its
    sample aspect ratio and rotation applied); ``None`` for ``squash``.

    Raises:
        MediaError: that size is beyond the pixel limit (a picture of extreme aspect ratio).
    """
    if fit == SQUASH:
        return None
    scaled = cover_size(shown_wh(frame), shown_sar(stream), quarter_turns(frame), hw)
    check_pixels(p, scaled[1], scaled[0], "scaled size")
    return scaled


def convert_frame(
    p, frame, hw: tuple[int, int], turns: int = 0, scaled: tuple[int, int] | None = None
) -> np.ndarray:
    """One decoded frame as uint8 ``[H, W, 3]`` RGB at size ``hw``, turned upright by ``turns``
    (:func:`~avssl.data.media_checks.quarter_turns`); with ``scaled`` (:func:`scaled_size`),
    scaled to that size and its centre ``hw`` kept."""
    check_pixels(p, frame.width, frame.height, "frame size")
    # A reformatter kept per thread reuses its scaler: ~8x faster than frame.reformat on small
    # frames, which builds a new one per call. One scaling thread (PyAV's default is one per
    # CPU, the same pixels): a DataLoader worker forked after the parent scaled a frame
    # inherits the scaler, and freeing its slice threads, which did not survive the fork,
    # waited for them forever.
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    to = scaled or hw
    h, w = (to[1], to[0]) if turns % 2 else to  # scaled as stored, then turned
    rgb = _local.reformatter.reformat(frame, width=w, height=h, format="rgb24", threads=1)
    image = upright(rgb.to_ndarray(), turns)
    return image if scaled is None else centre_crop(image, hw)
