"""The commands' side of loading a checkpoint: the ``note:`` that a run folder without
``best.pt`` is read from its ``last.pt`` (the library itself prints nothing)."""

from __future__ import annotations

import os
import sys

from avssl.cli import one_line

_NOTED: set[str] = set()  # the checkpoint notes printed by this process


def note_checkpoint(path: str | os.PathLike | None) -> None:
    """Print on stderr, as a ``note:`` line, that a run folder given as a checkpoint has no
    ``best.pt``, so its ``last.pt`` is read (:func:`~avssl.train.checkpoint.no_best_note`).

    Once per process for each folder: a command may read a run's config before its weights.
    Commands call it before they read ``path`` (:func:`load_command_model` does, before it
    loads the model); the library itself prints nothing.

    Args:
        path: the checkpoint file or run folder the command loads (None: nothing to say).
    """
    from avssl.train.checkpoint import no_best_note

    note = no_best_note(path)
    if note is not None and note not in _NOTED:
        _NOTED.add(note)
        print(f"note: {one_line(note)}", file=sys.stderr)


def load_command_model(path: str | os.PathLike, device="cpu", check=None):
    """A command's load of a checkpoint's model: :func:`note_checkpoint`, then
    :func:`avssl.train.checkpoint.load_model` (which prints nothing), so that every command
    that loads a model says when a run folder's ``last.pt`` stands in for its ``best.pt``.

    Args:
        path: a checkpoint file or a run folder.
        device: where the model goes (a ``torch.device`` or its name).
        check: a function of the checkpoint's config, run before the model is built.

    Returns:
        ``(model, config, state)`` as :func:`~avssl.train.checkpoint.load_model` returns them.
    """
    from avssl.train import checkpoint

    note_checkpoint(path)
    return checkpoint.load_model(path, device, check=check)
