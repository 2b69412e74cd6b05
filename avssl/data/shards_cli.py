"""``avssl cache``: decode a manifest once into streamable tar shards (:mod:`avssl.data.shards`).

Clips are decoded in a thread pool (PyAV and soundfile release the GIL) with a bounded number in
flight, and each shard is committed as it fills, so memory does not grow with the dataset and an
interrupted run leaves only complete shards; a rerun skips the clips they hold, and refuses to
go on when a manifest row they were cached from has changed since; a shard that is not the size
it was written at (cut short after the run) is deleted and its clips decoded again, with a
warning on stderr. Each split's rows are
written in a random order drawn from ``--seed`` (the same on every run), split after split: a
manifest sorted by class would otherwise give shards, and so a streamed epoch's shuffle buffer
and the negatives drawn from it, of one class at a time. Frames are
decoded at ``data.load_size`` for the train split when ``data.augment`` is on, else at
``data.frame_size``, and made square by ``data.frame_fit`` for the train split, squashed for
the others (as training and evaluation read them). Then ``--set data.cache=DIR`` makes
training and evaluation read the shards instead of the media (add ``data.stream=true`` to
stream the train split shard by shard instead of loading it into memory).

The last stdout line is one JSON object: ``{"out", "manifest", "written", "resumed",
"redone_shards", "n_skipped", "skipped": [{"id", "split", "path", "reason"}, ...], "bytes",
"shards", "seconds", "clips_per_s"}`` (``bytes`` and ``shards`` count the whole cache, ``written``
this run, ``redone_shards`` the damaged shards whose clips it decoded again).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avssl.cli import ArgumentParser, int_at_least, json_line, positive_float, positive_int
from avssl.cli_outputs import check_not_empty
from avssl.config import DataConfig, load_config
from avssl.data import media
from avssl.data.cache_folder import (
    index_record,
    open_cache,
    refuse_changed,
    refuse_foreign,
    undo_start,
)
from avssl.data.frame_fit import split_fit
from avssl.data.manifest import SPLITS, Row, read_manifest, resolve
from avssl.data.shard_writer import ShardWriter, drop_damaged, write_json
from avssl.data.shards import INDEX, decode_settings, split_size
from avssl.errors import AvsslError, MediaError, skip_fields
from avssl.folder_lock import hold_output_folder

DEFAULT_LIMITS = {"shard_size": 1000, "shard_mb": 512}  # samples per shard; MB past which it closes
MAX_SHARD_MB = 2**20  # 1 TiB: no use for a larger shard (1e308 MB overflowed the byte count)
MAX_WORKERS = 64


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl cache", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="manifest (or folder with manifest.jsonl); default: data.root")
    p.add_argument("--out", required=True, help="cache folder (created; resumed)")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel decoders (threads)")
    p.add_argument("--config", help="YAML config giving the decode settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--shard-size", type=positive_int,
        help="samples per shard (default: the cache's, else 1000; complete shards keep theirs)",
    )  # fmt: skip
    p.add_argument(
        "--shard-mb", type=positive_float,
        help="close a shard past this many MB (default: the cache's, else 512)",
    )  # fmt: skip
    p.add_argument("--splits", help="comma-separated splits to cache (default: every row)")
    p.add_argument(
        "--seed",
        type=int_at_least(0),  # numpy's generators take no negative seed
        help="seed of the order rows are written in: each split's rows shuffled with it, split "
        "after split, the same order on every run (default: the config's train.seed)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first undecodable clip")
    p.add_argument("--no-progress", action="store_true")
    return p


def decode_row(row: Row, manifest: Path, data: DataConfig):
    """``(frames uint8 [T, H, W, 3], audio float32 [N])`` ndarrays of a row, or its MediaError.

    Decoded exactly as :class:`avssl.data.dataset.ClipStore` preloads it.

    Args:
        row: the manifest row.
        manifest: the manifest's path (media paths are relative to it).
        data: data settings (fps, sample rate; frame size and fit by the row's split, see
            :func:`~avssl.data.shards.split_size` and :func:`~avssl.data.frame_fit.split_fit`).
    """
    duration = None if row.end is None else row.end - row.start
    try:
        frames, audio = media.read_clip(
            resolve(manifest, row.visual), data.fps, split_size(data, row.split),
            data.sample_rate, resolve(manifest, row.audio), row.start, duration,
            split_fit(data, row.split),
        )  # fmt: skip
    except MediaError as err:
        return err
    return frames.numpy(), audio.numpy()


def write_order(rows: list[Row], seed: int) -> list[Row]:
    """The order ``rows`` are cached in: each split's rows in a random order drawn from
    ``(seed, split)``, splits in the order train, val, test.

    Shards then hold one split where they can, and a manifest sorted by class does not give
    shards (and streamed shuffle buffers) of one class at a time.

    Args:
        rows: manifest rows.
        seed: the order's seed (``avssl cache --seed``).
    """
    out = []
    for i, split in enumerate(SPLITS):
        part = [r for r in rows if r.split == split]
        out += [part[j] for j in np.random.default_rng([seed, 4099, i]).permutation(len(part))]
    return out


def main(argv: list[str] | None = None) -> int:
    """``avssl cache --out DIR [--data MANIFEST] [--workers N] ...``."""
    args = _parser().parse_args(argv)
    check_not_empty([("--out", args.out), ("--data", args.data), ("--splits", args.splits),
                     ("--config", args.config)])  # fmt: skip
    args.out = Path(args.out)
    if args.workers > MAX_WORKERS:  # each in flight holds a decoded clip: memory grows with it
        raise AvsslError(f"--workers: must be at most {MAX_WORKERS}, got {args.workers}")
    if args.shard_mb is not None and args.shard_mb > MAX_SHARD_MB:
        raise AvsslError(
            f"--shard-mb: must be at most {MAX_SHARD_MB} (1 TiB), got {args.shard_mb:g}"
        )
    from avssl.sigterm import terminated_as_interrupt

    with terminated_as_interrupt():  # a SIGTERM too removes the shard being written
        return _cache(args)


def _cache(args: argparse.Namespace) -> int:
    """Build or resume the cache ``args`` describe; print the summary line."""
    from avssl.data.source import manifest_path

    t0 = time.time()
    cfg = load_config(args.config, args.overrides)
    if args.data:
        cfg.data.root = args.data
    cfg.data.cache = None  # a config's data.cache (often this --out) is not read while building
    manifest = manifest_path(cfg.data, progress=not args.no_progress)
    rows = all_rows = read_manifest(manifest)
    if args.splits:
        keep = {s.strip() for s in args.splits.split(",")}
        if keep - set(SPLITS):
            raise AvsslError(
                f"--splits {args.splits}: {', '.join(sorted(keep - set(SPLITS)))} is not a "
                f"split (valid: {', '.join(SPLITS)})"
            )
        rows = [r for r in rows if r.split in keep]
    seed = cfg.train.seed if args.seed is None else args.seed
    settings = decode_settings(cfg.data)
    busy = "another avssl cache is writing into this folder; wait for it to end"
    with hold_output_folder(args.out, busy, "a directory") as existed:
        return _fill(args, cfg, manifest, rows, all_rows, seed, settings, existed, t0)


def _valid_limit(key: str, value):
    """A limit an index recorded, or None when it is not one (a record edited by hand)."""
    if key == "shard_size":  # any count (a huge one leaves closing shards to --shard-mb)
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and 0 < value <= MAX_SHARD_MB  # NaN fails both
    return value if ok else None


def _fill(args, cfg, manifest, rows, all_rows, seed, settings, existed: bool, t0: float) -> int:
    """Write the shards ``_cache`` planned, holding the folder's lock (``rows``: those to
    cache; ``all_rows``: all of the manifest's)."""
    index_path = args.out / INDEX
    old_index = index_path.read_bytes() if index_path.is_file() else None
    if not rows:
        what = f"no row of split(s) {args.splits}" if args.splits else "no rows"
        raise AvsslError(f"{manifest}: {what}; nothing to cache")
    done, old_skipped, recorded = open_cache(args.out, settings, seed)
    # refused before anything is deleted: a refusal leaves the cache as it was
    refuse_foreign(args.out, done, manifest, all_rows)
    refuse_changed(args.out, done, all_rows)  # every cached row, not only this run's splits
    done, redone = drop_damaged(args.out, done)
    if redone:  # the old index names deleted shards: never put it back (undo_start)
        old_index = None
        more = ", ..." if len(redone) > 5 else ""
        print(
            f"warning: {args.out}: {len(redone)} damaged shard(s) deleted, their clips are "
            f"decoded again: {', '.join(redone[:5])}{more}",
            file=sys.stderr,
        )
    # rows outside this run (other --splits) keep the reasons an earlier run skipped them for
    this_run = {r.id for r in rows}
    carried = [s for s in old_skipped if s["id"] not in this_run]
    # a rerun goes on with the limits the cache was built to, unless given others
    given = {"shard_size": args.shard_size, "shard_mb": args.shard_mb}
    recorded = {k: _valid_limit(k, recorded.get(k)) for k in DEFAULT_LIMITS}
    limits = {k: v or recorded[k] or DEFAULT_LIMITS[k] for k, v in given.items()}
    cached = {i for s in done for i in s["ids"]}
    todo = [r for r in write_order(rows, seed) if r.id not in cached]
    if done and not todo:  # no shard to write: the index keeps the limits it had
        record_limits = {k: v for k, v in recorded.items() if v} or None
    else:
        record_limits = limits
    write_json(
        args.out / INDEX,
        index_record(settings, manifest, done, carried, False, seed, record_limits),
    )
    resumed = len(rows) - len(todo)
    first = 1 + max((int(s["name"][6:12]) for s in done), default=-1)
    sized = [f"--{k.replace('_', '-')}" for k, v in given.items() if v and v != recorded[k]]
    if sized and done:  # complete shards are append-only: never rewritten to another size
        left = f"the {len(todo)} clip(s) decoded now" if todo else "no clip: every row is cached"
        print(
            f"note: {args.out}: its {len(done)} complete shard(s) keep their size; "
            f"{' and '.join(sized)} appl{'ies' if len(sized) == 1 else 'y'} to {left} (a new "
            "--out builds every shard so)",
            file=sys.stderr,
        )
    size, mb = limits["shard_size"], limits["shard_mb"]
    writer = ShardWriter(args.out, first, size, int(mb * 2**20))
    skipped: list[dict] = []
    bar = tqdm(total=len(todo), desc="cache", disable=args.no_progress, file=sys.stderr)
    # Bounded in-flight work, consumed in submission order: memory stays flat and the shard
    # contents do not depend on thread timing.
    pending: deque = deque()
    try:
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            for row in [*todo, None]:
                if row is not None:
                    pending.append((row, pool.submit(decode_row, row, manifest, cfg.data)))
                while pending and (row is None or len(pending) >= 2 * args.workers):
                    done_row, future = pending.popleft()
                    item = future.result()
                    bar.update()
                    if isinstance(item, MediaError):
                        if args.strict:
                            raise MediaError(item.path, f"{item.reason} (row {done_row.id!r})")
                        skipped.append(
                            {"id": done_row.id, "split": done_row.split, "path": item.path,
                             "reason": item.reason}
                        )  # fmt: skip
                        continue
                    writer.add(done_row, *item)
            writer.flush()
    except BaseException:
        writer.abort()
        for _, future in pending:
            future.cancel()
        raise
    finally:
        bar.close()
    position = {r.id: i for i, r in enumerate(rows)}
    skipped.sort(key=lambda s: position[s["id"]])  # manifest order, not the write order
    shards = done + writer.committed
    if not shards:  # leave no empty cache behind, and an earlier one as it was
        undo_start(args.out, existed, old_index)
        first_skip = f"; first: {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise AvsslError(
            f"{manifest}: no usable clip to cache ({len(skipped)} of {len(rows)} row(s) "
            f"skipped{first_skip}); nothing written to {args.out}"
        )
    index = index_record(settings, manifest, shards, carried + skipped, True, seed, record_limits)
    write_json(args.out / INDEX, index)
    written = sum(s["n"] for s in writer.committed)
    seconds = time.time() - t0
    print(
        json_line(
            {
                "out": str(args.out),
                "manifest": str(manifest),
                "written": written,
                "resumed": resumed,
                "redone_shards": len(redone),
                **skip_fields(skipped),
                "bytes": sum(s["bytes"] for s in shards),
                "shards": len(shards),
                "seconds": round(seconds, 3),
                "clips_per_s": round(written / seconds, 2) if seconds > 0 else None,
            }
        )
    )
    return 0
