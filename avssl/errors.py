"""Errors that reach the user as one line (``error: FILE: reason``), never as a traceback."""

from __future__ import annotations

import os

MAX_LISTED_SKIPS = 50  # bad items a command's JSON summary lists (all are counted)


def skip_fields(skipped: list[dict]) -> dict:
    """The keys every dataset command reports the bad items it skipped with.

    Args:
        skipped: one dict per skipped item, each with its ``reason`` and what names the item
            (``id`` for a manifest row, with its ``split`` when the command reads several;
            ``path`` for a file).

    Returns:
        ``{"n_skipped": all of them, "skipped": the first MAX_LISTED_SKIPS}``.
    """
    return {"n_skipped": len(skipped), "skipped": list(skipped[:MAX_LISTED_SKIPS])}


class AvsslError(Exception):
    """Base class for user-facing errors; ``str(err)`` is the whole one-line message."""


class MediaError(AvsslError):
    """A media file cannot be used: missing, empty, corrupt, lacks a stream or is too short.

    Args:
        path: the file concerned.
        reason: short human-readable reason, e.g. ``"no audio stream"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LateAudioError(MediaError):
    """The audio track starts after the window asked for: training skips such a window, the
    tools that read whole files (``read_audio(..., silent_before=True)``) read silence before
    it."""


class ConfigError(AvsslError):
    """A configuration file or ``--set`` override is invalid.

    Attributes:
        config_file: the config file the message begins with when avssl named it there
            (:func:`avssl.config_decided.file_error`), else None; tells ``FILE: KEY: reason``
            apart from a refusal of a key that a file's name merely looks like (``./model``).
    """

    config_file: str | None = None


class UnknownMethodError(ConfigError):
    """``model.method`` names a method neither registered nor installed
    (:func:`avssl.models.plugins.unknown_method`)."""


class CheckpointError(AvsslError):
    """A checkpoint or run directory cannot be loaded."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ManifestError(AvsslError):
    """A manifest file or row is malformed."""


class TrainingError(AvsslError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class InputOverwriteError(AvsslError):
    """An output names a file the command reads (never overwritten, ``--force`` or not)."""


class Terminated(KeyboardInterrupt):
    """A SIGTERM that arrived before the training loop's stop flag (while the data loads or the
    model is built; :func:`avssl.sigterm.terminated_as_interrupt`): the run ends as a
    Ctrl-C there ends it, its folder discarded, with ``error: terminated (SIGTERM)`` and exit
    status 143, where the default action killed it silently and left the folder behind."""
