"""Shared by the localisation test sets (VGG-SS, Flickr-SoundNet): find media by file stem.

Both benchmarks are distributed as one annotated frame plus audio per item, sometimes as the
whole video instead; files are found anywhere under the media folder by their stem.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from avssl.data.annotations import parse_box
from avssl.data.extensions import AUDIO_EXTS, IMAGE_EXTS, VIDEO_EXTS
from avssl.data.manifest import Row
from avssl.data.walk import walk_files
from avssl.errors import ManifestError
from avssl.prep.report import PrepReport, file_problem, relpath

INVERTED, ZERO_AREA = "inverted", "zero-area"  # the kinds of box clip_boxes drops


def index_stems(
    folder: str | os.PathLike, others: dict[str, list[tuple[Path, Path]]] | None = None
) -> dict[str, dict[str, Path]]:
    """``{stem: {"image"|"audio"|"video": path}}`` of the media files under ``folder``.

    The first file of each kind in sorted path order wins.

    Args:
        folder: the media folder, walked recursively.
        others: when given, each file that lost so is added to it as ``(winner, file)`` under
            its stem, for :func:`note_others`.
    """
    found: dict[str, dict[str, Path]] = {}
    for p in walk_files(folder):
        ext = p.suffix.lower()
        kind = (
            "image" if ext in IMAGE_EXTS
            else "audio" if ext in AUDIO_EXTS
            else "video" if ext in VIDEO_EXTS
            else None
        )  # fmt: skip
        if kind is not None:
            kept = found.setdefault(p.stem, {}).setdefault(kind, p)
            if kept != p and others is not None:
                others.setdefault(p.stem, []).append((kept, p))
    return found


def note_others(report: PrepReport, others: dict[str, list[tuple[Path, Path]]], out: Path) -> None:
    """Tell the user which written items had another file of a kind they use (``others``, from
    :func:`index_stems`): the first in path order was used, which may not be the picture the
    boxes were drawn on."""
    found = []
    for row in report.rows:
        used = {row.image, row.video, row.audio}
        if pairs := [(a, b) for a, b in others.get(row.id, []) if relpath(a, out) in used]:
            found.append((row.id, *pairs[0]))
    if found:
        item, kept, other = found[0]
        report.note(
            f"items found as two files of one kind: {len(found)} ({item}: {kept} used, not "
            f"{other}); the first in path order is used: keep one per item if that is not it"
        )


def usable(files: dict[str, Path] | None) -> bool:
    """Whether :func:`index_stems` found what :func:`media_row` makes a row of: a video, or an
    image with an audio file."""
    return files is not None and ("video" in files or {"image", "audio"} <= files.keys())


def media_row(
    report: PrepReport,
    item: str,
    files: dict[str, Path] | None,
    out: Path,
    boxes: list[list[float]],
    labels: list[str],
    annotators: bool = False,
    span: tuple[float, float | None] = (0.0, None),
) -> None:
    """Add a test row for ``item``: image + audio if both exist, else a video with sound.

    Items with neither are recorded as missing; an empty file or a broken link as unreadable.

    Args:
        report: the run's report, which collects the row (or the miss).
        item: the row id.
        files: ``{"image"|"audio"|"video": path}`` from :func:`index_stems`, or ``None``.
        out: the output folder (media paths are written relative to it).
        boxes: normalised ``[x0, y0, x1, y1]`` boxes, stored as ``boxes["sources"]``.
        labels: the row's labels.
        annotators: each box is one annotator's box of the same source (Flickr-SoundNet): they
            are also stored as ``boxes["annotators"]``, which ``evaluate.py localize`` scores
            with the Flickr consensus protocol by default.
        span: the row's ``(start, end)`` in seconds within a video (``end`` None: its end).
    """
    files = files or {}
    image, audio, video = files.get("image"), files.get("audio"), files.get("video")
    if image is not None and (audio is not None or video is not None):
        used = {"image": image, "audio": audio or video}
    elif video is not None:
        used = {"video": video, "audio": audio}
    else:
        have = ", ".join(sorted(files)) or "nothing"
        report.skip_missing(item, f"need an image and audio, or a video (found {have})")
        return
    for path in filter(None, used.values()):
        if (problem := file_problem(path)) is not None:
            report.skip_unreadable(item, f"{path}: {problem}")
            return
    fields = {k: None if p is None else relpath(p, out) for k, p in used.items()}
    row_boxes = {"sources": boxes}
    if annotators:
        row_boxes["annotators"] = [list(b) for b in boxes]
    start, end = span
    report.add(
        Row(item, **fields, start=start, end=end, labels=labels, split="test", boxes=row_boxes)
    )


def clip_boxes(boxes, where: str) -> tuple[list[list[float]], dict[str, int]]:
    """Normalised ``[x0, y0, x1, y1]`` boxes clipped to [0, 1], without those that cover nothing.

    The reference evaluations draw such a box as nothing and still score its item (the real
    ``vggss.json`` has 18 items with one, 2 with nothing else), so the box is dropped here rather
    than the item. It is "inverted" when published with ``x0 > x1`` or ``y0 > y1`` (12 of those
    items, by a -2.9e16 coordinate), else "zero-area": no width or height once clipped.

    Returns:
        The boxes kept, and how many were dropped by kind (``{"inverted": n, ...}``).

    Raises:
        ValueError: a box that is not four finite numbers.
    """
    kept, dropped = [], {}
    for k, box in enumerate(boxes):
        try:
            raw = parse_box(box, where)
        except ManifestError:
            raise ValueError(f"{where}: box {k} is not four numbers: {box!r}") from None
        if not all(map(math.isfinite, raw)):
            raise ValueError(f"{where}: box {k} has a coordinate that is not finite: {box!r}")
        x0, y0, x1, y1 = (min(1.0, max(0.0, v)) for v in raw)
        if raw[0] > raw[2] or raw[1] > raw[3]:
            kind = INVERTED
        elif x1 <= x0 or y1 <= y0:
            kind = ZERO_AREA
        else:
            kept.append([x0, y0, x1, y1])
            continue
        dropped[kind] = dropped.get(kind, 0) + 1
    return kept, dropped


def note_dropped(report: PrepReport, items: dict[str, list[str]]) -> None:
    """Tell the user which written items lost boxes of each kind (``{kind: [item, ...]}``, as
    counted by :func:`clip_boxes`), each item once; items skipped for their media are not
    counted."""
    written = {row.id for row in report.rows}
    for kind in (ZERO_AREA, INVERTED):
        # a duplicated id is one item
        found = [item for item in dict.fromkeys(items.get(kind, [])) if item in written]
        if not found:
            continue
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        report.note(
            f"items with {kind} boxes: {len(found)} ({shown}); the boxes are left out (the "
            "reference evaluation draws them as nothing) and an item with no box left scores 0 "
            "in localize"
        )


def lose_boxes(lost: dict[str, list[str]], item: str, dropped: dict[str, int]) -> None:
    """Add ``item`` to ``lost[kind]`` for each kind of box :func:`clip_boxes` dropped."""
    for kind in dropped:
        lost.setdefault(kind, []).append(item)
