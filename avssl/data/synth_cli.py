"""Build the built-in synthetic audio-visual world into a folder (default: the cache folder).

``avssl synth`` (the world: :mod:`avssl.data.synthetic`); the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from pathlib import Path

from avssl.cli import ArgumentParser, int_at_least, json_line, positive_float
from avssl.config import SynthConfig
from avssl.data.synthetic import (
    CLASSES,
    MANIFEST,
    MAX_CLIP_GIB,
    _ensure,
    _jobs,
    _matches,
    clip_gib,
    world_dir,
)
from avssl.errors import AvsslError


def _unfinished(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds nothing but a world's own files and no manifest (a build
    removes it first and writes it last): the clips of a build that was interrupted, or is still
    running, which a rerun completes or waits for."""
    if (out_dir / MANIFEST).exists():  # a complete world: _matches tells whose
        return False
    clip = re.compile(r"\.?\d{6}(\.tmp\d+)?\.mp4")
    for entry in out_dir.iterdir():
        if entry.name in (".lock", CLASSES) and entry.is_file():
            continue
        if entry.name not in ("train", "val", "test") or not entry.is_dir():
            return False
        if not all(f.is_file() and clip.fullmatch(f.name) for f in entry.iterdir()):
            return False
    return True


MAX_CLIPS = 1_000_000  # per split


def _folder(text: str) -> Path:
    """An argparse ``type``: a folder name, never empty (``Path("")`` is the current folder,
    where ``--out ""`` once built a world)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name")
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    """``avssl synth``: build a synthetic world; the last stdout line is JSON,
    ``{"manifest": path, "clips": n}``."""
    d = SynthConfig()
    p = ArgumentParser(prog="avssl synth", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=_folder, help="output folder (default: the cache folder)")
    clips = int_at_least(0, MAX_CLIPS)  # a trillion once exhausted the machine's memory
    p.add_argument(
        "--n-train", type=clips, default=d.n_train,
        help="training clips (0: a world to evaluate on only; training needs at least 2)",
    )  # fmt: skip
    p.add_argument("--n-val", type=clips, default=d.n_val)
    p.add_argument("--n-test", type=clips, default=d.n_test)
    p.add_argument("--duration", type=positive_float, default=d.duration, help="seconds per clip")
    p.add_argument("--seed", type=int_at_least(0), default=d.seed)
    p.add_argument("--workers", type=int_at_least(1, 256), default=2, help="parallel clips")
    p.add_argument("--force", action="store_true", help="rebuild even if the world exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.duration < 2 / d.fps:  # shorter clips hold no video frame, or no audio at all
        raise AvsslError(f"--duration: must be at least {2 / d.fps:g} s (two frames), got "
                         f"{args.duration:g}")  # fmt: skip
    if args.n_train + args.n_val + args.n_test == 0:  # every later command could only fail
        raise AvsslError("--n-train, --n-val, --n-test: a world needs at least one clip")
    sizes = {k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "duration", "seed")}
    cfg = dataclasses.replace(d, **sizes)
    gib = clip_gib(cfg)
    if not gib <= MAX_CLIP_GIB:  # named by the flag typed, not by the config key it sets
        per_second = clip_gib(dataclasses.replace(cfg, duration=1.0))  # no inf / inf at 1e308
        longest = math.floor(MAX_CLIP_GIB / per_second)  # whole seconds, in bounds
        need = f"{gib:.3g} GiB of memory" if math.isfinite(gib) else "more memory than exists"
        raise AvsslError(
            f"--duration: a clip of {args.duration:g} s needs {need} to render whole; at most "
            f"{MAX_CLIP_GIB} GiB, so at most {longest} s"
        )
    out = args.out if args.out is not None else world_dir(cfg)
    if out.exists() and not out.is_dir():
        raise AvsslError(f"{out}: not a folder")
    others = out.is_dir() and any(f.name != ".lock" for f in out.iterdir())
    # a world of these settings, or an interrupted (or concurrent) build's unfinished one
    foreign = others and not (_matches(out, cfg) or _unfinished(out))
    if args.out is not None and not args.force and foreign:
        raise AvsslError(
            f"{out}: not empty and not a world of these settings; --force builds there "
            "anyway, replacing its manifest.jsonl, classes.json and clips"
        )
    from avssl.sigterm import terminated_as_interrupt

    with terminated_as_interrupt():  # a SIGTERM cleans up its temporary clips as Ctrl-C does
        manifest = _ensure(out, cfg, args.workers, not args.quiet, args.force, announce=True)
    print(json_line({"manifest": str(manifest), "clips": len(_jobs(cfg))}))
    return 0
