"""Media decoding: describe a file, read a window of frames or audio, or a whole clip.

Times are seconds from the start of the container. Frames are decoded with PyAV (see
:mod:`avssl.data.video_io`), audio with soundfile or PyAV (see :mod:`avssl.data.audio_io`).
Still images are one-frame videos. Every failure is one :class:`~avssl.errors.MediaError`
naming the file; decoding limits are the constants of :mod:`avssl.data.media_checks`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import soundfile as sf
import torch

from avssl.data.audio_io import read_audio
from avssl.data.media_checks import (
    SOUNDFILE_EXTS,
    TOLERANCE_S,
    check_file,
    decoder_of,
    frame_period_s,
    guard,
    open_container,
    quarter_turns,
    secs,
)
from avssl.data.stream_kinds import is_image, video_stream
from avssl.data.stream_times import checked_end_s, file_duration_s, origin_s, stream_end_s
from avssl.data.video_io import read_frames, shown_sar
from avssl.errors import MediaError

__all__ = ["MediaInfo", "audio_end", "clip_end", "probe", "read_audio", "read_clip", "read_frames"]


@dataclass
class MediaInfo:
    """What avssl sees in a media file (``None``: unknown or not applicable).

    ``kind`` is "video", "image" or "audio"; ``n_frames`` is estimated from the duration and
    frame rate when the container does not store it.
    """

    path: str
    kind: str
    container: str | None = None
    duration: float | None = None
    has_video: bool = False
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    n_frames: int | None = None
    video_codec: str | None = None
    has_audio: bool = False
    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_codec: str | None = None

    def to_json(self) -> dict:
        """Every field, as a dict."""
        return asdict(self)


def probe(path: str | os.PathLike, shown: bool = False) -> MediaInfo:
    """Describe a media file without decoding it (a file of unknown duration is demuxed).

    Args:
        path: the media file.
        shown: give a video's ``width`` and ``height`` as shown, with its display rotation
            (a phone's portrait video is stored landscape) and pixel aspect ratio applied; the
            rotation is on decoded frames only, so this decodes the first frame.

    Raises:
        MediaError: missing, empty, not media, without any audio or video stream, or with one
            FFmpeg has no decoder for.
    """
    p = check_file(path)
    if p.suffix.lower() in SOUNDFILE_EXTS:
        try:
            info = sf.info(str(p))
        except (RuntimeError, TypeError, ValueError):
            info = None  # let FFmpeg try
        if info is not None:
            return MediaInfo(
                path=str(p),
                kind="audio",
                container=info.format.lower(),
                duration=info.frames / info.samplerate,
                has_audio=True,
                audio_rate=info.samplerate,
                audio_channels=info.channels,
                audio_codec=info.subtype.lower(),
            )
    container = open_container(p)
    with container, guard(p):
        video = video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(p, "no audio or video stream")
        vcc = decoder_of(p, video) if video is not None else None
        acc = decoder_of(p, audio) if audio is not None else None
        image = video is not None and is_image(container)
        duration = None if image else file_duration_s(container, video)
        fps = width = height = n_frames = None
        if video is not None:
            width, height = vcc.width or None, vcc.height or None
            rate = video.average_rate or video.guessed_rate
            fps = None if image or not rate else float(rate)
            end = stream_end_s(container, video) or duration
            n_frames = 1 if image else video.frames or (round(end * fps) if end and fps else None)
            if shown and (frame := next(container.decode(video), None)) is not None:
                sar = shown_sar(video) or 1  # non-square pixels, as shown
                width, height = round(frame.width * sar), frame.height
                width, height = (height, width) if quarter_turns(frame) % 2 else (width, height)
        return MediaInfo(
            path=str(p),
            kind="image" if image else "video" if video is not None else "audio",
            container=container.format.name,
            duration=duration,
            has_video=video is not None,
            fps=fps,
            width=width,
            height=height,
            n_frames=n_frames,
            video_codec=vcc.name if vcc is not None else None,
            has_audio=audio is not None,
            audio_rate=acc.sample_rate if acc is not None else None,
            audio_channels=acc.channels if acc is not None else None,
            audio_codec=acc.name if acc is not None else None,
        )


def read_clip(
    path: str | os.PathLike,
    fps: float,
    size: int | tuple[int, int] | None,
    sample_rate: int,
    audio_path: str | os.PathLike | None = None,
    start: float = 0.0,
    duration: float | None = None,
    fit: str = "squash",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole clip (or ``[start, start + duration)``) in one pass per stream.

    Args:
        path: a video or a still image.
        fps: output frame rate.
        size: as for :func:`read_frames`.
        sample_rate: output audio rate (Hz).
        audio_path: a separate audio file; by default the audio track of ``path``.
        start: clip start in seconds.
        duration: clip length in seconds; ``None`` reads to :func:`clip_end`, where the
            picture or the sound stops.
        fit: as for :func:`read_frames` (``squash`` or ``crop``).

    Returns:
        ``(frames, audio)``: uint8 ``[T, H, W, 3]`` with ``T = round(duration * fps)`` and
        float32 ``[N]`` mono with ``N = round(duration * sample_rate)``.

    Raises:
        MediaError: as for :func:`read_frames` and :func:`read_audio`.
    """
    apath = path if audio_path is None else audio_path
    if duration is None:
        end = clip_end(path, audio_path)
        if start >= end:
            raise MediaError(path, f"clip start {secs(start)} s is beyond the end ({secs(end)} s)")
        duration = end - start
    frames = read_frames(path, start, duration, fps, size, fit)
    return frames, read_audio(apath, start, duration, sample_rate)


def clip_end(
    path: str | os.PathLike,
    audio_path: str | os.PathLike | None = None,
    unknown: float | None = None,
) -> float:
    """End (s) of the span where both picture and sound of a clip exist (:func:`clip_bounds`)."""
    return clip_bounds(path, audio_path, unknown)[0]


def clip_bounds(
    path: str | os.PathLike,
    audio_path: str | os.PathLike | None = None,
    unknown: float | None = None,
) -> tuple[float, float | None]:
    """End (s) of the span where both the picture and the sound of a clip exist, and where its
    sound starts: the audio stream's declared start, from its file's start (``None``: not
    declared; a late one is refused by :func:`read_audio` for a window before it).

    That is the end of the shorter of the video and the audio stream, each declared per stream
    (a separate audio file is probed too); a still image lasts as long as the sound. Tracks of
    one container that end within what the decoders pad (``TOLERANCE_S``, or one frame for the
    video) of each other keep the container's end, as equal-length tracks always have.

    Args:
        path: a video or a still image.
        audio_path: a separate audio file; by default the audio track of ``path``.
        unknown: returned when neither stream's duration is known (raw streams); ``None``:
            that is an error.

    Raises:
        MediaError: no video stream, no audio stream or an empty one (named: the separate
            audio file, if any), or no stream's duration is known and ``unknown`` is None.
    """
    video = _tracks(path)
    audio = video if audio_path is None else _tracks(audio_path)
    if not video.has_video:
        raise MediaError(path, "no video stream")
    if not audio.has_audio or audio.audio_end == 0:  # a sound file of no samples: name it
        raise MediaError(audio_path or path, f"{'empty' if audio.has_audio else 'no'} audio stream")
    return _both_end(video, audio, path, audio_path is None, unknown), audio.audio_start


def _both_end(video: _Tracks, audio: _Tracks, path, same_file: bool, unknown) -> float:
    """:func:`clip_bounds`'s end."""
    v_end, a_end = None if video.image else video.video_end, audio.audio_end
    if v_end is None or a_end is None:
        if v_end is None and a_end is None:
            if unknown is not None:
                return unknown
            raise MediaError(path, "unknown duration: pass a duration")
        return a_end if v_end is None else v_end
    pad = max(TOLERANCE_S, video.frame_s) if v_end < a_end else TOLERANCE_S  # decoders pad it
    if same_file and abs(v_end - a_end) <= pad:
        longer = max(v_end, a_end)
        if video.duration is not None and video.duration <= longer + TOLERANCE_S:
            return video.duration  # exactly what probe() reports, as before
        return longer
    return min(v_end, a_end)


def audio_end(path: str | os.PathLike) -> float | None:
    """End (s) of a file's first audio stream: its own, not the container's (a video's audio
    can stop before its picture); the file's duration when the stream declares none, ``None``
    when neither does.

    Raises:
        MediaError: unreadable, or no audio stream.
    """
    tracks = _tracks(path)
    if not tracks.has_audio:
        raise MediaError(path, "no audio stream")
    return tracks.audio_end


def video_end(path: str | os.PathLike) -> float | None:
    """End (s) of a file's first video stream: its own, not the container's (its sound may go
    on after the last frame); ``None`` when unknown, or for a still image.

    Raises:
        MediaError: unreadable, or no video stream.
    """
    tracks = _tracks(path)
    if not tracks.has_video:
        raise MediaError(path, "no video stream")
    return None if tracks.image else tracks.video_end


@dataclass
class _Tracks:
    """Ends (s) of a file's first video and audio streams (``None``: absent or unknown)."""

    duration: float | None
    has_video: bool = False
    image: bool = False
    video_end: float | None = None
    frame_s: float = 0.0
    has_audio: bool = False
    audio_end: float | None = None
    audio_start: float | None = None  # declared, from the file's start


def _tracks(path: str | os.PathLike) -> _Tracks:
    """The per-stream ends of a file, each stream's own, else the file's duration."""
    p = check_file(path)
    if p.suffix.lower() in SOUNDFILE_EXTS:
        info = probe(p)
        if not info.has_video:
            return _Tracks(
                info.duration, has_audio=info.has_audio, audio_end=info.duration, audio_start=0.0
            )
    container = open_container(p)
    with container, guard(p):
        video = video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is not None and is_image(container):
            return _Tracks(None, has_video=True, image=True, has_audio=audio is not None)
        duration = file_duration_s(container, video)
        tracks = _Tracks(duration, has_video=video is not None, has_audio=audio is not None)
        if video is not None:
            tracks.video_end = checked_end_s(container, video, duration)
            tracks.frame_s = frame_period_s(video) or 0.0
        if audio is not None:
            tracks.audio_end = checked_end_s(container, audio, duration)
            if audio.start_time is not None and audio.time_base:
                tracks.audio_start = float(audio.start_time * audio.time_base) - origin_s(container)
        return tracks
