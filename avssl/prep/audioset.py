"""AudioSet: segment CSVs + a folder of downloaded clips -> ``manifest.jsonl``.

AudioSet (Gemmeke et al., ICASSP 2017, https://research.google.com/audioset/) is published as
segment lists; the media must be downloaded separately and a large share is offline, so missing
clips are expected: they are counted and listed, never fatal, as are malformed CSV rows
(listed as ``FILE:LINE``; ``--strict`` stops at the first). Clip naming schemes are those of
:mod:`avssl.prep.clips`.

Splits: ``--split-of CSV=SPLIT``, else from the file name (``*eval*`` -> test, ``*train*`` ->
train). Validation is carved from the training rows: ``--val-fraction`` (in [0, 1), so that training
rows remain) of the YouTube ids, chosen by a hash of the id (stable when clips are added or go
missing).
A segment listed in two splits (e.g. in the training CSV and in the test one) is kept in test
(then val, then train), whatever the order of ``--segments``; its other copy is listed as
unreadable, naming both CSVs.
"""

from __future__ import annotations

import argparse
import zlib
from collections import Counter
from pathlib import Path

from avssl.cli import ArgumentParser, fraction
from avssl.data.audioset import Ontology, read_segments
from avssl.data.manifest import SPLITS, Row
from avssl.errors import AvsslError, MediaError
from avssl.prep.clips import companion_audio, index_folder, locate, missing_reason
from avssl.prep.report import (
    DUPLICATE,
    PrepReport,
    add_common_args,
    file_problem,
    finish_run,
    relpath,
    start_run,
)


def names_file(key: str, path: Path) -> bool:
    """Whether a ``--split-of`` key names the segment CSV ``path``: its file name, or any
    spelling of its path (``./a.csv``, an absolute path, a link to it)."""
    return key == path.name or Path(key).resolve() == path.resolve()


def split_of_file(path: Path, explicit: dict[str, str]) -> str:
    """The split of a segment CSV: explicit mapping (by path or file name), else its name."""
    for key, split in explicit.items():  # a path first: it is more specific than a file name
        if key != path.name and names_file(key, path):
            return split
    if path.name in explicit:
        return explicit[path.name]
    name = path.name.lower()
    if "eval" in name or "test" in name:
        return "test"
    if "train" in name:
        return "train"
    raise AvsslError(f"{path}: cannot tell its split from the name (pass --split-of {path}=SPLIT)")


def parse_split_of(items: list[str]) -> dict[str, str]:
    """``--split-of CSV=SPLIT`` items as a ``{CSV: SPLIT}`` mapping.

    Raises:
        AvsslError: an item without ``=`` or whose split is not one of ``SPLITS``.
    """
    out = {}
    for item in items:
        key, sep, split = item.rpartition("=")
        if not sep or split not in SPLITS:
            raise AvsslError(f"--split-of {item!r}: expected CSV=SPLIT with SPLIT in {SPLITS}")
        out[key] = split
    return out


def carve_val(ytid: str, fraction: float) -> bool:
    """Whether a training id goes to validation (hash-based, independent of the rest)."""
    return fraction > 0 and zlib.crc32(ytid.encode()) % 10_000 < fraction * 10_000


# which copy of a segment listed in two splits is kept: a test clip must never be trained on,
# whatever the order of the CSVs
SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}


def kept_splits(
    segments: list[tuple[str, float, float, list[str], str, str]],
) -> dict[str, tuple[str, str]]:
    """Each segment item's kept ``(split, where)``: of its copies listed in several splits, the
    first copy of the highest-priority split (test, then val, then train)."""
    kept: dict[str, tuple[str, str]] = {}
    for ytid, start, _, _, split, where in segments:
        item = f"{ytid}_{start:g}"
        rank = SPLIT_PRIORITY.get(split, len(SPLIT_PRIORITY))
        if item not in kept or rank < SPLIT_PRIORITY.get(kept[item][0], len(SPLIT_PRIORITY)):
            kept[item] = (split, where)
    return kept


def add_segment_rows(
    report: PrepReport,
    segments: list[tuple[str, float, float, list[str], str, str]],
    media_dir: Path,
    out: Path,
    layout: str,
    val_fraction: float,
) -> None:
    """Find each ``(ytid, start, end, labels, split, where)`` segment's file and add its row.

    ``where`` names the segment's source (its CSV, or ``CSV:LINE``). A segment listed in two
    splits is kept in one only (:func:`kept_splits`: test before val before train); each other
    copy is listed as unreadable, naming both sources, so a test clip is never trained on.
    """
    unnamed: dict[str, list[Path]] = {}
    files = index_folder(media_dir, {s[0] for s in segments}, unnamed)
    per_id = Counter(ytid for ytid, start in {(s[0], s[1]) for s in segments})
    kept = kept_splits(segments)
    seen, crossed = set(), set()  # crossed: the segments with a copy dropped for another split
    for ytid, start, end, labels, split, where in segments:
        item = f"{ytid}_{start:g}"
        kept_split, kept_where = kept[item]
        if split != kept_split:  # the same segment in another split: a leak across splits
            crossed.add(item)
            report.skip_unreadable(
                item,
                f"listed as {split} in {where} and as {kept_split} in {kept_where}: kept in "
                f"{kept_split} only",
            )
            continue
        if item in seen:  # the same YTID and start again (written, missing or unreadable)
            report.skip_unreadable(item, DUPLICATE)
            continue
        seen.add(item)
        candidates = files.get(ytid)
        if not candidates:
            report.skip_missing(item, missing_reason(ytid, media_dir, unnamed))
            continue
        try:
            found = locate(candidates, start, end, layout, per_id[ytid])
        except MediaError as err:
            report.skip_unreadable(item, str(err))
            continue
        if isinstance(found, str):  # files of the id, none of this segment: a misnamed one?
            report.skip_missing(item, missing_reason(ytid, media_dir, unnamed, found))
            continue
        path, t0, t1 = found
        if split == "train" and carve_val(ytid, val_fraction):
            split = "val"
        sound = companion_audio(candidates, path)
        if sound is not None and (problem := file_problem(sound)) is not None:
            report.skip_unreadable(item, f"{sound}: {problem}")  # the picture has no sound
            continue
        audio = None if sound is None else relpath(sound, out)
        report.add(Row(item, video=relpath(path, out), audio=audio, start=t0, end=t1,
                       labels=labels, split=split))  # fmt: skip
    if crossed:
        report.note(
            f"{len(crossed)} segments listed in two splits were kept in one only (test before val "
            "before train); see unreadable_items"
        )
    splits_of: dict[str, set[str]] = {}  # a video's other segments are other clips: noted only
    for row in report.rows:
        splits_of.setdefault(row.id.rsplit("_", 1)[0], set()).add(row.split)
    if shared := sorted(v for v, s in splits_of.items() if "test" in s and len(s) > 1):
        report.note(
            f"{len(shared)} videos have segments in test and in another split (e.g. {shared[0]}): "
            "other moments of a test video are trained or validated on"
        )


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl prepare audioset", description=__doc__.split("\n")[0])
    p.add_argument("--segments", type=Path, nargs="+", required=True, help="segment CSV files")
    p.add_argument("--media", type=Path, required=True, help="folder of downloaded clips")
    p.add_argument("--ontology", type=Path, help="ontology.json: report labels it does not know")
    p.add_argument("--split-of", nargs="*", default=[], metavar="CSV=SPLIT")
    p.add_argument(
        "--val-fraction", type=fraction, default=0.05,
        help="of the training ids, in [0, 1) (1 would leave no training rows)",
    )  # fmt: skip
    p.add_argument("--layout", choices=("auto", "whole", "segment"), default="auto",
                   help="what {YTID}.ext files hold (default: decided by duration)")  # fmt: skip
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare audioset``: write the manifest and the report."""
    args = _parser().parse_args(argv)
    explicit = parse_split_of(args.split_of)
    for key in explicit:  # a key that names no CSV would be ignored, its split guessed
        if not any(names_file(key, csv) for csv in args.segments):
            raise AvsslError(f"--split-of {key}={explicit[key]}: {key} is none of the --segments")
    report = start_run("audioset", args, args.media)
    segments = []
    for csv in args.segments:
        if not csv.is_file():
            raise AvsslError(f"{csv}: no such segment file")
        split = split_of_file(csv, explicit)
        bad: list[tuple[str, str]] = []  # malformed rows: skipped and listed, as bad media
        segments += [
            (s.ytid, s.start, s.end, s.labels, split, str(csv)) for s in read_segments(csv, bad)
        ]
        for where, reason in bad:
            report.skip_unreadable(where, reason)
    if args.ontology is not None:
        ontology = Ontology.load(args.ontology)
        unknown = sorted({lab for s in segments for lab in s[3] if lab not in ontology})
        report.extra["unknown_labels"] = unknown
        if unknown:
            report.note(f"{len(unknown)} labels are not in {args.ontology}: {unknown[:5]}")
    add_segment_rows(report, segments, args.media, args.out, args.layout, args.val_fraction)
    return finish_run(report, args)
