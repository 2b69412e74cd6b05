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


def out_of_reach(path: Path, lost: list[str]) -> bool:
    """Whether a recorded file that is missing may only be out of reach, not deleted: under a
    link this run found leading nowhere (``lost``: the skipped inputs' paths), or in a folder
    that exists but is empty, as the mount point of an unmounted disk is."""
    text = str(path)
    if any(text.startswith(x.rstrip(os.sep) + os.sep) for x in lost):
        return True
    for parent in path.parents:
        if parent.exists():
            try:
                return parent.is_dir() and not any(parent.iterdir())
            except OSError:  # a folder it cannot list: it cannot tell either
                return True
    return False


def gone_rows(out: Path, record: dict, given: set[str], skipped: list[dict], prune: bool) -> dict:
    """Count, note or drop (``prune``) the rows of ``record``'s files that no longer exist.

    A file named in this run (``given``: record names) is never gone. Rows of a file that may
    only be out of reach (:func:`out_of_reach`) are kept even with ``prune``.

    Args:
        out: the embed folder; ``record`` its record, updated and saved when rows are dropped.
        given: the names of the files this run found; ``skipped``: the inputs it skipped.
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
    lost = [s["path"] for s in skipped]
    held = [r for r in missing if out_of_reach(Path(record["files"][r]["path"]), lost)]
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
        why = (
            "that may only be out of reach (under a link leading nowhere, or in an empty "
            "folder: a disk not mounted?), kept"
            if prune
            else "that no longer exist (--prune drops them)"
        )
        print(f"note: {out}: keeps the rows of {len(kept)} file(s) {why}; first: {first}",
              file=sys.stderr)  # fmt: skip
    return {"gone": len(kept), "pruned": len(drop)}
