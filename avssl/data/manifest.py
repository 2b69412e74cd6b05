"""JSON-lines manifests: one row per clip, written by every ``prepare.py`` and read by all else.

A row::

    {"id": "abc", "video": "rel/path.mp4", "audio": null, "start": 30.0, "end": 40.0,
     "labels": ["/m/09x0r"], "split": "train", "boxes": null}

``video`` may be replaced by ``image`` (a still image counts as a one-frame video). ``audio`` is
an optional separate audio file; when absent the video's own audio track is used. Paths are
relative to the manifest's folder. ``boxes`` is ``null`` or ``{"sources": [[x0, y0, x1, y1],
...]}`` with coordinates normalised to [0, 1] (one box per sounding source or per annotator).
The optional ``frame_labels`` lists the classes of everything visible in the picture when that
is more than ``labels`` (AV-Digits canvases: the spoken digit and the distractor digits); the
contrastive loss can leave such pictures out of a sound's negatives (``loss.mask_same_label``).
The optional ``domain`` names a nuisance group of the clip, such as its speaker (AV-Digits), that
the embedding should not encode; ``loss.domain_adversary`` trains against it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
        return None if self.end is None else self.end - self.start

    def to_json(self) -> dict:
        d = asdict(self)
        if d["image"] is None:
            d.pop("image")
        else:
            d.pop("video")
        for key in ("frame_labels", "domain"):
            if d[key] is None:
                d.pop(key)
        return d


def row_from_json(obj: dict, where: str = "") -> Row:
    """Validate and convert one decoded JSON object into a :class:`Row`."""
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: a row must be a JSON object")
    if "id" not in obj:
        raise ManifestError(f"{where}: row has no 'id'")
    if obj.get("video") is None and obj.get("image") is None:
        raise ManifestError(f"{where}: row {obj['id']!r} has neither 'video' nor 'image'")
    unknown = set(obj) - {f for f in Row.__dataclass_fields__}
    if unknown:
        raise ManifestError(f"{where}: row {obj['id']!r} has unknown keys {sorted(unknown)}")
    try:
        row = Row(**obj)
        row.start = float(row.start or 0.0)
        row.end = None if row.end is None else float(row.end)
        row.labels = [str(x) for x in (row.labels or [])]
        if row.frame_labels is not None:
            row.frame_labels = [str(x) for x in row.frame_labels]
        if row.domain is not None:
            row.domain = str(row.domain)
        row.id = str(row.id)
    except (TypeError, ValueError) as err:
        raise ManifestError(f"{where}: row {obj.get('id')!r}: {err}") from None
    if row.end is not None and row.end <= row.start:
        raise ManifestError(f"{where}: row {row.id!r} has end <= start")
    return row


def read_manifest(path: str | os.PathLike, split: str | None = None) -> list[Row]:
    """Read a manifest, optionally keeping one split.

    Raises:
        ManifestError: naming the file and line of the first malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}:{lineno}: not JSON ({err.msg})") from None
            row = row_from_json(obj, f"{path}:{lineno}")
            if split is None or row.split == split:
                rows.append(row)
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[Row]) -> int:
    """Write rows atomically (temporary file then rename). Returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def resolve(manifest_path: str | os.PathLike, rel: str | None) -> Path | None:
    """Absolute path of a manifest-relative media path (``None`` stays ``None``)."""
    if rel is None:
        return None
    p = Path(rel)
    return p if p.is_absolute() else Path(manifest_path).resolve().parent / p


def iter_split(rows: Iterable[Row], split: str) -> Iterator[Row]:
    return (r for r in rows if r.split == split)
