"""``avssl inspect FILE``: describe a media file and test-decode one window of it, and its end.

Prints one JSON object on one line: the :class:`~avssl.data.media.MediaInfo` fields,
``"decodable": true``, ``"window"`` (its start, duration, the shape of the decoded frames
and the number of audio samples) and ``"end_checked"``: the start of the latest of the streams'
last half seconds, each decoded from its stream's own end too (a download cut short keeps the
header that declares the whole length, and its first seconds decode; an Ogg file declares
none, so its cut is not seen), or null when the window reaches every end or none is known.
A WAV or AIFF file whose header declares more sample data than it holds is cut short too
(it decodes as a complete, shorter file): refused, as ``prepare.py --probe`` counts it.
A file avssl cannot use raises
:class:`~avssl.errors.MediaError`, which the ``avssl`` script prints as one
``error: FILE: reason`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys

from avssl.cli import ArgumentParser, dash_paths_last
from avssl.data.audio_header import truncation
from avssl.data.media import audio_end, probe, read_audio, read_frames, video_end
from avssl.data.media_checks import check_pixels, check_window
from avssl.errors import LateAudioError, MediaError


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="avssl inspect", description="Describe a media file and test-decode one window."
    )
    parser.add_argument("file", help="video, image or audio file")
    parser.add_argument("--start", type=float, default=0.0, help="window start in s (default 0)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="window length in s (default 1 s, or up to the end of a shorter file)",
    )
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    parser.add_argument("--size", type=int, default=None, help="square frame size (default native)")
    parser.add_argument(
        "--sample-rate", type=int, default=16000, help="audio rate in Hz (default 16000)"
    )
    return parser


END_S = 0.5  # the last seconds of each stream decoded besides the window
END_FPS = 4.0  # the rate the end of a video is read at when --fps is lower: at least a frame


def inspect_file(
    path: str,
    start: float = 0.0,
    duration: float | None = None,
    fps: float = 25.0,
    size: int | None = None,
    sample_rate: int = 16000,
) -> dict:
    """Probe ``path`` and decode one window of each of its streams, and the last half second of
    each stream (from the stream's own end: a video's sound may stop before its picture).

    Returns:
        The JSON-ready description printed by ``avssl inspect``; its ``end_checked`` is the
        start of the latest tail decoded, or None when the window reaches every end.

    Raises:
        MediaError: the file cannot be probed or the window or an end cannot be decoded.
    """
    info = probe(path, shown=True)
    if (cut := truncation(path)) is not None:  # it decodes as a complete, shorter file
        raise MediaError(path, cut)
    if duration is None:  # 1 s, or up to the end, but at least one frame
        duration = 1.0
        if info.kind != "image" and info.duration is not None and info.duration > start:
            duration = min(duration, info.duration - start)
        if info.has_video:
            duration = max(duration, 1.0 / fps)
    frames = audio = None
    late = None  # why training would skip this window, when the tools read it with silence
    if info.has_video:
        frames = list(read_frames(path, start, duration, fps, size).shape)
    if info.has_audio:
        try:
            audio = int(read_audio(path, start, duration, sample_rate).shape[0])
        except LateAudioError as err:
            late = f"{err.reason}: training skips such a window; index, query, embed and overlay "
            late += "read silence before the sound"
            audio = int(read_audio(path, start, duration, sample_rate, silent_before=True).shape[0])
    window = {"start": start, "duration": duration, "frames": frames, "audio_samples": audio}
    if late:
        window["note"] = late
    ends = []  # each stream's own end: a video's sound may stop before its picture
    if info.kind != "image":
        ends += [("video", video_end(path) or info.duration)] if info.has_video else []
        ends += [("audio", audio_end(path) or info.duration)] if info.has_audio else []
    tails = []
    for kind, end in ends:
        if end is None or end <= start + duration + 1e-3:
            continue  # unknown, or the window reaches it
        tails.append(tail := max(0.0, end - END_S))
        if kind == "video":
            read_frames(path, tail, end - tail, max(fps, END_FPS), 32)
        else:
            read_audio(path, tail, end - tail, sample_rate)
    tail = max(tails) if tails else None
    return {**info.to_json(), "decodable": True, "window": window, "end_checked": tail}


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a bad window, rate or size whatever streams the file has: ``--fps 0`` on a sound
    file, or ``--sample-rate 0`` on a picture, once printed a description as if it were fine.

    Raises:
        MediaError: naming the file, as the decoders refuse the same values.
    """
    duration = 1.0 if args.duration is None else args.duration
    check_window(args.file, args.start, duration, args.fps, "fps")
    check_window(args.file, args.start, duration, args.sample_rate, "sample rate")
    if args.size is not None:
        check_pixels(args.file, args.size, args.size, "output size")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``avssl inspect``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(dash_paths_last(parser, list(sys.argv[1:] if argv is None else argv)))
    check_flags(args)
    report = inspect_file(
        args.file, args.start, args.duration, args.fps, args.size, args.sample_rate
    )
    print(json.dumps(report), flush=True)  # into `| head` too: run_guarded ends it quietly
    return 0


if __name__ == "__main__":
    from avssl.cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
