"""Overlay rendering speed and indexing throughput with a ``configs/contrastive.yaml``-size model.

A 224x224, 25 fps video with a tone (``--seconds`` long, made with
:func:`avssl.data.writer.write_video`) is rendered by ``avssl overlay`` with a randomly
initialised model of the default contrastive size (output frames per second; faster than real
time means above 25) and indexed by ``avssl index`` (media seconds per wall second).

usage: python benchmarks/overlay.py [--seconds 10]

The last stdout line is one JSON object, e.g.
``{"overlay_frames_per_s": 60.1, "realtime_factor": 2.4, "index_media_s_per_s": 30.2}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avssl.cli import ArgumentParser, positive_float
from avssl.config import load_config, to_dict
from avssl.data.writer import write_video
from avssl.models import build_model
from avssl.tools import index_cli, overlay
from avssl.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def make_video(path: Path, seconds: float, fps: int = 25, size: int = 224, sr: int = 16000):
    """Write a ``seconds``-long ``size`` x ``size`` video at ``fps`` to ``path``: a bright square
    moving sideways over noise, with a 440 Hz tone at ``sr`` Hz."""
    rng = np.random.default_rng(0)
    n = int(seconds * fps)
    frames = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):  # a bright square moving over noise
        frames[i] = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        x = int((i / n) * (size - 48))
        frames[i, 80:128, x : x + 48] = 230
    t = np.arange(int(seconds * sr)) / sr
    write_video(path, frames, fps, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)


def _run(fn, argv) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert fn(argv) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


MAX_S = 600.0  # the frames are made in memory first: 3.8 MB a second at 224x224, 25 fps


def _seconds(text: str) -> float:
    """An argparse ``type``: the video's length, from one window (what ``avssl index`` embeds;
    shorter once failed naming the temporary video) to :data:`MAX_S`."""
    value = positive_float(text)
    if not 1.0 <= value <= MAX_S:
        raise argparse.ArgumentTypeError(f"must be in [1, {MAX_S:g}] s, got {text}")
    return value


def main(argv=None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/overlay.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--seconds", type=_seconds, default=10.0, help=f"length of the test video (1-{MAX_S:g})"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config(REPO / "configs" / "contrastive.yaml")
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.data, cfg.loss)
        ckpt = save_checkpoint(tmp / "c.pt", {"model": model.state_dict(), "config": to_dict(cfg)})
        video = tmp / "v.mp4"
        make_video(video, args.seconds)
        t0 = time.perf_counter()
        res = _run(overlay.main, [str(video), "--checkpoint", str(ckpt), "-o", str(tmp / "o.mp4")])
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        idx = _run(index_cli.main, ["--checkpoint", str(ckpt), "--inputs", str(video),
                                    "--out", str(tmp / "idx"), "--quiet"])  # fmt: skip
        idx_wall = time.perf_counter() - t0
    result = {
        "overlay_frames_per_s": res["frames_per_s"],
        "overlay_frames_per_s_with_startup": round(res["frames"] / wall, 2),
        "realtime_factor": round(res["frames_per_s"] / 25.0, 2),
        "index_media_s_per_s": round(idx["media_seconds"] / idx_wall, 2),
        "video": {"seconds": args.seconds, "size": 224, "fps": 25},
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return 0
