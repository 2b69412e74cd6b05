"""VGGSound: ``vggsound.csv`` + a folder of downloaded clips -> ``manifest.jsonl``.

VGGSound (Chen et al., ICASSP 2020, https://www.robots.ox.ac.uk/~vgg/data/vggsound/): rows
``ytid,start_seconds,label,split`` (no header; split "train" or "test"), each a 10-s segment.
Clips are found as for AudioSet (:mod:`avssl.prep.clips`); missing ones are counted and listed.
Validation is carved from the training ids by hash (``--val-fraction``, in [0, 1)). Malformed
CSV rows are skipped and listed as unreadable (``FILE:LINE``) in the report, or stop the run
under ``--strict``. A segment (ytid and start) in a train row and a test row stays in test; the
train row is listed as unreadable, naming both lines.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from avssl.cli import ArgumentParser, fraction
from avssl.data.textfile import csv_fields, text_lines
from avssl.errors import ManifestError
from avssl.prep.audioset import add_segment_rows
from avssl.prep.report import add_common_args, finish_run, start_run

SEGMENT_S = 10.0


def read_vggsound(
    path: Path,
) -> tuple[list[tuple[str, float, float, list[str], str, str]], list[tuple[str, str]]]:
    """Segments ``(ytid, start, end, [label], split, file:line)`` of a VGGSound CSV, and its
    bad rows.

    Returns:
        The segments of the good rows, and ``(file:line, reason)`` of each malformed row.

    Raises:
        ManifestError: the file is missing, cannot be read or is not UTF-8 text.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: no such VGGSound CSV")
    rows, bad = [], []
    for lineno, line in enumerate(text_lines(path), 1):
        where = f"{path}:{lineno}"
        try:
            fields = csv_fields(line, where, skipinitialspace=True)
        except ManifestError as err:
            bad.append((where, err.args[0].removeprefix(f"{where}: ")))
            continue
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 4:
            bad.append((where, f"expected 4 fields, got {len(fields)}"))
            continue
        ytid, start, label, split = (f.strip() for f in fields)
        try:
            t0 = float(start)
        except ValueError:
            bad.append((where, f"start {start!r} is not a number"))
            continue
        if not math.isfinite(t0) or t0 < 0:
            bad.append((where, f"start {start!r} is not a time (a finite number >= 0)"))
            continue
        if not label:
            bad.append((where, "empty label"))
            continue
        if split not in ("train", "test"):
            bad.append((where, f"split {split!r} is not train or test"))
            continue
        rows.append((ytid, t0, t0 + SEGMENT_S, [label], split, where))
    return rows, bad


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl prepare vggsound", description=__doc__.split("\n")[0])
    p.add_argument("--csv", type=Path, required=True, help="vggsound.csv")
    p.add_argument("--media", type=Path, required=True, help="folder of downloaded clips")
    p.add_argument(
        "--val-fraction", type=fraction, default=0.05, help="of the training ids, in [0, 1)"
    )
    p.add_argument("--layout", choices=("auto", "whole", "segment"), default="auto")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare vggsound``: write the manifest and the report."""
    args = _parser().parse_args(argv)
    report = start_run("vggsound", args, args.media)
    segments, bad_rows = read_vggsound(args.csv)
    for where, reason in bad_rows:
        report.skip_unreadable(where, reason)
    add_segment_rows(report, segments, args.media, args.out, args.layout, args.val_fraction)
    return finish_run(report, args)
