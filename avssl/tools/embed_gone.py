"""The rows of an ``avssl embed`` folder whose files no longer exist: kept and counted, or
dropped with ``--prune`` where the file is surely gone rather than out of reach."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from avssl.cli import one_line
from avssl.errors import AvsslError
from avssl.tools import embed_store as store
from avssl.tools import index_media as media


def out_of_reach(path: Path, dev: int | None) -> bool:
    """Whether a recorded file that is missing may only be out of reach, not deleted.

    It may be when a link on its path leads nowhere, or when the nearest folder that exists is on
    another device than the one the file was embedded from (``dev``, its ``st_dev``): the mount
    point of a disk not mounted. A record written before devices were recorded (``dev`` None)
    takes an empty nearest folder for such a mount point (a clip's emptied folder looks the same).
    """
    for place in (path, *path.parents):
        if os.path.islink(place) and not place.exists():  # a link leading nowhere
            return True
        if place.exists():
            try:
                if dev is not None:
                    return place.stat().st_dev != dev
                return place.is_dir() and not any(place.iterdir())
            except OSError:  # a folder it cannot read: it cannot tell either
                return True
    return False


def gone_rows(out: Path, record: dict, given: set[str], prune: bool) -> dict:
    """Count, note or drop (``prune``) the rows of ``record``'s files that no longer exist.

    A file named in this run (``given``: record names) is never gone. Rows of a file that may
    only be out of reach (:func:`out_of_reach`) are kept even with ``prune``.

    Args:
        out: the embed folder.
        record: its record, updated and saved when rows are dropped.
        given: the names of the files this run found.
        prune: drop the rows of files surely gone.

    Returns:
        The summary's ``gone`` (rows kept of files missing) and ``pruned`` (rows dropped).

    Raises:
        AvsslError: ``prune`` would drop every row of the folder (nothing is dropped).
    """
    missing = [
        rel
        for rel, entry in record["files"].items()
        if rel not in given and media.stamp_change(entry) == media.MISSING
    ]
    files = record["files"]
    held = [r for r in missing if out_of_reach(Path(files[r]["path"]), _dev(files[r]))]
    drop = [r for r in missing if r not in held] if prune else []
    if drop and len(drop) == len(record["files"]):
        raise AvsslError(
            f"{out}: --prune would drop every row (none of its {len(drop)} files exists; an "
            "input on an unmounted disk looks the same): nothing dropped; delete the folder to "
            "start anew"
        )
    if drop:
        store.clear(out, {"files": dict.fromkeys(drop)})
        for rel in drop:
            del record["files"][rel]
        store.save_record(out, record)
    kept = [r for r in missing if r not in drop]
    if kept:
        first = one_line(record["files"][kept[0]]["path"])
        reach = "under a link leading nowhere, or on a disk not mounted now?"
        if prune:
            why = f"that may only be out of reach ({reach}), kept"
        elif len(kept) == len(files):  # a prune would be refused
            why = f"that no longer exist, every one ({reach}; --prune refuses to drop them all)"
        elif held:
            why = (f"that no longer exist (--prune drops {len(kept) - len(held)} of them; the "
                   f"other {len(held)} may only be out of reach: {reach})")  # fmt: skip
        else:
            why = "that no longer exist (--prune drops them)"
        print(f"note: {out}: keeps the rows of {len(kept)} file(s) {why}; first: {first}",
              file=sys.stderr)  # fmt: skip
    return {"gone": len(kept), "pruned": len(drop)}


def _dev(entry: dict) -> int | None:
    """The device an entry's file was embedded from, None when not recorded (or damaged)."""
    dev = entry.get("dev")
    return dev if isinstance(dev, int) and not isinstance(dev, bool) else None
