"""The files under a dataset folder, in an order that is the same on every filesystem.

Folders linked into the dataset folder (clips split across disks, a mounted bucket) are
followed, as the README promises that a linked dataset folder stays linked; each real folder
is read once, so a link to a parent folder does not loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk_files(folder: str | os.PathLike) -> Iterator[Path]:
    """Every file under ``folder`` (recursively, links followed), folder by folder in sorted
    order and each folder's files by name.

    Args:
        folder: the dataset folder.

    Yields:
        Paths as found through ``folder`` (links kept, not resolved). A link to nothing (a
        missing target, a loop) comes as a file, whatever it linked: the caller reports it
        (:func:`avssl.data.media_checks.broken_link`).
    """
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # reached again through a link: already read
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name
