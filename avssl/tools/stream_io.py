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

from avssl.data.media import read_audio
from avssl.data.media_checks import (
    DEFAULT_FRAME_S,
    check_file,
    check_pixels,
    decoder_of,
    frame_period_s,
    guard,
    open_container,
    quarter_turns,
    upright,
)
from avssl.data.stream_times import origin_s, stream_end_s
from avssl.data.video_io import video_stream
from avssl.errors import MediaError


def iter_frames_at(
    path: str | os.PathLike, times, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Yield the frame showing at each of ``times`` (sorted, seconds), decoding the file once.

    A frame shows from its timestamp until the next frame's; times after the last frame get the
    last frame (the caller bounds ``times`` by the file's duration).

    Args:
        path: a video file or a still image.
        times: ascending float times in seconds.
        size: ``(H, W)`` output size (resized by FFmpeg's scaler), or None for native; frames
            are shown upright (a stream's display rotation applied).

    Yields:
        uint8 ``[H, W, 3]`` RGB frames, one per time.

    Raises:
        MediaError: unreadable file, no video stream, or not one frame decoded.
    """
    p = check_file(path)
    times = np.asarray(times, dtype=np.float64)
    container = open_container(p)
    with container, guard(p):
        stream = video_stream(container)
        if stream is None:
            raise MediaError(p, "no video stream")
        stream.thread_type = "AUTO"
        origin = origin_s(container)
        cc = decoder_of(p, stream)
        if cc.width and cc.height:  # the decoding limits of read_frames hold here too
            check_pixels(p, cc.width, cc.height, "video size")
        h, w = size if size is not None else (None, None)
        if size is not None:
            check_pixels(p, w, h, "output size")
        scaler = VideoReformatter()  # one scaler for the whole pass (building one is costly)

        def convert(frame) -> np.ndarray:
            check_pixels(p, frame.width, frame.height, "frame size")
            turns = quarter_turns(frame)  # scaled as stored, then shown upright
            sw, sh = (h, w) if turns % 2 else (w, h)
            rgb = scaler.reformat(frame, width=sw, height=sh, format="rgb24", interpolation="AREA")
            return upright(rgb.to_ndarray(), turns)

        frame_dur = frame_period_s(stream) or DEFAULT_FRAME_S
        i, prev, prev_img, t = 0, None, None, None
        for frame in container.decode(stream):
            if frame.time is not None:
                t = frame.time - origin
            else:  # a raw stream has no timestamps: its frames follow one another at its rate
                t = 0.0 if t is None else t + frame_dur
            while i < len(times) and prev is not None and times[i] + 1e-3 < t:
                if prev_img is None:
                    prev_img = convert(prev)
                yield prev_img
                i += 1
            if i >= len(times):
                return
            prev, prev_img = frame, None
        if prev is None:
            raise MediaError(p, "truncated or corrupt: no video frame could be decoded")
        last = convert(prev)
        for _ in range(i, len(times)):
            yield last


def audio_end(path: str | os.PathLike, declared: float | None) -> float | None:
    """Where the audio track of ``path`` ends (s): its stream's declared end, else ``declared``."""
    p = check_file(path)
    if p.suffix.lower() in (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"):
        return declared
    container = open_container(p)
    with container, guard(p):
        if not container.streams.audio:
            raise MediaError(p, "no audio stream")
        end = stream_end_s(container, container.streams.audio[0])
    if end is None:
        return declared
    return end if declared is None else min(end, declared)


def read_audio_padded(
    path: str | os.PathLike, start: float, duration: float, sample_rate: int, end: float
) -> torch.Tensor:
    """Mono audio of ``[start, start + duration)`` where the parts outside ``[0, end)`` are zeros.

    Returns:
        float32 ``[round(duration * sample_rate)]``.
    """
    n = int(round(duration * sample_rate))
    out = torch.zeros(n)
    lo, hi = max(0.0, start), min(end, start + duration)
    if hi - lo >= 1.0 / sample_rate:
        wave = read_audio(path, lo, hi - lo, sample_rate)
        offset = int(round((lo - start) * sample_rate))
        m = min(wave.shape[0], n - offset)
        out[offset : offset + m] = wave[:m]
    return out
