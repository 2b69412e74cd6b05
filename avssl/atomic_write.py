"""Crash-safe file writes: a temporary file beside the target, renamed over it once complete.

The files avssl writes for later reading (checkpoints, manifests, shard sidecars, indexes, pages,
videos, reports) go through :func:`replacing`, so a reader sees the old file or the new one, never
half of one, and a failed write (a full disk, Ctrl-C, a codec error) leaves no partial file
behind. ``os.replace`` is atomic within one file system, which a temporary file in the target's
own folder guarantees. The exceptions write their own way on purpose: shard tars are streamed
into a ``.tmp`` name a resumed cache knows, and ``evaluate.py --out`` writes in place, through a
symlink the user made.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path


def temp_sibling(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """The temporary name :func:`replacing` writes to: hidden, beside ``path``, per process.

    Args:
        path: the target file.
        keep_suffix: end the name with ``path``'s suffix, for writers that pick a format by it
            (``.mp4``, ``.png``).
    """
    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def temp_names(names) -> str:
    """A regular expression (its source) matching the :func:`temp_sibling` names of files named
    ``names`` (without ``keep_suffix``) written by any process: what a process killed while
    writing one leaves behind."""
    return r"\.(?:{})\.tmp\d+".format("|".join(map(re.escape, names)))


@contextlib.contextmanager
def replacing(
    path: str | os.PathLike, keep_suffix: bool = False, make_parents: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write; rename it over ``path`` when the block ends normally.

    When the block raises (any exception, ``KeyboardInterrupt`` too) the temporary file is
    removed and ``path`` is left as it was; an ``OSError`` about the temporary file is made to
    name ``path`` instead (a full disk, a folder in the way), as messages quote it.

    Args:
        path: the target file (replaced, not written through, when it is a symlink); the new
            file takes the permission bits of the one it replaces (of a symlink's target).
        keep_suffix: see :func:`temp_sibling`.
        make_parents: create ``path``'s folder first.

    Yields:
        The temporary path, which does not exist yet.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, keep_suffix)
    try:
        yield tmp
        # the replaced file's permission bits, not a new file's defaults (a file a user made
        # read-only, or readable by a group, stays so); a new file, or a symlink that cannot be
        # followed, keeps the umask's mode
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        name = getattr(err, "filename", None)  # an OSError's; messages quote it
        if isinstance(name, (str, bytes, os.PathLike)) and os.fsdecode(name) == os.fsdecode(tmp):
            # the same error about the file the user asked for (str() shows a set filename2)
            raise type(err)(err.errno, err.strerror, os.fsdecode(path)).with_traceback(
                err.__traceback__
            ) from None
        raise


def write_bytes(path: str | os.PathLike, data: bytes, sync: bool = False, **kw) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`replacing`, whose options ``kw`` takes).

    Args:
        path: the target file.
        data: its new content.
        sync: flush the content to the disk before the rename; without it a power loss just
            after the rename can leave a file of the right name whose tail is zeros.
        **kw: options of :func:`replacing`.

    Returns:
        ``path``.
    """
    with replacing(path, **kw) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str, sync: bool = False, **kw) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; arguments as :func:`write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), sync=sync, **kw)
