"""An exclusive lock on a folder a process writes into (a training run, a shard cache), so that
a second process started on the same folder is refused instead of interleaving its writes.

The lock is ``flock`` on the folder itself: no file is added, and the kernel releases it when the
holder ends, however it ends. Where ``flock`` is missing (Windows) or the file system does not
support it (some network mounts), nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from avssl.errors import AvsslError


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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AvsslError(f"{folder}: {busy}") from None
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)  # releases the lock
