"""VGGSound: ``vggsound.csv`` + a folder of downloaded clips -> ``manifest.jsonl``.

VGGSound (Chen et al., ICASSP 2020, https://www.robots.ox.ac.uk/~vgg/data/vggsound/): rows
``ytid,start_seconds,label,split`` (no header; split "train" or "test"), each a 10-s segment.
Clips are found as for AudioSet (:mod:`avssl.prep.clips`); missing ones are counted and listed.
Validation is carved from the training ids by hash (``--val-fraction``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from avssl.errors import ManifestError
from avssl.prep.audioset import add_segment_rows
from avssl.prep.report import add_common_args, finish_run, start_run

SEGMENT_S = 10.0


def read_vggsound(path: Path) -> list[tuple[str, float, float, list[str], str]]:
    """Segments ``(ytid, start, end, [label], split)`` of a VGGSound CSV.

    Raises:
        ManifestError: naming ``file:line`` of the first malformed row.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: no such VGGSound CSV")
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, fields in enumerate(csv.reader(fh, skipinitialspace=True), 1):
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 4:
                raise ManifestError(f"{path}:{lineno}: expected 4 fields, got {len(fields)}")
            ytid, start, label, split = (f.strip() for f in fields)
            try:
                t0 = float(start)
            except ValueError:
                raise ManifestError(f"{path}:{lineno}: start {start!r} is not a number") from None
            if split not in ("train", "test"):
                raise ManifestError(f"{path}:{lineno}: split {split!r} is not train or test")
            rows.append((ytid, t0, t0 + SEGMENT_S, [label], split))
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avssl prepare vggsound", description=__doc__.split("\n")[0])
    p.add_argument("--csv", type=Path, required=True, help="vggsound.csv")
    p.add_argument("--media", type=Path, required=True, help="folder of downloaded clips")
    p.add_argument("--val-fraction", type=float, default=0.05, help="of the training ids")
    p.add_argument("--layout", choices=("auto", "whole", "segment"), default="auto")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare vggsound``: write the manifest and the report."""
    args = _parser().parse_args(argv)
    report = start_run("vggsound", args, args.media)
    segments = read_vggsound(args.csv)
    add_segment_rows(report, segments, args.media, args.out, args.layout, args.val_fraction)
    return finish_run(report, args)
