"""Flickr-SoundNet localisation test set: images + audio + per-image XML boxes -> manifest.

The test pairs of Senocak et al., "Learning to Localize Sound Source in Visual Scenes"
(CVPR 2018, https://arxiv.org/abs/1803.03849), as used by "Localizing Visual Sounds the Hard
Way" (https://arxiv.org/abs/2104.02691): ``flickr_test.csv`` lists the ids (first column); each
id has an image, an audio file and ``{id}.xml`` with one box per annotator, in pixels. Both
dialects of :func:`avssl.data.annotations.read_flickr_xml` are read: the published files (one
``<bbox>`` per annotator, no ``<size>``: pixels of the 256x256 SoundNet frames, as the reference
code divides them) and Pascal VOC (``<size>``, ``<object><bndbox>``), normalised by its size.
Every row is split "test". The boxes are stored twice: as ``boxes["sources"]``, read by every
measure, and as ``boxes["annotators"]``, which marks the row as Flickr data so that
``evaluate.py localize`` scores it with the Flickr consensus ground truth (the annotators' boxes
summed, halved and clipped to 1) rather than the VGG-SS union.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avssl.cli import ArgumentParser
from avssl.data.annotations import read_flickr_ids, read_flickr_xml
from avssl.data.walk import walk_files
from avssl.errors import AvsslError, ManifestError
from avssl.prep.localization import (
    clip_boxes,
    index_stems,
    lose_boxes,
    media_row,
    note_dropped,
    note_others,
)
from avssl.prep.report import add_common_args, finish_run, start_run


def read_annotation_boxes(path: Path) -> tuple[list[list[float]], dict[str, int]]:
    """Normalised ``[x0, y0, x1, y1]`` boxes of one annotation file, clipped to [0, 1].

    Returns:
        The boxes, and how many were left out by kind ("zero-area", "inverted": see
        :func:`avssl.prep.localization.clip_boxes`).

    Raises:
        ValueError: unparsable XML, no box, a box that is not a box, or a size or coordinate
            that is NaN or infinite.
    """
    try:
        boxes = read_flickr_xml(path)
    except ManifestError as err:
        raise ValueError(str(err)) from None
    return clip_boxes(boxes, str(path))


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl prepare flickr", description=__doc__.split("\n")[0])
    p.add_argument("--ids", type=Path, required=True, help="flickr_test.csv (id in column 1)")
    p.add_argument("--media", type=Path, required=True, help="folder of images and audio files")
    p.add_argument("--annotations", type=Path, help="folder of {id}.xml (default: --media)")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare flickr``: write the manifest and the report."""
    args = _parser().parse_args(argv)
    for folder in (args.media, args.annotations):
        if folder is not None and not folder.is_dir():
            raise AvsslError(f"{folder}: no such folder")
    if not args.ids.is_file():
        raise AvsslError(f"{args.ids}: no such id list")
    report = start_run("flickr", args)
    ids = read_flickr_ids(args.ids)
    if not ids:
        raise AvsslError(f"{args.ids}: no ids in the file")
    xml_dir = args.annotations or args.media
    xml = {p.stem: p for p in sorted(walk_files(xml_dir)) if p.suffix == ".xml"}
    others: dict = {}
    stems = index_stems(args.media, others)
    lost_boxes: dict[str, list[str]] = {}
    for item in ids:
        if item not in xml:
            report.skip_missing(item, f"no annotation file {item}.xml under {xml_dir}")
            continue
        try:
            boxes, dropped = read_annotation_boxes(xml[item])
        except ValueError as err:
            report.skip_unreadable(item, str(err))
            continue
        lose_boxes(lost_boxes, item, dropped)
        media_row(report, item, stems.get(item), args.out, boxes, [], annotators=True)
    note_dropped(report, lost_boxes)
    note_others(report, others, args.out)
    return finish_run(report, args)
