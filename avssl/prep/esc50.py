"""ESC-50 (and its ESC-10 subset): ``meta/esc50.csv`` + ``audio/`` -> an audio-only manifest.

ESC-50 (Piczak, ACM MM 2015, https://github.com/karolpiczak/ESC-50): 2,000 5-s clips, 50
classes, 5 folds; columns ``filename,fold,target,category,esc10,src_file,take``. Rows are
audio-only (see :mod:`avssl.prep.folds`); ``--esc10`` keeps the ESC-10 subset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avssl.cli import ArgumentParser
from avssl.prep.folds import prepare_folds
from avssl.prep.report import add_common_args

COLUMNS = ("filename", "fold", "category")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl prepare esc50", description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, required=True, help="folder with audio/ and meta/")
    p.add_argument("--esc10", action="store_true", help="keep only the ESC-10 subset")
    p.add_argument("--test-fold", type=int, default=5, help="fold written as split test")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare esc50``: write the manifest, ``folds.json`` and the report."""
    args = _parser().parse_args(argv)
    return prepare_folds(
        "esc50",
        "ESC-50",
        args,
        args.root / "meta" / "esc50.csv",
        COLUMNS,
        audio_path=lambda rec, fold: args.root / "audio" / rec["filename"],
        keep=lambda rec: not args.esc10 or rec["esc10"].strip().lower() == "true",
        extra=("esc10",) if args.esc10 else (),
    )
