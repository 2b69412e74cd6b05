"""Decode throughput in 1-s clip windows per second (``read_frames`` + ``read_audio``).

Each window starts at a random time of a random clip: frames at ``--fps`` resized to
``--size`` and mono audio at ``--sample-rate``, the work a training loader does per sample when
it decodes on the fly. Measured for a manifest (``--manifest``; by default the default
synthetic world, when ``avssl synth`` has built it) and for the real videos in
``../shared/data/videos`` when present.

usage: python benchmarks/decode.py [--manifest PATH] [--windows N]

The last stdout line is one JSON object, e.g.
``{"synthetic_windows_per_s": 41.2, "shared_videos_windows_per_s": 9.8, "n_windows": 100}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import argparse
import json
import random
import time
from pathlib import Path

from avssl.cli import ArgumentParser, int_at_least, positive_float, positive_int
from avssl.config import SynthConfig
from avssl.data.manifest import read_manifest, resolve
from avssl.data.media import probe, read_audio, read_frames
from avssl.data.synthetic import world_dir
from avssl.tools.bench_data import folder_videos

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"
WINDOW_S = 1.0

# A source of windows: (visual path, audio path, first usable second, last usable second).
Source = tuple[Path, Path, float, float]


def manifest_sources(path: Path) -> list[Source]:
    """Sources of every row of a manifest long enough for one window."""
    sources = []
    for row in read_manifest(path):
        visual = resolve(path, row.visual)
        audio = resolve(path, row.audio) or visual
        end = row.end if row.end is not None else probe(visual).duration
        if end is not None and end - row.start >= WINDOW_S:
            sources.append((visual, audio, row.start, end))
    return sources


def video_sources(folder: Path) -> list[Source]:
    """Sources of the videos (with audio) of a folder; files avssl cannot read are skipped."""
    return [(path, path, 0.0, end) for path, end in folder_videos(folder, WINDOW_S)]


def windows_per_second(sources: list[Source], n: int, args, seed: int) -> float:
    """Decode ``n`` random windows of ``sources`` and return windows per second."""
    rng = random.Random(seed)
    picks = []
    for _ in range(n + 1):
        visual, audio, lo, hi = rng.choice(sources)
        picks.append((visual, audio, rng.uniform(lo, hi - WINDOW_S)))

    def decode(visual, audio, start):
        frames = read_frames(visual, start, WINDOW_S, args.fps, args.size)
        wave = read_audio(audio, start, WINDOW_S, args.sample_rate)
        assert frames.shape[0] == round(WINDOW_S * args.fps)
        assert wave.shape[0] == round(WINDOW_S * args.sample_rate)

    decode(*picks[0])  # warm-up: imports, codec initialisation, page cache
    t0 = time.perf_counter()
    for pick in picks[1:]:
        decode(*pick)
    return n / (time.perf_counter() - t0)


def _fps(text: str) -> float:
    """An argparse ``type``: a frame rate of at least 1 (a 1-s window below it holds no frame,
    which the decoder reported naming a clip, not the flag)."""
    value = positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (frames in a 1-s window), got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    parser = ArgumentParser(prog="benchmarks/decode.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--manifest", type=Path,
        help="manifest to measure (default: the default synthetic world, once `avssl synth` ran)",
    )  # fmt: skip
    parser.add_argument("--label", default="synthetic", help="JSON key prefix for --manifest")
    parser.add_argument("--videos", type=Path, default=SHARED_VIDEOS, help="folder of real videos")
    parser.add_argument(
        "--windows", type=int_at_least(1, 1_000_000), default=100, help="windows per measurement"
    )
    parser.add_argument("--fps", type=_fps, default=25.0, help="at least 1: frames in 1 s")
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--sample-rate", type=positive_int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    result: dict[str, float | int | None] = {}
    parts = []
    if args.manifest is None:
        default_world = world_dir(SynthConfig()) / "manifest.jsonl"
        if default_world.is_file():
            args.manifest = default_world
        else:
            print(f"skipping the synthetic world: {default_world} is absent", file=sys.stderr)
    if args.manifest is not None:
        parts.append((f"{args.label}_windows_per_s", manifest_sources(args.manifest)))
    if args.videos.exists():  # a file, not a folder, is refused there
        parts.append(("shared_videos_windows_per_s", video_sources(args.videos)))
    else:
        print(f"skipping real videos: {args.videos} is absent", file=sys.stderr)
    for key, sources in parts:
        if not sources:
            print(f"{key}: no usable clips", file=sys.stderr)
            result[key] = None
            continue
        rate = windows_per_second(sources, args.windows, args, args.seed)
        print(f"{key}: {rate:.1f} windows/s over {len(sources)} clips")
        result[key] = round(rate, 2)
    result["n_windows"] = args.windows
    print(json.dumps(result))
    return 0
