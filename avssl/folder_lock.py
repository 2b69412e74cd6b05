"""An exclusive lock on a folder a process writes into (a training run, a shard cache), so that
a second process started on the same folder is refused instead of interleaving its writes.

The lock is ``flock`` on the folder itself: no file is added, and the kernel releases it when
the holder ends, however it ends (forked children, such as DataLoader workers, close their copy
at once, so a killed holder's workers do not keep it). Where ``flock`` is missing (Windows) or
the file system does not support it (some network mounts), nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from avssl.errors import AvsslError

_HELD: set[int] = set()  # descriptors holding a lock in this process


def _close_in_child() -> None:
    # A forked child (a DataLoader worker) shares the lock's open file: left open there, it
    # would keep the lock after this process is killed, until the child noticed.
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


@contextlib.contextmanager
def hold_folder(folder: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while the block runs.

    Args:
        folder: an existing folder.
        busy: the reason of the error when another process holds it (after ``folder: ``).

    Raises:
        AvsslError: another process (or another open of the folder in this one) holds it.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AvsslError(f"{folder}: {busy}") from None
    except OSError:  # a file system without locks
        pass
    _HELD.add(fd)
    try:
        yield
    finally:
        if fd in _HELD:  # not in a forked child, which closed its copy at the fork
            _HELD.discard(fd)
            os.close(fd)  # releases the lock


@contextlib.contextmanager
def hold_output_folder(folder: Path, busy: str, kind: str) -> Iterator[bool]:
    """Create ``folder`` if needed and hold its lock (:func:`hold_folder`) while the block runs;
    a folder this made that is still empty when the block fails (a refusal, a stop) goes again,
    before the lock is released. A process refused the lock never removes the folder.

    Args:
        folder: the output folder of a command that adds to it (a shard cache, an index).
        busy: the error's reason when another process holds it.
        kind: what the folder must be, for the error when ``folder`` is a file ("an index
            directory").

    Yields:
        Whether the folder existed before.

    Raises:
        AvsslError: ``folder`` is a file, or another process holds the lock.
    """
    existed = folder.exists()
    if existed and not folder.is_dir():
        raise AvsslError(f"{folder}: exists and is not {kind}")
    folder.mkdir(parents=True, exist_ok=True)
    with hold_folder(folder, busy):
        try:
            yield existed
        except BaseException:
            # only while holding the lock: a process refused as busy may have found no folder
            # because another made it since, and holds it now
            if not existed and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # refused before anything was written: leave no folder
            raise
