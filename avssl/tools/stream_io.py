"""Streaming media reads for the tools: frames at many times in one decoding pass, and audio
windows that may run past either end of a file (zero-padded).

:func:`avssl.data.media.read_frames` seeks to one window; the tools instead walk a whole file
once (indexing every window of a video, rendering an overlay of every frame), so memory stays
bounded by the caller's chunk size and no group of pictures is decoded twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from avssl.data import media
from avssl.data.frame_walk import Overshoot, decoded_frames, seek_targets
from avssl.data.media import read_audio
from avssl.data.media_checks import (
    DEFAULT_FRAME_S,
    TOLERANCE_S,
    check_file,
    check_pixels,
    decoder_of,
    frame_period_s,
    frame_time_slack_s,
    guard,
    open_container,
    quarter_turns,
    upright,
)
from avssl.data.stream_kinds import decode_strictly, is_image, video_stream
from avssl.data.stream_times import checked_end_s
from avssl.data.video_io import convert_frame, opened_video, shown_wh
from avssl.errors import MediaError


def iter_frames_at(
    path: str | os.PathLike,
    times,
    size: tuple[int, int] | None = None,
    interpolation: str | None = None,
    asked: str | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frame showing at each of ``times`` (sorted, seconds), decoding the file once.

    A frame shows from its timestamp until the next frame's; times after the last frame get the
    last frame (the caller bounds ``times`` by the file's duration), or with ``asked`` only those
    within the padding :func:`~avssl.data.video_io.read_frames` allows past it.

    Args:
        path: a video file or a still image (an animated PNG: its first picture, at every
            time).
        times: ascending float times in seconds.
        size: ``(H, W)`` output size (resized by FFmpeg's scaler), or None for native; frames
            are shown upright (a stream's display rotation applied).
        interpolation: ``None`` resizes exactly as :func:`~avssl.data.video_io.read_frames`
            does, so frames for the model match training and evaluation; a PyAV interpolation
            name (e.g. ``"AREA"``) is for pictures only people look at.
        asked: what asked for the times (e.g. ``"--at"``): refuse a time after the last decodable
            frame's display time by more than that padding, naming it, instead of showing the
            last frame (a truncated file whose header declares a longer duration).

    Yields:
        uint8 ``[H, W, 3]`` RGB frames, one per time.

    Raises:
        MediaError: unreadable file, no video stream, not one frame decoded, or (with
            ``asked``) a time after the decodable video.
    """
    for (frame,) in iter_frame_views(path, times, [(size, interpolation)], asked):
        yield frame


def iter_frame_views(
    path: str | os.PathLike,
    times,
    views: list[tuple[tuple[int, int] | None, str | None]],
    asked: str | None = None,
) -> Iterator[tuple[np.ndarray, ...]]:
    """:func:`iter_frames_at` with each decoded frame resized several ways: a picture to look
    at and the model's input of the same frame, from one decoding pass.

    Args:
        path: a video file or a still image.
        times: ascending float times in seconds.
        views: ``(size, interpolation)`` pairs, each as :func:`iter_frames_at`'s arguments.
        asked: as :func:`iter_frames_at`'s.

    Yields:
        one uint8 ``[H, W, 3]`` frame per view, for each time.

    Raises:
        MediaError: as :func:`iter_frames_at`.
    """
    p = check_file(path)
    times = np.asarray(times, dtype=np.float64)
    # a late first time is reached by seeking to the keyframe before it, as read_frames does
    # (a thumbnail an hour into a film must not decode the hour before it), earlier again when a
    # seek lands after it (MPEG-TS seeks by byte), and from the start of a fresh demuxer last
    targets = seek_targets(float(times[0])) if len(times) else []
    for fresh in (False, True) if targets else (True,):
        container = open_container(p)
        with container, guard(p):
            stream = video_stream(container)
            if stream is None:
                raise MediaError(p, "no video stream")
            stream.thread_type = "AUTO"
            cc = decoder_of(p, stream)
            if cc.width and cc.height:  # the decoding limits of read_frames hold here too
                check_pixels(p, cc.width, cc.height, "video size")
            for size, _ in views:
                if size is not None:
                    check_pixels(p, size[1], size[0], "output size")
            still = is_image(container)
            if not fresh and still:
                continue  # a still image: one frame, nothing to seek
            if still:
                decode_strictly(stream, p)  # a JPEG cut short is refused, not shown half blank
            for seek_at in [None] if fresh else targets:
                convert, ask = _Views(p, views), None if still else asked
                at = np.zeros_like(times) if still else times  # an animated still: its first
                walk = _walk(p, container, stream, at, convert, seek_at, ask)
                try:
                    first = next(walk)
                except Overshoot:
                    continue
                except StopIteration:
                    return
                yield first
                yield from walk
                return


class _Views:
    """A decoded frame resized each way of ``views`` (see :func:`iter_frame_views`)."""

    def __init__(self, p, views):
        self.p, self.views = p, views
        self.scaler = VideoReformatter()  # one scaler for the whole pass (building one is costly)

    def view(self, frame, size, interpolation) -> np.ndarray:
        p = self.p
        turns = quarter_turns(frame)  # scaled as stored, then shown upright
        if interpolation is None:
            shown_w, shown_h = shown_wh(frame)
            return convert_frame(p, frame, size or (shown_h, shown_w), turns)
        check_pixels(p, frame.width, frame.height, "frame size")
        h, w = size if size is not None else (None, None)  # None: as stored
        sw, sh = (h, w) if turns % 2 else (w, h)
        # one scaling thread, as avssl.data.video_io scales (same pixels): a process forked
        # after a multi-threaded scaler ran inherits it and hangs freeing its threads
        rgb = self.scaler.reformat(
            frame, width=sw, height=sh, format="rgb24", interpolation=interpolation, threads=1
        )
        return upright(rgb.to_ndarray(), turns)

    def __call__(self, frame) -> tuple[np.ndarray, ...]:
        return tuple(self.view(frame, size, interp) for size, interp in self.views)


def _walk(
    p, container, stream, times, convert, seek_at, asked=None
) -> Iterator[tuple[np.ndarray, ...]]:
    """Decode forward (from a seek to ``seek_at`` unless None), yielding ``convert`` of the
    frame showing at each time. Raises :class:`Overshoot` before its first yield only, and
    with ``asked`` a :class:`MediaError` at a time past the decodable video (:func:`_past_end`).
    """
    frame_s = frame_period_s(stream) or DEFAULT_FRAME_S
    eps = frame_time_slack_s(frame_s)
    i, prev, prev_t, prev_img = 0, None, None, None
    first = times[0] if len(times) else 0.0
    for frame, t in decoded_frames(container, stream, first, seek_at):
        while i < len(times) and prev is not None and times[i] + eps < t:
            if prev_img is None:
                prev_img = convert(prev)
            yield prev_img
            i += 1
        if i >= len(times):
            return
        prev, prev_t, prev_img = frame, t, None
    if prev is None:
        raise MediaError(p, "truncated or corrupt: no video frame could be decoded")
    if asked is not None and i < len(times):
        _past_end(p, float(times[-1]), prev_t + frame_s, frame_s, asked)
    last = convert(prev)
    for _ in range(i, len(times)):
        yield last


def _past_end(p, time: float, end: float, frame_s: float, asked: str) -> None:
    """Refuse ``time`` (s) when it is after ``end``, the end of the last decodable frame's
    display time, by more than :func:`~avssl.data.video_io.read_frames` pads (``TOLERANCE_S`` or
    one frame): the file was cut short of the duration its header declares.

    Raises:
        MediaError: ``decodable video ends at E s, before ASKED T s (truncated?)``.
    """
    if time > end + max(TOLERANCE_S, frame_s):
        raise MediaError(
            p, f"decodable video ends at {end:.2f} s, before {asked} {time:g} s (truncated?)"
        )


def audio_end(path: str | os.PathLike, declared: float | None) -> float | None:
    """Where the sound of ``path`` ends (s): its audio stream's own end
    (:func:`avssl.data.media.audio_end`), at most ``declared``; ``declared`` when unknown.

    Raises:
        MediaError: unreadable, or no audio stream.
    """
    return _capped(media.audio_end(path), declared)


def video_end(path: str | os.PathLike, declared: float | None) -> float | None:
    """Where the picture of ``path`` ends (s): its video stream's own end (a video's picture can
    stop before its sound), at most ``declared``; ``declared`` when unknown or a still image.

    Raises:
        MediaError: unreadable, or no video stream.
    """
    with opened_video(path) as (p, container, stream):
        if is_image(container):
            return declared
        end = checked_end_s(container, stream, declared)
    return _capped(end, declared)


def _capped(end: float | None, declared: float | None) -> float | None:
    if end is None:
        return declared
    return end if declared is None else min(end, declared)


def read_audio_padded(
    path: str | os.PathLike, start: float, duration: float, sample_rate: int, end: float
) -> torch.Tensor:
    """Mono audio of ``[start, start + duration)`` where the parts outside ``[0, end)`` are zeros,
    and so is any part before the audio track's first sample (a track that starts late).

    Returns:
        float32 ``[round(duration * sample_rate)]``.
    """
    n = int(round(duration * sample_rate))
    out = torch.zeros(n)
    lo, hi = max(0.0, start), min(end, start + duration)
    if hi - lo >= 1.0 / sample_rate:
        wave = read_audio(path, lo, hi - lo, sample_rate, silent_before=True)
        offset = int(round((lo - start) * sample_rate))
        m = min(wave.shape[0], n - offset)
        out[offset : offset + m] = wave[:m]
    return out
