"""The folder ``avssl embed`` writes: one ``.npz`` per media file and ``embeddings.json``.

A file ``ROOT/sub/clip.mp4`` gets ``OUT/sub/clip.mp4.npz`` (its whole name kept, so ``clip.mp4``
and ``clip.wav`` do not collide), where ``ROOT`` is the deepest folder holding every input folder
and file of the folder's first run, files named by the path they were found by (a link by its
own name). Each ``.npz`` holds float32 arrays ``audio`` ``[Wa, Da]``, ``audio_time`` ``[Wa]``,
``visual`` ``[Wv, Dv]`` and ``visual_time`` ``[Wv]`` (window centres in seconds; a still image
has one visual row at time ``NaN``, a sound file no visual rows: an empty side is ``[0, D]`` of
its own width). ``embeddings.json``
records the settings every row was computed with and, per file, its source path, size and
modification time, so a second run embeds only new and changed files, and its device (``dev``),
so that ``--prune`` keeps the rows of a file on a disk no longer mounted.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from avssl.atomic_write import replacing, temp_names, temp_sibling, write_text
from avssl.errors import AvsslError
from avssl.model_inputs import input_changes

FORMAT = "avssl-embeddings-1"
ARRAYS = ("audio", "audio_time", "visual", "visual_time")
RECORD = "embeddings.json"
_RECORD_TEMP = re.compile(temp_names([RECORD]))
# what must match for a second run to add to a folder: rows of one folder stay comparable
SETTINGS = (
    "checkpoint_sha256",
    "hop",
    "layer",
    "unit",
    "method",
    "window",
    "sample_rate",
    "frame_size",
    "inputs",
)


def npz_name(rel: str) -> str:
    """The ``.npz`` of the media file at ``rel`` (relative to the root), relative to the folder."""
    return rel + ".npz"


def name_too_long(out: Path, rel: str) -> bool:
    """Whether the ``.npz`` of ``rel``, or the temporary file it is written through, would have
    a name longer than the file system allows: checked before a file is embedded, so such a file
    is skipped before this run changes the folder."""
    try:
        limit = os.pathconf(out, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no limit known
        limit = 255
    names = [*Path(rel).parts[:-1], temp_sibling(out / npz_name(rel)).name]
    return any(len(os.fsencode(name)) > limit for name in names)


def new_record(settings: dict, root: Path, checkpoint: str) -> dict:
    """An empty record.

    Args:
        settings: the values of :data:`SETTINGS`.
        root: the folder the files' names are relative to.
        checkpoint: the checkpoint's path (informative; its weights' hash is in ``settings``).
    """
    head = {"format": FORMAT, **settings, "checkpoint": checkpoint}
    return {**head, "root": str(root), "files": {}}


def load_record(out: Path) -> dict | None:
    """The record in ``out``, None when ``out`` is new or empty.

    Raises:
        AvsslError: ``out`` holds other files (never written into), or a damaged record.
    """
    path = out / RECORD
    if not path.is_file():
        # a run killed while writing its first record leaves only that record's temporary file
        if out.is_dir() and any(not _RECORD_TEMP.fullmatch(p.name) for p in out.iterdir()):
            raise AvsslError(
                f"{out}: a non-empty folder that is not an avssl embed folder (no {RECORD}); "
                "give an empty or new --out"
            )
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise AvsslError(f"{path}: unreadable ({type(err).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise AvsslError(f"{path}: not an avssl embed record (format {FORMAT!r} expected)")
    files = record.get("files")
    if not isinstance(files, dict) or not isinstance(record.get("root"), str):
        raise AvsslError(f"{path}: damaged record (its root or files)")
    for rel, entry in files.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("path"), str)
            or not _inside(out, npz_name(rel))
        ):
            raise AvsslError(f"{path}: damaged record (file {rel!r})")
    return record


def _inside(out: Path, rel: str) -> bool:
    """Whether ``rel`` names a file inside ``out`` (an edited record must not reach outside)."""
    if os.path.isabs(rel) or not rel:
        return False
    return ".." not in Path(rel).parts


def settings_change(record: dict, settings: dict) -> str | None:
    """What differs between ``record``'s settings and ``settings`` (None: nothing).

    ``inputs`` (the model's config keys that change what the weights compute,
    :func:`~avssl.model_inputs.input_settings`) are compared key by key, and only those the
    record holds: a folder written by the first version of ``avssl embed`` lacks them, and
    its later runs compare none (what its rows were computed with is not known).
    """
    diff = [
        f"{k} {record.get(k)!r} -> {settings[k]!r}"
        for k in SETTINGS
        if k != "inputs" and record.get(k) != settings[k]
    ]
    recorded = record.get("inputs")
    diff += input_changes(recorded if isinstance(recorded, dict) else {}, settings["inputs"])
    return ", ".join(diff) or None


def clear(out: Path, record: dict) -> int:
    """Delete the ``.npz`` files ``record`` lists (this tool's, nothing else); how many."""
    n = 0
    for rel in record["files"]:
        path = out / npz_name(rel)
        if path.is_file():
            path.unlink()
            n += 1
            for parent in path.parents:  # the folders it leaves empty, up to ``out``
                if parent == out or any(parent.iterdir()):
                    break
                parent.rmdir()
    return n


def save_record(out: Path, record: dict) -> None:
    """Write ``record`` (files in name order) atomically to ``out/embeddings.json``."""
    record = {**record, "files": dict(sorted(record["files"].items()))}
    write_text(out / RECORD, json.dumps(record, indent=1) + "\n")


def npz_intact(path: Path) -> bool:
    """Whether ``path`` is a ``.npz`` whose zip directory (at its end) lists the four arrays: a
    file cut short or overwritten is embedded again, without reading every array of the folder
    on each run."""
    try:
        with zipfile.ZipFile(path) as z:
            return set(z.namelist()) >= {f"{name}.npy" for name in ARRAYS}
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def write_npz(path: Path, emb) -> None:
    """Write one file's embeddings (a :class:`~avssl.tools.index_media.FileEmbeddings`)
    atomically to ``path``, creating its folder."""
    arrays = {name: getattr(emb, name).numpy().astype(np.float32) for name in ARRAYS}
    with replacing(path, make_parents=True) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
