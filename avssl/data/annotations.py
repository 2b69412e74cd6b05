"""Parsers of the published localisation annotations: VGG-SS ``vggss.json``, Flickr-SoundNet XML.

Shared by the evaluation (:mod:`avssl.eval.localization`) and the preparation scripts
(:mod:`avssl.prep.vggss`, :mod:`avssl.prep.flickr`). Boxes are returned as published, normalised
``[x0, y0, x1, y1]``: callers decide how to treat degenerate or out-of-range values (the
evaluation clips them when drawing its ground-truth map, the manifests clip them to [0, 1]).

VGG-SS: Chen et al., "Localizing Visual Sounds the Hard Way", CVPR 2021,
https://arxiv.org/abs/2104.02691. Flickr-SoundNet: Senocak et al., "Learning to Localize Sound
Source in Visual Scenes", CVPR 2018, https://arxiv.org/abs/1803.03849.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from avssl.data.textfile import csv_fields, read_json_list, text_lines
from avssl.errors import ManifestError

ITEM_ID = re.compile(r"[\w.-]+")  # an item id of an id list: a file stem
FLICKR_IMAGE_SIZE = 256  # side the reference evaluation assumes when the XML gives no <size>
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def parse_box(values, where: str) -> list[float]:
    """Four numbers ``[x0, y0, x1, y1]`` from ``values``.

    Args:
        values: the four coordinates, as numbers or numeric strings (a JSON list, XML texts).
        where: where the box comes from (file and entry), prefixed to the error message.

    Raises:
        ManifestError: naming ``where``, if they are not four numbers.
    """
    try:
        box = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: box coordinates are not numbers") from None
    if len(box) != 4:
        raise ManifestError(f"{where}: a box needs 4 coordinates, got {len(box)}")
    return box


def load_vggss(path: str | os.PathLike) -> list[dict]:
    """The raw entries of ``vggss.json``: a list of ``{"file", "class", "bbox": [[...], ...]}``.

    The entries are not checked: callers decide whether one that is not an object is fatal.

    Raises:
        ManifestError: unreadable, not UTF-8 text, not JSON, or not a list.
    """
    return read_json_list(path, "objects")


def read_vggss(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    """``vggss.json`` -> ``{file: boxes}``, every entry checked.

    Boxes are kept as published; a few are degenerate or hold huge negative values (e.g.
    -2.88e16), which :func:`avssl.eval.localization.gt_map` clips to empty.

    Raises:
        ManifestError: as :func:`load_vggss`, or an entry that is not an object, lacks
            ``file``/``bbox`` or has a box that is not four numbers.
    """
    out = {}
    for k, entry in enumerate(load_vggss(path)):
        if not isinstance(entry, dict):
            raise ManifestError(f"{path}: entry {k} is not a JSON object")
        if "file" not in entry or "bbox" not in entry:
            raise ManifestError(f"{path}: entry {k} has no 'file' or 'bbox'")
        out[str(entry["file"])] = [parse_box(b, f"{path}: entry {k}") for b in entry["bbox"]]
    return out


def read_flickr_ids(path: str | os.PathLike) -> list[str]:
    """Ids of a CSV list such as ``flickr_test.csv`` or ``vggss_test.csv``: the first column of
    each non-empty row. An id is a file stem (letters, digits, ``_``, ``-``, ``.``).

    Raises:
        ManifestError: the file cannot be read, is not UTF-8 text, or is no id list (a first
            column that is no file stem, e.g. ``vggss.json`` given for the list).
    """
    ids = []
    for n, line in enumerate(text_lines(path), 1):
        row = csv_fields(line, f"{path}:{n}")
        if row and (item := row[0].strip()):
            if not ITEM_ID.fullmatch(item):
                raise ManifestError(
                    f"{path}: not an id list (row {n} starts with {item[:40]!r}, not a file id)"
                )
            ids.append(item)
    return ids


def _check_finite(path: Path, what: str, text: str | None) -> None:
    """Refuse ``nan`` or ``inf`` (which Python reads as numbers: a NaN box would clip to 0 and
    an infinite size turn every coordinate into 0); text that is no number is left to the
    caller's own check."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return
    if not math.isfinite(value):
        raise ManifestError(f"{path}: {what} is {text.strip()!r}, not a finite number")


def _image_size(root: ET.Element, path: Path, default: int | None) -> tuple[float, float]:
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width is None and height is None and default is not None:
        return float(default), float(default)
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}: no <size><width>/<height>") from None
    for name, text in (("width", width), ("height", height)):
        _check_finite(path, f"<size> <{name}>", text)
    if w <= 0 or h <= 0:
        raise ManifestError(f"{path}: image size {w:g}x{h:g}")
    return w, h


def read_flickr_xml(
    path: str | os.PathLike, image_size: int | None = FLICKR_IMAGE_SIZE
) -> list[list[float]]:
    """Boxes of one Flickr-SoundNet annotation file, normalised by the image size.

    Two dialects are read: the reference's (one ``<bbox>`` per annotator, no ``<size>``, pixel
    coordinates of a ``image_size``-pixel square image) and Pascal VOC (``<size><width>``,
    ``<height>``, ``<object><bndbox>``). Coordinates come from the ``<xmin> <ymin> <xmax>
    <ymax>`` children; when those tags are missing, the reference's positional reading is used
    (skip the first child, take the next four). A file's ``<size>`` takes precedence over
    ``image_size``; with ``image_size`` None the ``<size>`` is required.

    Args:
        path: the XML annotation file.
        image_size: side in pixels of the square image assumed when the file has no ``<size>``;
            ``None`` to require one.

    Returns:
        ``[[x0, y0, x1, y1], ...]``, pixels divided by the width (x) and height (y).

    Raises:
        ManifestError: unreadable XML, no usable size, no box, a box without four numbers, or
            a size or coordinate that is NaN or infinite.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read ({err.strerror})") from None
    except ET.ParseError as err:
        raise ManifestError(f"{path}: not XML ({err})") from None
    w, h = _image_size(root, path, image_size)
    boxes = []
    for k, bbox in enumerate(e for e in root.iter() if e.tag in ("bbox", "bndbox")):
        named = [bbox.findtext(t) for t in _CORNERS]
        if None in named:
            fields = [(c.tag, c.text) for c in list(bbox)[1:5]]
        else:
            fields = list(zip(_CORNERS, named, strict=True))
        for tag, text in fields:
            _check_finite(path, f"box {k} <{tag}>", text)
        x0, y0, x1, y1 = parse_box([text for _, text in fields], f"{path}: box {k}")
        boxes.append([x0 / w, y0 / h, x1 / w, y1 / h])
    if not boxes:
        tag = "bndbox" if root.find("size") is not None else "bbox"
        raise ManifestError(f"{path}: no <{tag}> element")
    return boxes
