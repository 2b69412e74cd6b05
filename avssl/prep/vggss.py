"""VGG-SS (VGG-Sound Source): ``vggss.json`` boxes + local media -> a localisation test manifest.

VGG-SS (Chen et al., "Localizing Visual Sounds the Hard Way", CVPR 2021,
https://arxiv.org/abs/2104.02691) annotates one frame of 5,158 VGGSound clips with normalised
``[x0, y0, x1, y1]`` boxes: ``[{"file": "zpWuikVorYg_000032", "class": "...", "bbox": [[...]]}]``.
Media are looked up by file stem under ``--media``: an image (the annotated frame) with an audio
file, or the clip's video; failing that, the clip's video found by another scheme of
:mod:`avssl.prep.clips` (a cut ``{ytid}_{start}``, ``{ytid}_{start_ms}_{end_ms}``, or the whole
``{ytid}.mp4``, whose row then carries the clip's start and end). Every row is
split "test"; ``labels`` holds the class name. Entries that are not objects or have unusable
boxes are skipped and listed in the report.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from avssl.cli import ArgumentParser
from avssl.data.annotations import load_vggss, parse_box, read_flickr_ids
from avssl.errors import AvsslError, MediaError
from avssl.prep.clips import index_folder, locate, missing_reason
from avssl.prep.localization import (
    clip_boxes,
    index_stems,
    lose_boxes,
    media_row,
    note_dropped,
    note_others,
    usable,
)
from avssl.prep.report import add_common_args, finish_run, start_run

CLIP_S = 10.0  # every VGGSound clip, and so every VGG-SS item, is 10 s long


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl prepare vggss", description=__doc__.split("\n")[0])
    p.add_argument("--annotations", type=Path, required=True, help="vggss.json")
    p.add_argument("--media", type=Path, required=True, help="folder of frames/audio or videos")
    p.add_argument("--ids", type=Path, help="keep only the ids of this list (e.g. vggss_test.csv)")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare vggss``: write the manifest and the report."""
    args = _parser().parse_args(argv)
    report = start_run("vggss", args, args.media)
    entries = load_vggss(args.annotations)
    keep = None if args.ids is None else set(read_flickr_ids(args.ids))
    if keep is not None and not keep:
        raise AvsslError(f"{args.ids}: no ids in the file")
    if keep is not None and not keep & {str(e.get("file")) for e in entries if isinstance(e, dict)}:
        raise AvsslError(
            f"{args.ids}: none of its {len(keep)} ids is an entry of {args.annotations} "
            f"(e.g. {sorted(keep)[0]!r}); is it the VGG-SS id list?"
        )
    others: dict = {}
    stems = index_stems(args.media, others)
    clips = _clip_files(args.media, entries, stems)
    lost_boxes: dict[str, list[str]] = {}
    for k, entry in enumerate(entries):
        problem = entry_problem(entry)
        if problem is not None:
            report.skip_unreadable(f"entry {k}", problem)
            continue
        item = str(entry["file"])
        if keep is not None and item not in keep:
            continue
        if "bbox" not in entry:
            report.skip_unreadable(item, "no 'bbox' key")
            continue
        try:
            if not entry["bbox"]:
                raise ValueError("no boxes")
            boxes, dropped = clip_boxes(entry["bbox"], item)
            _check_normalised(entry["bbox"])
        except (TypeError, ValueError) as err:
            report.skip_unreadable(item, f"bad bbox ({err})")
            continue
        lose_boxes(lost_boxes, item, dropped)
        labels = [str(entry["class"])] if entry.get("class") else []
        files, span, clip = stems.get(item), (0.0, None), clips.get(item)
        if isinstance(clip, tuple):
            files, span = {"video": clip[0]}, clip[1:]
        elif isinstance(clip, MediaError):
            report.skip_unreadable(item, str(clip))
            continue
        elif clip is not None and not usable(files):
            report.skip_missing(item, clip)
            continue
        media_row(report, item, files, args.out, boxes, labels, span=span)
    if keep is not None:  # ids of the list that no entry names are counted too
        named = {str(e["file"]) for e in entries if entry_problem(e) is None}
        for item in sorted(keep - named):
            report.skip_missing(item, f"no entry of {args.annotations} names it")
    note_dropped(report, lost_boxes)
    note_others(report, others, args.out)
    return finish_run(report, args)


def _check_normalised(boxes) -> None:
    """Refuse a coordinate above 1 (the published boxes are normalised to [0, 1], the largest
    1.0): pixels, clipped to [0, 1], would silently become the whole frame or nothing.

    Raises:
        ValueError: a box with a coordinate above 1 (past a rounding tolerance).
    """
    for k, box in enumerate(boxes):  # each four finite numbers: clip_boxes checked them
        if (top := max(parse_box(box, ""))) > 1.001:
            raise ValueError(f"box {k} has coordinate {top:g} above 1: not normalised (pixels?)")


def _clip_files(
    media: Path, entries: list, stems: dict
) -> dict[str, tuple[Path, float, float | None] | str | MediaError]:
    """For items ``{ytid}_{start:06d}`` with no usable file of that exact stem (see
    :func:`~avssl.prep.localization.usable`): the video holding the 10-s clip, found by the
    schemes of :mod:`avssl.prep.clips` as ``(path, start, end)`` within it (a cut such as
    ``{ytid}_{start}``, or the whole ``{ytid}.mp4`` with the clip's times), else why none is
    found (a string) or the MediaError of the file found."""
    wanted = {}
    for entry in entries:
        ytid, start = _ytid_start(entry)
        if ytid and not usable(stems.get(f"{ytid}_{start}")):
            wanted[f"{ytid}_{start}"] = (ytid, float(start))
    if not wanted:
        return {}
    unnamed: dict[str, list[Path]] = {}
    found = index_folder(media, {ytid for ytid, _ in wanted.values()}, unnamed)
    per_id = Counter(ytid for ytid, _ in set(map(_ytid_start, entries)) if ytid)
    out: dict[str, tuple[Path, float, float | None] | str | MediaError] = {}
    for item, (ytid, start) in wanted.items():
        if ytid not in found:
            if ytid in unnamed:  # a file to rename: say so (else the usual missing reason)
                out[item] = missing_reason(ytid, media, unnamed)
            continue
        try:
            out[item] = locate(found[ytid], start, start + CLIP_S, segments=per_id[ytid])
        except MediaError as err:
            out[item] = err
    return out


def _ytid_start(entry) -> tuple[str, str]:
    """``(ytid, start)`` of an entry named ``{ytid}_{start:06d}``, else ``("", "")``."""
    item = str(entry.get("file", "")) if isinstance(entry, dict) else ""
    ytid, _, start = item.rpartition("_")
    return (ytid, start) if ytid and start.isascii() and start.isdigit() else ("", "")


def entry_problem(entry) -> str | None:
    """Why an entry of ``vggss.json`` names no item (not an object, no usable ``file``), or
    None."""
    if not isinstance(entry, dict):
        return f"not a JSON object ({json.dumps(entry)[:40]})"
    if "file" not in entry:
        return "no 'file' key"
    name = entry["file"]
    if isinstance(name, bool) or not isinstance(name, (str, int)) or not str(name).strip():
        return f"'file' is {json.dumps(name)[:40]}, not a file name"
    return None
