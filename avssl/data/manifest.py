"""JSON-lines manifests: one row per clip, written by every ``prepare.py`` and read by all else.

A row::

    {"id": "abc", "video": "rel/path.mp4", "audio": null, "start": 30.0, "end": 40.0,
     "labels": ["/m/09x0r"], "split": "train", "boxes": null}

``video`` may be replaced by ``image`` (a still image counts as a one-frame video). ``audio`` is
an optional separate audio file; when absent the video's own audio track is used. Paths are
relative to the manifest's folder. ``split`` is train, val or test (a row without one is a
training row). Each ``id`` is unique within its manifest. ``boxes`` is ``null`` or ``{"sources":
[[x0, y0, x1, y1], ...]}`` with coordinates normalised to [0, 1] (one box per sounding source or
per annotator; other keys, such as ``distractors``, hold boxes too), ``x0 < x1`` and ``y0 < y1``.
The optional ``frame_labels`` lists the classes of everything visible in the picture when that
is more than ``labels`` (AV-Digits canvases: the spoken digit and the distractor digits); the
contrastive loss can leave such pictures out of a sound's negatives (``loss.mask_same_label``).
The optional ``domain`` names a nuisance group of the clip, such as its speaker (AV-Digits), that
the embedding should not encode; ``loss.domain_adversary`` trains against it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avssl.atomic_write import replacing
from avssl.data.annotations import parse_box
from avssl.errors import ManifestError

SPLITS = ("train", "val", "test")


@dataclass
class Row:
    """One clip of a manifest (see the module docstring for the JSON form)."""

    id: str
    video: str | None = None
    image: str | None = None
    audio: str | None = None
    start: float = 0.0
    end: float | None = None
    labels: list[str] = field(default_factory=list)
    split: str = "train"
    boxes: dict | None = None
    frame_labels: list[str] | None = None
    domain: str | None = None

    @property
    def visual(self) -> str:
        """Relative path of the visual medium (video or image)."""
        return self.video if self.video is not None else self.image  # type: ignore[return-value]

    @property
    def duration(self) -> float | None:
        """Clip length (s), ``end - start``; None without an ``end``."""
        return None if self.end is None else self.end - self.start

    def to_json(self) -> dict:
        """The manifest line's fields: ``video`` or ``image`` (the one set), and
        ``frame_labels`` / ``domain`` only when set."""
        d = asdict(self)
        if d["image"] is None:
            d.pop("image")
        else:
            d.pop("video")
        for key in ("frame_labels", "domain"):
            if d[key] is None:
                d.pop(key)
        return d


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _string_list(value, key: str, where: str) -> list[str]:
    """``value`` as a list of strings (whole numbers, such as digit classes, are accepted)."""
    if not isinstance(value, list) or not all(
        isinstance(x, str | int) and not isinstance(x, bool) for x in value
    ):
        raise ManifestError(f"{where}: '{key}' must be a list of strings, not {_short(value)}")
    return [str(x) for x in value]


BOX_SLACK = 0.01  # rounding in annotation tools; a pixel coordinate is far outside


def _check_boxes(value, where: str) -> dict | None:
    """``boxes`` with every box checked: four finite numbers with ``x0 < x1`` and ``y0 < y1``."""
    if value is None:
        return None
    if not isinstance(value, dict) or "sources" not in value:
        raise ManifestError(
            f"{where}: 'boxes' must be null or {{\"sources\": [[x0, y0, x1, y1], ...]}}, "
            f"not {_short(value)}"
        )
    checked = {}
    for key, boxes in value.items():
        if not isinstance(boxes, list):
            raise ManifestError(f"{where}: 'boxes.{key}' must be a list of [x0, y0, x1, y1] boxes")
        checked[key] = []
        for k, raw in enumerate(boxes):
            at = f"{where}: boxes.{key}[{k}]"
            if not isinstance(raw, list) or any(isinstance(v, bool | str) for v in raw):
                raise ManifestError(f"{at}: a box must be a list of 4 numbers, not {_short(raw)}")
            box = parse_box(raw, at)
            if not all(math.isfinite(v) for v in box):
                raise ManifestError(f"{at}: box coordinates must be finite, not {_short(raw)}")
            if box[0] >= box[2] or box[1] >= box[3]:
                raise ManifestError(
                    f"{at}: empty or inverted box {_short(raw)} (need x0 < x1, y0 < y1)"
                )
            if not all(-BOX_SLACK <= v <= 1 + BOX_SLACK for v in box):
                raise ManifestError(
                    f"{at}: box {_short(raw)} is not normalised to [0, 1] (pixel coordinates? "
                    "divide by the frame's width and height)"
                )
            checked[key].append(box)
    return checked


def _check_scalars(obj: dict, at: str) -> None:
    """Refuse an ``id`` or ``domain`` that is no text or whole number (``null``, a list, an
    object or a boolean became the text ``"None"``, ``"[1, 2]"``, ``"True"``), a blank ``id``,
    and a ``start`` or ``end`` that is a boolean (``true`` was read as 1 s) or no number."""
    for key in ("id", "domain"):
        value = obj.get(key)
        if value is None and key == "domain":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ManifestError(f"{at}: '{key}' must be a string, not {_short(value)}")
        if key == "id" and not str(value).strip():
            raise ManifestError(f"{at}: '{key}' must not be blank")
    for key in ("start", "end"):
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str | None):
            raise ManifestError(f"{at}: '{key}' must be a number of seconds, not {_short(value)}")


def row_from_json(obj: dict, where: str = "") -> Row:
    """Validate and convert one decoded JSON object into a :class:`Row`.

    Args:
        obj: one decoded manifest line.
        where: where it comes from (``file:line``), prefixed to error messages.

    Raises:
        ManifestError: naming ``where`` and the row, for the first malformed field.
    """
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: a row must be a JSON object")
    if "id" not in obj:
        raise ManifestError(f"{where}: row has no 'id'")
    if obj.get("video") is None and obj.get("image") is None:
        raise ManifestError(f"{where}: row {obj['id']!r} has neither 'video' nor 'image'")
    if obj.get("video") is not None and obj.get("image") is not None:
        raise ManifestError(f"{where}: row {obj['id']!r} has both 'video' and 'image' (keep one)")
    unknown = set(obj) - {f for f in Row.__dataclass_fields__}
    if unknown:
        raise ManifestError(f"{where}: row {obj['id']!r} has unknown keys {sorted(unknown)}")
    at = f"{where}: row {obj['id']!r}"
    for key in ("video", "image", "audio"):
        value = obj.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ManifestError(
                f"{at}: '{key}' must be a file path (a non-empty string), not {_short(value)}"
            )
    # a row without "split" has always been read as a training row (galleries leave it out)
    if obj.get("split", "train") not in SPLITS:
        raise ManifestError(
            f"{at}: 'split' must be one of {', '.join(SPLITS)}, not {_short(obj['split'])}"
        )
    _check_scalars(obj, at)
    try:
        row = Row(**obj)
        row.start = float(row.start or 0.0)
        row.end = None if row.end is None else float(row.end)
        row.id = str(row.id)
    except (TypeError, ValueError) as err:
        raise ManifestError(f"{at}: {err}") from None
    row.labels = [] if row.labels is None else _string_list(row.labels, "labels", at)
    if row.frame_labels is not None:
        row.frame_labels = _string_list(row.frame_labels, "frame_labels", at)
    if row.domain is not None:
        row.domain = str(row.domain)
    row.boxes = _check_boxes(row.boxes, at)
    if not math.isfinite(row.start) or row.start < 0:
        raise ManifestError(f"{at}: 'start' must be a finite number >= 0, not {row.start!r}")
    if row.end is not None and not math.isfinite(row.end):
        raise ManifestError(f"{at}: 'end' must be a finite number, not {row.end!r}")
    if row.end is not None and row.end <= row.start:
        raise ManifestError(f"{where}: row {row.id!r} has end <= start")
    return row


def read_manifest(path: str | os.PathLike, split: str | None = None) -> list[Row]:
    """Read a manifest, optionally keeping one split.

    Args:
        path: the JSON-lines manifest.
        split: keep only the rows of this split (``train``, ``val``, ``test``); ``None``: all.

    Returns:
        The rows in file order (ids are checked for uniqueness across all splits).

    Raises:
        ManifestError: naming the file and line of the first malformed row (or of the second
            row with an id already seen, and the line of the first); ``split`` not one of
            train, val, test (a typo kept no row, without a word).
    """
    path = Path(path)
    if split is not None and split not in SPLITS:
        raise ManifestError(f"split must be one of {', '.join(SPLITS)} or None, not {split!r}")
    if path.is_dir():  # avssl.data.source.manifest_path takes a folder: this function does not
        raise ManifestError(f"{path}: no such manifest (a folder: give its manifest.jsonl)")
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    rows, first_line = [], {}
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:  # a byte-order mark (Windows editors write one) starts no row
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise ManifestError(f"{path}:{lineno}: not UTF-8 text") from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ManifestError(f"{path}:{lineno}: not JSON ({err.msg})") from None
                row = row_from_json(obj, f"{path}:{lineno}")
                if row.id in first_line:
                    first = first_line[row.id]
                    raise ManifestError(
                        f"{path}:{lineno}: id {row.id!r} already used on line {first}"
                    )
                first_line[row.id] = lineno
                if split is None or row.split == split:
                    rows.append(row)
    except OSError as err:
        raise ManifestError(f"{path}: cannot read ({err.strerror})") from None
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[Row]) -> int:
    """Write rows atomically (temporary file then rename). Returns the number of rows.

    Args:
        path: the manifest to (over)write; its folder is created if needed.
        rows: the rows, one JSON line each, in order.
    """
    n = 0
    with replacing(path, make_parents=True) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def resolve(manifest_path: str | os.PathLike, rel: str | None) -> Path | None:
    """Absolute path of a manifest-relative media path (``None`` stays ``None``).

    Args:
        manifest_path: the manifest file; relative paths are taken from its folder.
        rel: a media path from one of its rows (an absolute one is returned as is), or ``None``.
    """
    if rel is None:
        return None
    p = Path(rel)
    return p if p.is_absolute() else Path(manifest_path).resolve().parent / p


def iter_split(rows: Iterable[Row], split: str) -> Iterator[Row]:
    """The rows of ``split``, lazily (a generator over ``rows``).

    Args:
        rows: manifest rows.
        split: ``train``, ``val`` or ``test``.
    """
    return (r for r in rows if r.split == split)
