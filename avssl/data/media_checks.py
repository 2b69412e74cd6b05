"""Shared by the media readers: decoding limits, file checks, error mapping, time bases.

Every problem with a media file surfaces as one :class:`~avssl.errors.MediaError` whose reason
is short enough for a one-line ``error: FILE: reason`` message.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from avssl.errors import MediaError

# Decoding limits: a crafted or mistaken file must not exhaust memory.
MAX_PIXELS = 4096 * 4096  # width * height of a video stream, an image or a requested size
MAX_SAMPLE_RATE = 384_000  # Hz, of a file or of a requested rate
MAX_CHANNELS = 64
MAX_FPS = 1000.0  # requested output frame rate
MAX_WINDOW_S = 600.0  # longest window a single call decodes
MAX_OUTPUT_BYTES = 4 * 2**30  # size of one returned frames tensor

# Streams ending this much (or one frame) short of a window are padded instead of rejected.
TOLERANCE_S = 0.1

# Stills, decoded by FFmpeg (an animated PNG is its first picture). Not GIF, which FFmpeg reads
# as a video (and whose decoder conceals a file cut short), nor TIFF, whose decoder garbles the
# JPEG-compressed strips libtiff writes: convert those to PNG.
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
SOUNDFILE_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})

# What the decoding libraries raise for bad input (soundfile's errors are RuntimeErrors).
DECODE_ERRORS = (av.FFmpegError, RuntimeError, OSError, ValueError, EOFError)


def describe(err: BaseException) -> str:
    """A short description of a library error, without the file name it may repeat."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())[:200]


def broken_link(path: Path) -> str | None:
    """Why ``path`` is a symlink that leads to nothing (``is a symlink loop``, or ``no such file
    (a broken link to TARGET)``: a folder of links whose target storage went), else None."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop"
    return f"no such file (a broken link to {os.readlink(path)})"


def check_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a :class:`Path` if it is a non-empty regular file, else raise."""
    p = Path(path)
    try:
        if not p.exists():
            raise MediaError(p, broken_link(p) or "no such file")
        if not p.is_file():
            raise MediaError(p, "not a regular file")
        if p.stat().st_size == 0:
            raise MediaError(p, "empty file")
    except OSError as err:
        raise MediaError(p, f"cannot access ({describe(err)})") from None
    return p


@contextmanager
def guard(path: str | os.PathLike, prefix: str = "truncated or corrupt") -> Iterator[None]:
    """Turn decoding-library exceptions raised inside the block into one :class:`MediaError`.

    Args:
        path: the file the error names.
        prefix: start of the error's reason, followed by the library error's description.
    """
    try:
        yield
    except MediaError:
        raise
    except DECODE_ERRORS as err:
        raise MediaError(path, f"{prefix}: {describe(err)}") from None


def open_container(path: Path) -> av.container.InputContainer:
    """Open a file with PyAV, reporting failure as "not a media file or corrupt"."""
    try:
        return av.open(str(path), mode="r")
    except DECODE_ERRORS as err:
        raise MediaError(
            path, f"not a media file, or truncated or corrupt ({describe(err)})"
        ) from None


def frame_period_s(stream) -> float | None:
    """Seconds per frame of a video stream, from its average (else guessed) rate; None when it
    declares neither (callers then assume :data:`DEFAULT_FRAME_S`, or nothing)."""
    rate = stream.average_rate or stream.guessed_rate
    return 1.0 / float(rate) if rate else None


DEFAULT_FRAME_S = 0.04  # one frame at 25 fps


def quarter_turns(frame) -> int:
    """Counterclockwise quarter turns that show a decoded video frame upright: its display
    matrix (a phone's portrait video is stored landscape with a rotation of -90 degrees)."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def upright(image: np.ndarray, turns: int) -> np.ndarray:
    """``image`` ``[H, W, C]`` turned by :func:`quarter_turns` (unchanged for 0)."""
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def frame_time_slack_s(frame_s: float) -> float:
    """How far past ``t`` a frame's time may be and still count as showing at ``t``: 1 ms
    (timestamps rounded to milliseconds must still select their frame), at most a quarter frame.
    The decoder's reader and the preloaded clips' :func:`~avssl.data.clip_windows.frame_at` share
    it, so both pick the same frame."""
    return min(1e-3, frame_s / 4)


def secs(value: float, decimals: int = 2) -> str:
    """A time (s) for a message: with ``decimals`` decimals, or in ``:g`` form when that would
    take more than 9 digits before the point (``--start 1e308`` is ``1e+308``, not 309 digits).

    Args:
        value: seconds, as given (finite or not).
        decimals: decimals of an ordinary value.
    """
    return f"{value:.{decimals}f}" if abs(value) < 1e9 else f"{value:g}"


def check_window(path, start: float, duration: float, rate: float, what: str) -> None:
    """Validate a requested window and output rate (``what``: "fps" or "sample rate").

    Args:
        path: the file named in the error.
        start: window start in seconds (finite, >= 0).
        duration: window length in seconds (finite, > 0, at most ``MAX_WINDOW_S``).
        rate: requested output rate: frames per second (at most ``MAX_FPS``) or Hz (at most
            ``MAX_SAMPLE_RATE``).
        what: "fps" or "sample rate", which also picks the limit of ``rate``.
    """
    limit = MAX_FPS if what == "fps" else MAX_SAMPLE_RATE
    if not (math.isfinite(start) and start >= 0):
        raise MediaError(path, f"invalid window start {start} s (must be >= 0)")
    if not (math.isfinite(duration) and duration > 0):
        raise MediaError(path, f"invalid window duration {duration} s (must be > 0)")
    if duration > MAX_WINDOW_S:
        raise MediaError(
            path, f"window of {secs(duration, 1)} s exceeds the {MAX_WINDOW_S:g} s limit"
        )
    if not (math.isfinite(rate) and 0 < rate <= limit):
        raise MediaError(path, f"invalid {what} {rate} (must be in (0, {limit:g}])")


def check_pixels(path, width: int, height: int, what: str = "frame size") -> None:
    """Reject frame sizes above :data:`MAX_PIXELS` (or non-positive ones).

    Args:
        path: the file named in the error.
        width: frame width in pixels.
        height: frame height in pixels.
        what: which size this is, for the error ("video size", "output size", ...).
    """
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise MediaError(path, f"{what} {width}x{height} outside the limit (1..{MAX_PIXELS} px)")


def check_rate(path, sample_rate: int, channels: int) -> None:
    """Reject audio streams with absurd sample rates or channel counts (0: not yet known).

    Args:
        path: the file named in the error.
        sample_rate: the stream's rate in Hz (at most ``MAX_SAMPLE_RATE``).
        channels: the stream's channel count (at most ``MAX_CHANNELS``).
    """
    if not 0 <= sample_rate <= MAX_SAMPLE_RATE:
        raise MediaError(path, f"audio sample rate {sample_rate} Hz outside (0, {MAX_SAMPLE_RATE}]")
    if not 0 <= channels <= MAX_CHANNELS:
        raise MediaError(path, f"{channels} audio channels outside (0, {MAX_CHANNELS}]")


def check_coverage(
    path,
    what: str,
    start: float,
    duration: float,
    end: float | None,
    declared: float | None,
    tolerance: float = TOLERANCE_S,
) -> None:
    """Raise unless a stream that ended at ``end`` s covers ``[start, start + duration)``.

    Args:
        path: the file named in the error.
        what: "audio" or "video".
        start: window start in seconds.
        duration: window length in seconds.
        end: where the decoded data ended (s), ``None`` if nothing was decoded.
        declared: the duration the file declares, to tell truncation from a short file
            (``None``: unknown, no truncation check).
        tolerance: shortfall (s) that is padded rather than rejected.
    """
    stop = start + duration
    window = f"window [{secs(start)}, {secs(stop)}) s"
    if end is None:
        where = f" in the {window}" if start > 0 else ""  # the file's start may have decoded
        raise MediaError(path, f"truncated or corrupt: no {what} could be decoded{where}")
    if declared is not None and end < declared - max(tolerance, 0.5) and stop > end + tolerance:
        raise MediaError(
            path,
            f"truncated or corrupt: {what} ends at {secs(end)} s, the file declares "
            f"{secs(declared)} s",
        )
    if start >= end:
        raise MediaError(path, f"{window} is beyond the end (duration {secs(end)} s)")
    if stop > end + tolerance:
        raise MediaError(path, f"{what} is shorter than the {window} (it ends at {secs(end)} s)")


def decoder_of(path, stream):
    """The codec context of an audio or video ``stream`` of the file ``path``.

    PyAV gives none to a stream FFmpeg has no decoder for: an unknown codec tag, or a header
    claiming a format that does not exist (a WAV of 16-bit "float" samples).

    Args:
        path: the file named in the error.
        stream: an audio or video stream of the file, opened with PyAV.

    Returns:
        ``stream.codec_context``.

    Raises:
        MediaError: the stream has no codec context ("no decodable audio stream").
    """
    if stream.codec_context is None:
        raise MediaError(path, f"no decodable {stream.type} stream (unknown or unsupported codec)")
    return stream.codec_context
