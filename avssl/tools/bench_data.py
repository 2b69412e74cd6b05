"""Data-speed measurements of ``avssl bench``: 1-s windows decoded from media and read from a
shard cache, each the best of :data:`REPS` passes."""

from __future__ import annotations

import contextlib
import io
import random
import time
from pathlib import Path

import torch

from avssl.config import Config
from avssl.data.frame_fit import split_fit
from avssl.data.manifest import Row, resolve
from avssl.data.media import read_audio, read_frames
from avssl.data.shards import iter_shard, read_index, split_size

WINDOW_S = 1.0
REPS = 3  # timed repeats of the decode and cache-read passes (the best one counts)


def build_cache(manifest: Path, out: Path, overrides: tuple[str, ...]) -> Path:
    """Run ``avssl cache`` on ``manifest`` into ``out`` (its JSON line is swallowed)."""
    from avssl.data import shards_cli

    sets = [a for s in overrides for a in ("--set", s)]
    with contextlib.redirect_stdout(io.StringIO()):
        shards_cli.main(["--data", str(manifest), "--out", str(out), "--no-progress", *sets])
    return out


def pick_windows(rows: list[Row], n: int, seed: int = 0) -> list[tuple[Row, float]]:
    """``n`` random ``(row, start s into the row)`` 1-s windows of rows of a known length."""
    rng = random.Random(seed)
    rows = [r for r in rows if r.end is not None and r.end - r.start >= WINDOW_S]
    picks = []
    for _ in range(n):
        row = rng.choice(rows)
        picks.append((row, rng.uniform(0.0, row.end - row.start - WINDOW_S)))
    return picks


def best_rate(count_once, reps: int = REPS) -> float:
    """The best of ``reps`` timed calls of ``count_once() -> items done``, in items per second
    (as ``timeit`` advises: the fastest repeat is the least disturbed by the rest of the
    machine; decoding and cache reads are both measured this way)."""
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = count_once()
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def decode_windows_per_second(manifest: Path, picks, cfg: Config) -> float:
    """Windows per second decoded from the media (after one untimed warm-up window), the best
    of :data:`REPS` passes over ``picks``."""
    d = cfg.data

    def decode(row: Row, t: float):
        visual = resolve(manifest, row.visual)
        audio = resolve(manifest, row.audio) or visual
        size, fit = split_size(d, row.split), split_fit(d, row.split)
        frames = read_frames(visual, row.start + t, WINDOW_S, d.fps, size, fit)
        wave = read_audio(audio, row.start + t, WINDOW_S, d.sample_rate)
        return frames, wave

    def once() -> int:
        for pick in picks:
            decode(*pick)
        return len(picks)

    decode(*picks[0])
    return best_rate(once)


def cache_windows_per_second(cache: Path, cfg: Config, seed: int = 0) -> float:
    """Windows per second read from a shard cache as a training epoch reads it.

    A sequential pass over every shard; from each clip one random 1-s window (its frames and
    audio) is cut, as :class:`avssl.data.stream_pairs.StreamPairs` cuts one item per clip. The
    best of :data:`REPS` passes.
    """
    d = cfg.data
    rng = random.Random(seed)
    nf, na = int(round(WINDOW_S * d.fps)), int(round(WINDOW_S * d.sample_rate))

    def once() -> int:
        n = 0
        for shard in read_index(cache)["shards"]:
            for sample in iter_shard(cache / shard["name"]):
                frames, audio = sample["frames"], sample["audio"]
                seconds = min(len(frames) / d.fps, len(audio) / d.sample_rate)
                t = rng.uniform(0.0, max(0.0, seconds - WINDOW_S))
                i, j = int(t * d.fps), int(round(t * d.sample_rate))
                window = torch.from_numpy(frames[i : i + nf]), torch.from_numpy(audio[j : j + na])
                assert window[0].shape[0] > 0 and window[1].shape[0] > 0
                n += 1
        return n

    return best_rate(once)


def folder_videos(folder: Path, min_s: float) -> list[tuple[Path, float]]:
    """``(path, duration s)`` of the files of ``folder`` with pictures and sound lasting at least
    ``min_s``, for the benchmarks over a folder of real videos (``benchmarks/decode.py``,
    ``pair_items.py``). A file avssl cannot read (a README, a damaged download, a subfolder) is
    skipped with a note on stderr, as every command over a collection skips it.

    Raises:
        AvsslError: ``folder`` is not a folder.
    """
    import sys

    from avssl.data.media import probe
    from avssl.errors import AvsslError, MediaError

    if not folder.is_dir():
        raise AvsslError(f"{folder}: not a folder of videos")
    found = []
    for path in sorted(folder.iterdir()):
        try:
            info = probe(path)
        except MediaError as err:
            print(f"skipping {err}", file=sys.stderr)
            continue
        if info.has_video and info.has_audio and info.duration and info.duration >= min_s:
            found.append((path, info.duration))
    return found
