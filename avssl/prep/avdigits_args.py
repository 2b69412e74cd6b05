"""The command line of ``avssl prepare avdigits`` (:mod:`avssl.prep.avdigits`): its flags, the
source flags it shares with ``datasets/avdigits/benchmark.py``, and the MNIST shares' check."""

from __future__ import annotations

import argparse
from pathlib import Path

from avssl.cli import ArgumentParser, fraction, int_at_least, positive_int
from avssl.errors import AvsslError
from avssl.prep.report import add_common_args

DESCRIPTION = (
    "AV-Digits: real spoken digits (FSDD) paired with canvases of real handwriting (MNIST)."
)


def add_source_args(p: argparse.ArgumentParser) -> None:
    """The recordings, images and trimming flags, shared with ``datasets/avdigits/benchmark.py``."""
    p.add_argument("--fsdd", type=Path, required=True, help="FSDD recordings folder")
    p.add_argument("--mnist-images", type=Path, required=True, help="MNIST images IDX (.gz)")
    p.add_argument("--mnist-labels", type=Path, required=True, help="MNIST labels IDX (.gz)")
    p.add_argument("--test-mnist-images", type=Path, help="separate MNIST images for test")
    p.add_argument("--test-mnist-labels", type=Path, help="labels of --test-mnist-images")
    p.add_argument(
        "--test-speakers", metavar="A,B",
        help="comma-separated, each present (default: theo,yweweler, those present, else the "
        "alphabetically last speaker)",
    )  # fmt: skip
    p.add_argument(
        "--centre-trim", action="store_true",
        help="keep the middle second of a longer recording (default: its loudest second; "
        "the middle was kept in data prepared before 2026-12-05)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``avssl prepare avdigits`` (``datasets/avdigits/prepare.py``)."""
    p = ArgumentParser(prog="avssl prepare avdigits", description=DESCRIPTION)
    add_source_args(p)
    p.add_argument("--val-speaker", help="validation speaker (default: takes 0, 10, 20, ...)")
    p.add_argument("--grid", type=positive_int, default=2, help="cells per side of a canvas")
    p.add_argument(
        "--canvas-size", type=positive_int, default=56,
        help="canvas side in pixels (default 56: 2x2 cells of 28 px, MNIST's own size; use 28 x "
        "--grid to keep that scale, e.g. 84 for --grid 3)",
    )  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--mnist-test-fraction", type=fraction, default=0.2, help="in [0, 1)")
    p.add_argument("--mnist-val-fraction", type=fraction, default=0.1, help="in [0, 1)")
    p.add_argument("--gallery-per-class", type=positive_int, default=10)
    p.add_argument("--max-takes", type=positive_int, help="use only takes below this (quick runs)")
    p.add_argument(
        "--canvases-per-recording", type=int, default=1, metavar="K",
        help="training split: pair each recording with K different canvases (a model can then "
        "only match them through the digit, not by memorising fixed pairs); val/test keep one",
    )  # fmt: skip
    p.add_argument(
        "--keep-dc", action="store_true",
        help="keep each recording's DC offset (default: subtract its mean before the zero "
        "padding, which would otherwise step away from an offset recording's silence)",
    )  # fmt: skip
    add_common_args(p, probe=False)
    return p


def check_fractions(args: argparse.Namespace) -> None:
    """Refuse MNIST shares that leave a split without images (naming the flags)."""
    shares = {"--mnist-val-fraction": args.mnist_val_fraction}
    if args.test_mnist_images is None:  # else the test images come from their own file
        shares["--mnist-test-fraction"] = args.mnist_test_fraction
    if 0 in shares.values() or sum(shares.values()) >= 1:
        given = " + ".join(f"{flag} {share:g}" for flag, share in shares.items())
        raise AvsslError(f"{given}: every split needs MNIST images (each above 0, sum below 1)")
