"""UrbanSound8K: ``metadata/UrbanSound8K.csv`` + ``audio/fold*/`` -> an audio-only manifest.

UrbanSound8K (Salamon et al., ACM MM 2014, https://urbansounddataset.weebly.com/): 8,732
excerpts of up to 4 s, 10 classes, 10 predefined folds (use them: excerpts of one recording
share a fold). Columns ``slice_file_name,fsID,start,end,salience,fold,classID,class``; files are
``audio/fold{fold}/{slice_file_name}``. Rows are audio-only (see :mod:`avssl.prep.folds`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avssl.cli import ArgumentParser
from avssl.prep.folds import prepare_folds
from avssl.prep.report import add_common_args

COLUMNS = ("slice_file_name", "fold", "class")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl prepare us8k", description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, required=True, help="folder with audio/ and metadata/")
    p.add_argument("--test-fold", type=int, default=10, help="fold written as split test")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare us8k``: write the manifest, ``folds.json`` and the report."""
    args = _parser().parse_args(argv)
    return prepare_folds(
        "us8k",
        "UrbanSound8K",
        args,
        args.root / "metadata" / "UrbanSound8K.csv",
        COLUMNS,
        audio_path=lambda rec, fold: args.root / "audio" / f"fold{fold}" / rec["slice_file_name"],
    )
