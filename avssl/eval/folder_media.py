"""The media files of a dataset folder (``folder`` classes, UrbanSound8K ``fold*/`` folders
without their CSV), with what cannot be used counted rather than dropped unseen.

A name with a media extension that leads nowhere (a link to a missing target, a link loop) or
to no regular file (a FIFO, a socket) is a clip the user meant to give, and so is an
UrbanSound8K file whose name does not follow the dataset's ``fsID-classID-occurrence-slice``
scheme (its class is unknown without the CSV): both are recorded in the caller's ``bad`` list,
or raised when there is none (``--strict``). Sub-folders are not clips.
"""

from __future__ import annotations

import re
from pathlib import Path

from avssl.data.extensions import MEDIA_EXTS
from avssl.data.media_checks import broken_link
from avssl.errors import ManifestError

US8K_CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
                "engine_idling", "gun_shot", "jackhammer", "siren", "street_music")  # fmt: skip
US8K_NAME = re.compile(r"^(\d+)-(\d+)-\d+-\d+$")  # fsID-classID-occurrence-slice
_FOLD_DIR = re.compile(r"^fold(\d+)$")


def unusable(bad: list[dict] | None, path: Path, reason: str) -> None:
    """Record ``path`` as skipped for ``reason`` in ``bad``, or raise when ``bad`` is None.

    Raises:
        ManifestError: ``bad`` is None (``--strict``).
    """
    if bad is None:
        raise ManifestError(f"{path}: {reason}")
    bad.append({"path": str(path), "reason": reason})


def media_files(folder: Path, bad: list[dict] | None) -> list[Path]:
    """The media files directly in ``folder``, in name order; a media name that is a link to
    nothing, or names no regular file (a FIFO, a socket, a device), is recorded in ``bad``
    (see :func:`unusable`) instead, with the reason ``avssl index`` gives
    (:func:`~avssl.data.media_checks.broken_link`, ``not a regular file``).

    Args:
        folder: the folder listed.
        bad: collects the unusable names; None raises on the first.
    """
    files = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in MEDIA_EXTS or path.is_dir():
            continue
        if why := broken_link(path):
            unusable(bad, path, why)
        elif path.is_file():
            files.append(path)
        else:  # a FIFO, socket or device named as media (or a link to one) holds none to read
            unusable(bad, path, "not a regular file")
    return files


def us8k_by_names(root: Path, bad: list[dict] | None) -> list[tuple[Path, str, str, str]]:
    """UrbanSound8K clips found in ``ROOT/audio/fold*/`` (or ``ROOT/fold*/``) by their names
    alone (no CSV).

    Args:
        root: the dataset folder.
        bad: collects media files named otherwise and links to nothing; None raises.

    Returns:
        ``(path, label, fold, fsID)`` of each clip.

    Raises:
        ManifestError: no ``fold*/`` folder, or (``bad`` None) an unusable file.
    """
    audio = root / "audio" if (root / "audio").is_dir() else root
    folds = [d for d in sorted(audio.iterdir()) if d.is_dir() and _FOLD_DIR.match(d.name)]
    if not folds:
        raise ManifestError(f"{root}: no metadata/UrbanSound8K.csv and no fold*/ folders")
    clips = []
    for folder in folds:
        fold = _FOLD_DIR.match(folder.name).group(1)
        for path in media_files(folder, bad):
            m = US8K_NAME.match(path.stem)
            if m is None:
                why = "name is not fsID-classID-occurrence-slice (no metadata/UrbanSound8K.csv)"
                unusable(bad, path, why)
                continue
            class_id = int(m.group(2))
            label = US8K_CLASSES[class_id] if class_id < len(US8K_CLASSES) else str(class_id)
            clips.append((path, label, fold, m.group(1)))
    return clips
