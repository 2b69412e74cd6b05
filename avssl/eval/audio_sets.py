"""Labelled sound-classification datasets as lists of ``(path, label, group, source)`` items.

* ESC-50 (https://github.com/karolpiczak/ESC-50): ``ROOT/audio/*.wav`` and ``ROOT/meta/esc50.csv``
  (``filename,fold,target,category,esc10,src_file,take``); the group is the official fold.
* UrbanSound8K (https://urbansounddataset.weebly.com/urbansound8k.html):
  ``ROOT/metadata/UrbanSound8K.csv``
  (``slice_file_name,fsID,start,end,salience,fold,classID,class``) with ``ROOT/audio/fold*/``;
  without the CSV, the ``fold*/`` folders and the ``fsID-classID-occurrence-slice.wav`` names.
  The group is the official fold.
* A folder: ``ROOT/<class>/*.<media>``; the group is what ``group_regex`` matches in the file
  name (takes of one recording), else the file itself.
* A manifest (``manifest.jsonl`` or a folder holding it, see :mod:`avssl.data.manifest`): each
  labelled row's audio (its ``audio`` file, else its video's track) in its ``[start, end)``
  window, classed by its first label; the group is the row's split (a fixed train/test
  protocol), the source what ``group_regex`` matches in the row id, else the source recording
  an ESC-50 or UrbanSound8K clip's name gives, else the id of the first row cut from its media
  file (AV-Digits' canvases of one recording, windows of one video).

Listing only reads metadata: it skips malformed or duplicated metadata rows and media files
outside the class folders; unreadable audio is found (and skipped) when it is decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from avssl.data.extensions import MEDIA_EXTS  # noqa: F401 (imported from here)
from avssl.data.metadata_csv import csv_records, record_problem
from avssl.errors import AvsslError, ManifestError
from avssl.eval.folder_media import US8K_NAME, media_files, unusable, us8k_by_names

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10")
US8K_COLUMNS = ("slice_file_name", "fold", "classID", "class")
_ESC50_NAME = re.compile(r"^\d+-(.+)-[^-]+-\d+$")  # fold-src_file-take-target


@dataclass(frozen=True)
class AudioItem:
    """One labelled clip.

    ``group`` is its official fold (ESC-50, US8K), for a folder its recording, for a manifest
    its split; ``source`` is its source recording (ESC-50 ``src_file``, US8K ``fsID``, else
    the recording id in their file names; a folder's group): clips of one source must never be
    split between training and test.
    ``start`` and ``duration`` (seconds; ``None``: to the end) cut a window out of the file.
    ``unmatched`` is the file name (folder) or row id (manifest) a given ``group_regex`` did
    not match, its group then the fallback (``None``: it matched, or no regex was given).
    """

    path: Path
    label: str
    group: str
    source: str = ""
    start: float = 0.0
    duration: float | None = None
    unmatched: str | None = None


def list_esc50(
    root: str | Path, subset: str | None = None, bad: list[dict] | None = None
) -> list[AudioItem]:
    """ESC-50 clips; ``subset="esc10"`` keeps the rows whose ``esc10`` column is True.

    Args:
        root: the dataset folder (``audio/`` and ``meta/esc50.csv``).
        subset: ``None`` for all 50 classes or ``"esc10"``.
        bad: when given, a malformed or duplicated CSV row is skipped and recorded here
            (:func:`_bad_row`); otherwise it is an error.

    Returns:
        one item per kept CSV row: ``path`` under ``audio/``, ``label`` its category, ``group``
        its fold, ``source`` its ``src_file`` (without that column: the one in the file name).

    Raises:
        ManifestError: missing ``meta/esc50.csv`` or columns, or (without ``bad``) a malformed
            or duplicated row.
    """
    root = Path(root)
    csv_path = root / "meta" / "esc50.csv"
    if subset not in (None, "esc10"):
        raise AvsslError(f"unknown ESC-50 subset {subset!r} (valid: esc10)")
    header, lines = csv_records(csv_path, ESC50_COLUMNS)
    items, seen = [], {}
    for i, row in lines:
        esc10 = (row["esc10"] or "").strip().lower() in ("true", "1")
        if subset == "esc10" and row["esc10"] is not None and not esc10:
            continue  # outside the subset: not read further
        if _bad_row(bad, csv_path, i, row, header, ("filename", "category"), seen):
            continue
        src = row.get("src_file") or _source_in_name(_ESC50_NAME, row["filename"])
        fold = str(int(row["fold"]))
        items.append(AudioItem(root / "audio" / row["filename"], row["category"], fold, src))
    return items


def _bad_row(
    bad: list[dict] | None, csv_path: Path, line: int, row: dict, header: list[str], needed, seen
) -> bool:
    """Whether a metadata row is skipped, then recorded in ``bad`` as ``{"path": "CSV:LINE",
    "reason": ...}`` (or, when ``bad`` is None, raised as a :class:`ManifestError`).

    Skipped: a malformed row (:func:`~avssl.data.metadata_csv.record_problem`: too few or too
    many fields, or an empty column of ``needed``), a ``fold`` that is not a number, and a
    duplicate: a clip (``needed[0]``, the file name) already in ``seen`` (``{clip: line}`` of
    the rows kept so far, updated).
    """
    clip = row[needed[0]]
    reason = record_problem(row, header, (*needed, "fold"))
    if reason is None and not re.fullmatch(r"\s*\d+\s*", row["fold"]):
        reason = f"fold {row['fold']!r} is not a number"
    if reason is None and clip in seen:
        reason = f"duplicate of line {seen[clip]}"
    if reason is None:
        seen[clip] = line
        return False
    if bad is None:
        raise ManifestError(f"{csv_path}:{line}: {reason}")
    bad.append({"path": f"{csv_path}:{line}", "reason": reason})
    return True


def list_us8k(root: str | Path, bad: list[dict] | None = None) -> list[AudioItem]:
    """UrbanSound8K clips, from the metadata CSV when present, else from file names.

    Args:
        root: the dataset folder (``metadata/`` and ``audio/fold*/``, or ``fold*/`` alone).
        bad: when given, a malformed or duplicated CSV row is skipped and recorded here as
            ``{"path": "UrbanSound8K.csv:LINE", "reason": ...}`` (without the CSV: a media file
            whose name is not ``fsID-classID-occurrence-slice``, a link to nothing or no
            regular file, as ``{"path", "reason"}``); otherwise it is an error.

    Raises:
        ManifestError: neither the CSV nor any ``fold*/`` folder is found, missing CSV columns,
            or (without ``bad``) a malformed or duplicated row.
    """
    root = Path(root)
    csv_path = root / "metadata" / "UrbanSound8K.csv"
    if csv_path.is_file():
        audio = root / "audio" if (root / "audio").is_dir() else root
        header, lines = csv_records(csv_path, US8K_COLUMNS)
        items, seen = [], {}
        for i, r in lines:  # slice_file_name is unique in the dataset, as prepare us8k expects
            if _bad_row(bad, csv_path, i, r, header, ("slice_file_name", "class"), seen):
                continue
            name = r["slice_file_name"]
            fold = str(int(r["fold"]))
            src = r.get("fsID") or _source_in_name(US8K_NAME, name)
            items.append(AudioItem(audio / f"fold{fold}" / name, r["class"], fold, src))
        return items
    return [
        AudioItem(path, label, fold, src) for path, label, fold, src in us8k_by_names(root, bad)
    ]


def _source_in_name(pattern: re.Pattern, name: str) -> str:
    """The recording id a dataset's file ``name`` carries (``pattern``'s first group, matched
    on the name without its extension), else the name itself: takes or slices of one recording
    must share a source even when the metadata lacks its ``src_file`` / ``fsID`` column."""
    m = pattern.match(Path(name).stem)
    return m.group(1) if m else name


def list_folder(
    root: str | Path, group_regex: str | None = None, bad: list[dict] | None = None
) -> list[AudioItem]:
    """``ROOT/<class>/<file>`` media files; groups from ``group_regex`` on the file name.

    Args:
        root: the dataset folder.
        group_regex: a regular expression searched in each file name; its first group (or the
            whole match) names the recording, so that takes of one recording share a fold.
            Files it does not match are their own group (and name themselves in
            ``unmatched``: a caller counts them, or refuses a regex matching none).
        bad: when given, media files in ``root`` itself (outside the class folders) and media
            names that link to nothing or name no regular file are recorded here as
            ``{"path", "reason"}``; otherwise they are an error.

    Returns:
        one item per media file, labelled by its class folder, with the recording as both
        ``group`` and ``source``.

    Raises:
        ManifestError: no class folder with media files, or (without ``bad``) a media file
            outside the class folders.
        AvsslError: invalid regular expression.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder")
    pattern = _compile(group_regex)
    for path in media_files(root, bad):  # a link to nothing is recorded as such
        unusable(bad, path, "not in a class folder")
    items = []
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        for path in media_files(class_dir, bad):
            found = _regex_group(pattern, path.name)
            group = f"{class_dir.name}/{path.name}" if found is None else found
            miss = path.name if pattern and found is None else None
            items.append(AudioItem(path, class_dir.name, group, group, unmatched=miss))
    if not items:
        raise ManifestError(f"{root}: no <class>/<media file> found")
    return items


def _compile(group_regex: str | None) -> re.Pattern | None:
    try:
        return re.compile(group_regex) if group_regex else None
    except re.error as err:
        raise AvsslError(f"--group-regex {group_regex!r}: {err}") from None


def _named_source(row_id: str) -> str:
    """The source recording an ESC-50 / UrbanSound8K clip's name gives, else ``row_id``."""
    for pattern in (US8K_NAME, _ESC50_NAME):  # ESC-50's would read a US8K name's class id
        if m := pattern.match(row_id):
            return m.group(1)
    return row_id


def _regex_group(pattern: re.Pattern | None, name: str) -> str | None:
    """What ``pattern`` names in ``name`` (its first group, else the whole match); ``None``
    when there is no pattern, it does not match, or what it names is empty (``zzz|`` would
    otherwise put every clip in one source)."""
    m = pattern.search(name) if pattern else None
    if m is None:
        return None
    if m.groups() and m.group(1) is not None:
        return m.group(1) or None
    return m.group(0) or None  # no group, or an optional one that matched nothing


def list_manifest(root: str | Path, group_regex: str | None = None) -> list[AudioItem]:
    """The labelled rows of a manifest as windows of audio; rows without labels are left out.

    Args:
        root: a manifest ``.jsonl`` or a folder holding ``manifest.jsonl``.
        group_regex: a regular expression searched in each row id; its first group (or the
            whole match) names the source (e.g. the speaker); else see the module doc (a row
            it does not match names itself in ``unmatched``).

    Returns:
        one item per labelled row: ``path`` the row's ``audio`` (else its video), ``label`` its
        first label, ``group`` its split, ``start`` / ``duration`` its window.

    Raises:
        ManifestError: no manifest or a malformed row.
        AvsslError: invalid regular expression.
    """
    from avssl.data.manifest import read_manifest, resolve

    root = Path(root)
    path = root / "manifest.jsonl" if root.is_dir() else root
    pattern = _compile(group_regex)
    items, first_id = [], {}  # rows cut from one media file share a source: its first row's id
    for row in (r for r in read_manifest(path) if r.labels):
        media = resolve(path, row.audio or row.visual)
        source = _named_source(first_id.setdefault(media, row.id))
        found = _regex_group(pattern, row.id)
        source = source if found is None else found
        miss = row.id if pattern and found is None else None
        items.append(
            AudioItem(media, row.labels[0], row.split, source, row.start, row.duration, miss)
        )
    return items


def list_dataset(
    kind: str,
    root: str | Path,
    subset: str | None = None,
    group_regex: str | None = None,
    bad: list[dict] | None = None,
) -> list[AudioItem]:
    """Dispatch to :func:`list_esc50`, :func:`list_us8k`, :func:`list_folder` or
    :func:`list_manifest`.

    Args:
        kind: ``esc50``, ``us8k``, ``folder`` or ``manifest``.
        root: the dataset folder (``manifest``: a ``.jsonl`` or a folder holding
            ``manifest.jsonl``).
        subset: ESC-50 only: ``None`` or ``"esc10"``.
        group_regex: ``folder`` and ``manifest`` only: what names a recording (see
            :func:`list_folder` and :func:`list_manifest`).
        bad: collects what is skipped instead of failing on the first: malformed or
            duplicated metadata rows (:func:`list_esc50`, :func:`list_us8k`), media files
            outside the class folders (:func:`list_folder`).
    """
    if kind == "esc50":
        return list_esc50(root, subset, bad)
    if kind == "us8k":
        return list_us8k(root, bad)
    if kind == "folder":
        return list_folder(root, group_regex, bad)
    if kind == "manifest":
        return list_manifest(root, group_regex)
    raise AvsslError(f"unknown dataset kind {kind!r} (valid: esc50, us8k, folder, manifest)")
