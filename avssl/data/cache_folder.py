"""The folder of a shard cache (``avssl cache``): opened (created, or an earlier build of the
same manifest, settings and order reopened to resume), checked against the rows being cached,
and put back as it was when a run writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from avssl.atomic_write import write_bytes
from avssl.data.manifest import Row
from avssl.data.shard_checks import changed_rows
from avssl.data.shard_entries import check_index
from avssl.data.shard_writer import complete_shards
from avssl.data.shards import INDEX, train_fit
from avssl.errors import AvsslError

# a decode setting by the config key that sets it (the train split's frame size: data.load_size
# when data.augment is on, else data.frame_size; avssl.data.shards.split_size)
_SETTING = {
    "fps": "data.fps",
    "sample_rate": "data.sample_rate",
    "train_size": "the train frame size (data.load_size, data.frame_size)",
    "eval_size": "data.frame_size",
    "train_fit": "data.frame_fit",  # recorded when not squash (avssl.data.shards.train_fit)
}


def _setting(settings: dict, key: str):
    """A decode setting's value as a message names it (an unrecorded fit is ``squash``)."""
    return train_fit(settings) if key == "train_fit" else settings.get(key)


def open_cache(out: Path, settings: dict, seed: int) -> tuple[list[dict], list[dict], dict]:
    """Create or reopen a cache folder.

    Returns:
        The shards already complete, the clips the last run recorded as skipped, and the shard
        limits it recorded (``shard_size``, ``shard_mb``; empty when unknown).

    Raises:
        AvsslError: ``out`` is a file, a folder holding other things than a cache, or a cache
            of other decode settings or written in another order.
    """
    if out.exists() and not out.is_dir():
        raise AvsslError(f"{out}: exists and is not a directory")
    index_path = out / INDEX
    if out.is_dir() and any(out.iterdir()) and not index_path.exists():
        raise AvsslError(
            f"{out}: a folder that is not a shard cache (no {INDEX}); choose an empty or new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    skipped, limits = [], {}
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AvsslError(f"{index_path}: unreadable shard cache index ({err})") from None
        check_index(index_path, index)  # a damaged record is one line, not a traceback
        old = index["settings"]
        keys = sorted(set(old) | set(settings), key=str)
        diff = [f"{_SETTING.get(k, k)} {_setting(old, k)!r}, now {_setting(settings, k)!r}"
                for k in keys if _setting(old, k) != _setting(settings, k)]  # fmt: skip
        if diff:
            raise AvsslError(
                f"{out}: a cache built with other decode settings ({'; '.join(diff)}); "
                "choose another --out or delete it"
            )
        if index.get("order_seed") not in (None, seed):
            raise AvsslError(
                f"{out}: its shards were written in the order of seed {index['order_seed']}; "
                f"pass --seed {index['order_seed']} to resume it, or choose another --out"
            )
        skipped = index.get("skipped", [])
        limits = index.get("shard_limits")
        limits = limits if isinstance(limits, dict) else {}
    return complete_shards(out), skipped, limits


def refuse_foreign(out: Path, done: list[dict], manifest: Path, rows: list[Row]) -> None:
    """Refuse to add a manifest's clips to a cache that holds clips of rows it lacks: a cache
    of another manifest (its index would name only the last one, and a damaged shard of the
    first could not be redone). The same manifest by another path, or extended, resumes.

    Args:
        out: the cache folder.
        done: its complete shards (each lists its ``ids``).
        manifest: the manifest being cached.
        rows: all its rows (every split).
    """
    known = {r.id for r in rows}
    foreign = [i for s in done for i in s["ids"] if i not in known]
    if foreign:
        raise AvsslError(
            f"{out}: holds {len(foreign)} clip(s) of rows {manifest} does not have (e.g. "
            f"{foreign[0]!r}): cached from another manifest, or from rows since removed; cache "
            "this one into another --out"
        )


def refuse_changed(out: Path, done: list[dict], rows: list[Row]) -> None:
    """Refuse to resume a cache holding clips of manifest rows that have since changed: the
    shards are append-only, so they cannot be re-decoded in place."""
    changed = changed_rows(out, done, rows)
    if changed:
        named = ", ".join(repr(i) for i in changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise AvsslError(
            f"{out}: {len(changed)} cached row(s) changed in the manifest since they were cached "
            f"({named}); cache into a new --out, or delete this cache to rebuild it"
        )


def undo_start(out: Path, existed: bool, old_index: bytes | None) -> None:
    """Put ``out`` back as :func:`open_cache` and the first index write found it."""
    if old_index is not None:
        write_bytes(out / INDEX, old_index)
        return
    (out / INDEX).unlink(missing_ok=True)
    if not existed:
        out.rmdir()


def index_record(
    settings, manifest, shards, skipped, complete: bool, seed=None, limits=None
) -> dict:
    """The ``index.json`` record of a cache (``complete``: the build finished; ``limits``: the
    ``shard_size`` and ``shard_mb`` its shards are written to). The manifest is recorded by its
    absolute path: the cache is read from other working directories."""
    return {
        **({"shard_limits": limits} if limits else {}),
        "settings": settings,
        "order_seed": seed,
        "manifest": str(Path(manifest).absolute()),
        "complete": complete,
        "n_samples": sum(s["n"] for s in shards),
        "shards": sorted(shards, key=lambda s: s["name"]),
        "skipped": skipped,
    }
