"""The built-in synthetic audio-visual world: the default dataset, generated on first use.

Each clip shows one *sounding* object and up to ``max_distractors`` silent ones (other classes)
on a dark textured background. The sounding object plays notes at irregular onsets; its sound
and its look share one envelope ``env(t) = exp(-(t - last onset) / tau)``: the note decays with
it, and the object's size and brightness pulse with it. A single frame therefore shows where in
the current note the clip is, so audio shifted by a second (a hard negative) is detectably
wrong. The sounding object also has a thin fixed outline at its maximum size, for two reasons
measured on trained models: it is a reference that keeps the pulse readable after random crops
and brightness jitter, and it tells a sounding object from a silent one at every phase of the
pulse (without it, audio of a class present as a silent distractor is often taken as a match).

Clips are real mp4 files (h264 + AAC) with a ``manifest.jsonl`` (see
:mod:`avssl.data.manifest`) and a ``classes.json`` describing every class. Everything is a pure
function of the :class:`~avssl.config.SynthConfig`, so worlds are cached under a hash of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avssl.atomic_write import replacing, write_text
from avssl.config import SynthConfig
from avssl.data import synth_render as sr
from avssl.data.manifest import SPLITS, Row, read_manifest, resolve, write_manifest
from avssl.errors import AvsslError, ConfigError

GENERATOR_VERSION = 6  # bump when the output of a given config changes (invalidates caches)
# keeps the world's random streams apart from the pair sampler's ``[seed, epoch, index]``: with
# both seeds at 0, epoch 0 drew each training pair with the numbers that drew its clip
WORLD_TAG = 6007
MANIFEST = "manifest.jsonl"
MAX_CLIP_GIB = 4  # frames + audio of one clip, rendered whole
# the rates the mp4's AAC track can be encoded at (MPEG-4 audio's table, 8 kHz and up): FFmpeg's
# encoder refuses any other (an av.error.ArgumentError traceback from the first clip's build)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
CLASSES = "classes.json"


def cache_root() -> Path:
    """``$AVSSL_CACHE``, else ``$XDG_CACHE_HOME/avssl``, else ``~/.cache/avssl``."""
    if os.environ.get("AVSSL_CACHE"):
        return Path(os.environ["AVSSL_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "avssl"


def _cfg_dict(cfg: SynthConfig) -> dict:
    d = {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(cfg)}
    d["duration"] = float(d["duration"])  # 4 and 4.0 are the same world (and hash)
    return d


def world_dir(cfg: SynthConfig) -> Path:
    """Cache folder of the world of ``cfg``: ``cache_root()/synthetic/<12-hex hash>``."""
    key = json.dumps(_cfg_dict(cfg), sort_keys=True).encode()
    return cache_root() / "synthetic" / hashlib.sha1(key).hexdigest()[:12]


def clip_gib(cfg: SynthConfig) -> float:
    """GiB of memory one clip of ``cfg`` takes to render whole: uint8 RGB frames and float64
    audio samples."""
    return (cfg.duration * cfg.fps * cfg.size**2 * 3 + cfg.duration * cfg.sample_rate * 8) / 2**30


def _check(cfg: SynthConfig) -> None:
    """Refuse a world that cannot be built; each message begins with the config key it is
    about (``data.synthetic.*``), so that a ``--config`` file that set it is named."""
    if not 2 <= cfg.n_classes <= len(sr.SHAPES):
        raise ConfigError(
            f"data.synthetic.n_classes: must be in [2, {len(sr.SHAPES)}], got {cfg.n_classes}"
        )
    if cfg.size < 32 or cfg.size % 2:
        raise ConfigError(
            f"data.synthetic.size: must be even and >= 32 (h264 needs even sizes), got {cfg.size}"
        )
    if cfg.duration <= 0 or cfg.fps <= 0 or cfg.sample_rate < 8000:
        raise ConfigError("data.synthetic: duration and fps must be > 0, sample_rate >= 8000")
    if cfg.sample_rate not in AAC_RATES:
        raise ConfigError(
            f"data.synthetic.sample_rate: {cfg.sample_rate} Hz is not a rate the clips' AAC "
            f"audio can be encoded at (one of {', '.join(map(str, AAC_RATES))})"
        )
    if min(cfg.n_train, cfg.n_val, cfg.n_test, cfg.max_distractors) < 0:
        raise ConfigError("data.synthetic: n_train, n_val, n_test and max_distractors must be >= 0")
    # a clip is rendered whole in memory: refuse one that cannot be, before any allocation
    gib = clip_gib(cfg)
    if not gib <= MAX_CLIP_GIB:
        raise ConfigError(
            f"data.synthetic: a clip of {cfg.duration:g} s (duration) at {cfg.size}x{cfg.size} "
            f"(size), {cfg.fps} fps and {cfg.sample_rate} Hz (sample_rate) needs {gib:.3g} GiB "
            f"of memory to render; at most {MAX_CLIP_GIB} GiB (shorter clips, a smaller size "
            "or a lower rate)"
        )


def _jobs(cfg: SynthConfig) -> list[tuple[str, int]]:
    counts = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    return [(split, i) for split in SPLITS for i in range(counts[split])]


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator every random choice of one clip is drawn from: seeded by (seed, split,
    index) alone, so the world does not depend on the worker count."""
    return np.random.default_rng([seed, WORLD_TAG, SPLITS.index(split), index])


def _make_clip(job: tuple[Path, SynthConfig, str, int]) -> dict:
    """Render and write one clip; returns its manifest row as JSON."""
    from avssl.data.writer import write_video  # imports torch: only when a world is built

    out_dir, cfg, split, index = job
    classes = sr.class_specs(cfg.n_classes)
    rng = clip_rng(cfg.seed, split, index)
    label = index % cfg.n_classes  # balanced classes in every split
    clip = sr.render_clip(cfg, classes, label, rng)
    rel = f"{split}/{index:06d}.mp4"
    final = out_dir / rel
    # Lossless (crf 0): x264 sometimes encodes identical frames into other bytes, which lossy
    # would decode into other pixels; lossless decodes to the rendered frames whatever the bytes,
    # so every build of a world gives the same pictures (and the same training run).
    with replacing(final, keep_suffix=True) as tmp:  # the suffix picks the codecs
        write_video(tmp, clip.frames, cfg.fps, clip.audio, cfg.sample_rate, crf=0)
    row = Row(
        id=f"{split}-{index:06d}",
        video=rel,
        start=0.0,
        end=float(cfg.duration),
        labels=[classes[label].name],
        split=split,
        boxes={"sources": clip.sources, "distractors": clip.distractors},
    )
    return row.to_json()


def build_world(out_dir: Path, cfg: SynthConfig, workers: int = 2, progress: bool = True) -> Path:
    """Generate every clip of ``cfg`` into ``out_dir``.

    Writes ``<split>/<index>.mp4`` (uint8 ``size x size`` RGB at ``fps`` + mono AAC at
    ``sample_rate``), ``classes.json``, and ``manifest.jsonl`` last, so an existing manifest
    marks a complete world.

    Args:
        out_dir: destination folder (created).
        cfg: the world's settings.
        workers: clips rendered and encoded in parallel (threads: numpy and the codecs
            release the GIL, 2 threads run ~1.8x faster on 2 cores; 1: sequential).
        progress: show a tqdm bar on stderr.

    Returns:
        The manifest path.
    """
    _check(cfg)
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST
    manifest.unlink(missing_ok=True)  # a half-rebuilt world must not look complete
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir, cfg, split, i) for split, i in _jobs(cfg)]
    bar = tqdm(total=len(jobs), desc="synthetic world", unit="clip", disable=not progress)
    rows = []
    # Threads, not processes: no fork of a process running torch threads, and no re-import of
    # the caller's __main__ (spawn/forkserver) that breaks scripts without a main guard.
    with bar, ThreadPoolExecutor(max(1, workers)) as pool:
        for row in pool.map(_make_clip, jobs):
            rows.append(row)
            bar.update()
    classes = [dataclasses.asdict(c) for c in sr.class_specs(cfg.n_classes)]
    info = {
        "names": [c["name"] for c in classes],
        "classes": classes,
        "pulse": {"tau": sr.TAU, "scale": sr.SCALE, "brightness": sr.BRIGHT, "outline": sr.OUTLINE},
        "config": _cfg_dict(cfg),
    }
    write_text(out_dir / CLASSES, json.dumps(info, indent=1) + "\n")
    write_manifest(manifest, (Row(**r) for r in rows))
    return manifest


def _matches(out_dir: Path, cfg: SynthConfig) -> bool:
    """Whether ``out_dir`` holds a complete world built from ``cfg``: its config, manifest and
    every clip the manifest lists (a clip deleted since would be skipped by every run, each a
    little smaller than the world it names)."""
    try:
        info = json.loads((out_dir / CLASSES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (out_dir / MANIFEST).is_file() or info.get("config") != _cfg_dict(cfg):
        return False
    try:
        rows = read_manifest(out_dir / MANIFEST)
    except AvsslError:
        return False
    gone = [r.video for r in rows if not _nonempty(resolve(out_dir / MANIFEST, r.video))]
    if gone:
        print(f"synthetic world: {len(gone)} clip(s) missing or empty, e.g. {gone[0]}: rebuilding",
              file=sys.stderr)  # fmt: skip
    return not gone and len(rows) == len(_jobs(cfg))


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


@contextlib.contextmanager
def _locked(out_dir: Path):
    """Exclusive lock on ``out_dir`` (e.g. several DDP ranks ensuring one world at once)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(out_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure(
    out_dir: Path, cfg: SynthConfig, workers: int, progress: bool, force: bool, announce: bool
) -> Path:
    _check(cfg)  # before the lock makes the folder
    with _locked(out_dir):
        if not force and _matches(out_dir, cfg):
            if announce:
                print(f"synthetic world: reused {out_dir}", file=sys.stderr)
            return out_dir / MANIFEST
        start = time.perf_counter()
        manifest = build_world(out_dir, cfg, workers, progress)
    n = len(_jobs(cfg))
    took = time.perf_counter() - start
    print(f"synthetic world: built {n} clips in {took:.1f} s into {out_dir}", file=sys.stderr)
    return manifest


def ensure_world(
    cfg: SynthConfig, workers: int = 2, progress: bool = True, announce: bool = True
) -> Path:
    """The manifest of the cached world of ``cfg``, built first unless it already exists.

    Args:
        cfg: the world's settings (they pick its folder, :func:`world_dir`).
        workers: clips rendered in parallel if the world is built (see :func:`build_world`).
        progress: show a progress bar while building.
        announce: say on stderr that an existing world is reused (False for the other ranks
            of a distributed run, whose rank 0 says it).
    """
    return _ensure(world_dir(cfg), cfg, workers, progress, False, announce)
