"""Train an audio-visual correspondence model: ``python train.py [--config FILE] [--set k=v]``."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.train.cli:main", argv)


if __name__ == "__main__":
    sys.exit(main())
