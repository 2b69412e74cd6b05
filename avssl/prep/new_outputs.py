"""What one preparation run creates, removed again when the run fails part-way.

A run that stops on bad input after it has written some of its outputs would otherwise leave
them behind, and the corrected rerun would be refused (its outputs "already exist") unless
``--force``. :class:`NewOutputs` records each file and folder the run creates, that is each
one that did not exist when the run claimed it, and :meth:`NewOutputs.removed_on_failure`
removes exactly those when the run raises. Files and folders that existed before the run
(those a ``--force`` run overwrites, a folder the user made for it) are never removed, and a
created folder is only removed once empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class NewOutputs:
    """The files and folders one run created, in creation order."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def folder(self, path: str | os.PathLike) -> Path:
        """Create the folder ``path`` and its missing parents, recording those it creates.

        Returns:
            ``path`` as a :class:`Path`.
        """
        path = Path(path)
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for p in reversed(missing):  # outermost first
            with suppress(FileExistsError):
                p.mkdir()
                self.folders.append(p)
        return path

    def file(self, path: str | os.PathLike) -> Path:
        """Claim the file ``path`` about to be written: recorded unless it exists already.

        Returns:
            ``path`` as a :class:`Path`.
        """
        path = Path(path)
        if not os.path.lexists(path):
            self.files.append(path)
        return path

    def remove(self) -> None:
        """Remove the recorded files, then the recorded folders that are empty (innermost
        first); what cannot be removed is left."""
        for path in reversed(self.files):
            with suppress(OSError):
                path.unlink()
        for path in reversed(self.folders):
            with suppress(OSError):  # not empty: something else was put there
                path.rmdir()
        self.files, self.folders = [], []

    @contextmanager
    def removed_on_failure(self) -> Iterator[NewOutputs]:
        """Run the block; if it raises (an error or an interrupt, SIGTERM included),
        :meth:`remove` and re-raise.

        Yields:
            This record, to claim files and create folders with.
        """
        from avssl.sigterm import terminated_as_interrupt

        try:
            with terminated_as_interrupt():  # a SIGTERM (timeout, a scheduler) as a Ctrl-C
                yield self
        except BaseException:
            self.remove()
            raise
