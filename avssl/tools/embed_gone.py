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


def out_of_reach(path: Path, lost: list[str], tops: list[Path]) -> bool:
    """Whether a recorded file that is missing may only be out of reach, not deleted: under a
    link this run found leading nowhere (``lost``: the skipped inputs' absolute paths), or
    where the nearest folder that exists is empty and one of ``tops`` (the folder's root, this
    run's input folders) or above one, as the mount point of an unmounted disk is. An empty
    folder inside them is a file's folder emptied (one clip a folder), not a disk."""
    text = str(path)
    if any(text.startswith(x.rstrip(os.sep) + os.sep) for x in lost):
        return True
    for parent in path.parents:
        if parent.exists():
            if not any(parent == t or parent in t.parents for t in tops):
                return False
            try:
                return parent.is_dir() and not any(parent.iterdir())
            except OSError:  # a folder it cannot list: it cannot tell either
                return True
    return False


def gone_rows(
    out: Path, record: dict, given: set[str], skipped: list[dict], inputs: list[str], prune: bool
) -> dict:
    """Count, note or drop (``prune``) the rows of ``record``'s files that no longer exist.

    A file named in this run (``given``: record names) is never gone. Rows of a file that may
    only be out of reach (:func:`out_of_reach`) are kept even with ``prune``.

    Args:
        out: the embed folder; ``record`` its record, updated and saved when rows are dropped.
        given: the names of the files this run found; ``skipped``: the inputs it skipped;
            ``inputs``: its ``--inputs``.
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
    # the record's paths are absolute, links kept (find_media's): so are these
    lost = [os.path.abspath(s["path"]) for s in skipped]
    tops = [Path(record["root"])] + [Path(os.path.abspath(x)) for x in inputs]
    held = [r for r in missing if out_of_reach(Path(record["files"][r]["path"]), lost, tops)]
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
        reach = "under a link leading nowhere, or in an empty folder: a disk not mounted?"
        if prune:
            why = f"that may only be out of reach ({reach}), kept"
        elif held:
            why = (f"that no longer exist (--prune drops {len(kept) - len(held)} of them; the "
                   f"other {len(held)} may only be out of reach: {reach})")  # fmt: skip
        else:
            why = "that no longer exist (--prune drops them)"
        print(f"note: {out}: keeps the rows of {len(kept)} file(s) {why}; first: {first}",
              file=sys.stderr)  # fmt: skip
    return {"gone": len(kept), "pruned": len(drop)}
