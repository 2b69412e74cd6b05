"""Flickr-SoundNet localisation test set: images + audio + per-image XML boxes -> manifest.

The test pairs of Senocak et al., "Learning to Localize Sound Source in Visual Scenes"
(CVPR 2018, https://arxiv.org/abs/1803.03849), as used by "Localizing Visual Sounds the Hard
Way" (https://arxiv.org/abs/2104.02691): ``flickr_test.csv`` lists the ids (first column); each
id has an image, an audio file and ``{id}.xml`` in Pascal-VOC form (``<size><width>``,
``<height>``, one ``<object><bndbox><xmin>...`` per annotator box, in pixels). Boxes are
normalised by the image size given in the XML. Every row is split "test".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avssl.cli import ArgumentParser
from avssl.data.annotations import read_flickr_ids, read_flickr_xml
from avssl.errors import AvsslError, ManifestError
from avssl.prep.localization import index_stems, media_row, valid_box
from avssl.prep.report import add_common_args, finish_run, start_run


def read_voc_boxes(path: Path) -> list[list[float]]:
    """Normalised ``[x0, y0, x1, y1]`` boxes of a Pascal-VOC-like file, clipped to [0, 1].

    The file must give its ``<size>`` (:func:`avssl.data.annotations.read_flickr_xml`).

    Raises:
        ValueError: unparsable XML, missing size, no box, or a box that is not a box.
    """
    try:
        boxes = read_flickr_xml(path, image_size=None)
    except ManifestError as err:
        raise ValueError(str(err)) from None
    return [valid_box(b, f"{path}: box {k}") for k, b in enumerate(boxes)]


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
    xml = {p.stem: p for p in sorted((args.annotations or args.media).rglob("*.xml"))}
    stems = index_stems(args.media)
    for item in ids:
        if item not in xml:
            report.skip_missing(item, "no annotation file {id}.xml")
            continue
        try:
            boxes = read_voc_boxes(xml[item])
        except ValueError as err:
            report.skip_unreadable(item, str(err))
            continue
        media_row(report, item, stems.get(item), args.out, boxes, [])
    return finish_run(report, args)
