"""Reading a frame late in a long video: seeking against decoding from the start.

A ``--minutes``-long 224x224, 25 fps H.264 video with a keyframe every 2 s is written in each
container (MP4, which seeks by time, and MPEG-TS, which seeks by byte and lands after the time)
and a 0.2-s window 10 s before its end is read with ``read_frames`` (training and evaluation)
and ``iter_frames_at`` (the tools' thumbnails and ``query --at``): as avssl reads it, and
decoded from the start (what a reader that cannot seek there does). Best of ``--repeats``.

usage: python benchmarks/late_frame.py [--minutes 10] [--repeats 3]

The last stdout line is one JSON object, e.g.
``{"mpegts": {"read_frames_s": 0.03, "read_frames_from_start_s": 3.7, ...}, "mp4": {...}}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import av
import numpy as np

from avssl.cli import ArgumentParser, int_at_least, positive_float
from avssl.data import video_io
from avssl.data.video_io import read_frames
from avssl.tools import stream_io
from avssl.tools.stream_io import iter_frames_at

FPS, SIZE, KEY_INTERVAL = 25, 224, 50


def make_video(path: Path, minutes: float, fmt: str | None) -> None:
    """A picture sliding sideways, one keyframe every ``KEY_INTERVAL`` frames."""
    base = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width = v.height = SIZE
        v.pix_fmt = "yuv420p"
        v.codec_context.gop_size = KEY_INTERVAL
        for i in range(round(minutes * 60 * FPS)):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")
            frame.pts = i
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times), 4)


def measure(path: Path, at: float, repeats: int) -> dict:
    """Best-of-``repeats`` seconds to read the 0.2-s window at ``at`` (s) of ``path`` with
    ``read_frames`` and ``iter_frames_at``, seeking and (seek targets removed) decoding from the
    start, and whether both ways give the same frames."""

    def window():
        return read_frames(path, at, 0.2, FPS)

    def thumbnail():
        return next(iter_frames_at(path, [at], (SIZE, SIZE)))

    result = {
        "read_frames_s": _best(window, repeats),
        "iter_frames_at_s": _best(thumbnail, repeats),
    }
    seeking = (window().numpy(), thumbnail())
    # no seek target: both readers go straight to decoding from the first packet
    with (
        mock.patch.object(video_io, "seek_targets", lambda first: []),
        mock.patch.object(stream_io, "seek_targets", lambda first: []),
    ):
        result["read_frames_from_start_s"] = _best(window, repeats)
        result["iter_frames_at_from_start_s"] = _best(thumbnail, repeats)
        same = np.array_equal(window().numpy(), seeking[0])
        same = same and np.array_equal(thumbnail(), seeking[1])
    result["same_frames"] = bool(same)
    return result


MIN_MINUTES, MAX_MINUTES = 0.01, 600.0  # 0.6 s holds the 0.2-s window; 10 h is 900,000 frames


def _minutes(text: str) -> float:
    """An argparse ``type``: the videos' length in minutes, within ``[MIN_MINUTES, MAX_MINUTES]``
    (shorter ones failed naming the temporary video, not the flag)."""
    value = positive_float(text)
    if not MIN_MINUTES <= value <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(
            f"must be in [{MIN_MINUTES:g}, {MAX_MINUTES:g}], got {text}"
        )
    return value


def main(argv=None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/late_frame.py", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=_minutes, default=10.0, help="length of the videos")
    p.add_argument(
        "--repeats", type=int_at_least(1, 1000), default=3, help="timed reads (best is kept)"
    )
    args = p.parse_args(argv)
    at = max(0.0, args.minutes * 60 - 10)
    result = {"at_s": at}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fmt in (("mpegts", "mpegts"), ("mp4", None)):
            path = Path(tmp) / f"long.{'ts' if fmt else 'mp4'}"
            make_video(path, args.minutes, fmt)
            result[name] = measure(path, at, args.repeats)
    result["video"] = {"minutes": args.minutes, "size": SIZE, "fps": FPS, "key_interval": 2.0}
    print(json.dumps(result))
    return 0
