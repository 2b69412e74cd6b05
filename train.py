"""Train an audio-visual correspondence model: ``python train.py [--config FILE] [--set k=v]``."""

import sys

from avssl.cli import run_guarded
from avssl.train.cli import main as _main


def main(argv=None) -> int:
    return run_guarded(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
