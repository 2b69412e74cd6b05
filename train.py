"""Train an audio-visual correspondence model: ``python train.py [--config FILE] [--set k=v]``."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    """Run :func:`avssl.train.cli.main` on ``argv`` (default ``sys.argv[1:]``); returns the exit
    status (2 with one ``error:`` line for a refused input, :func:`avssl.cli.run_entry`)."""
    return run_entry("avssl.train.cli:main", argv)


if __name__ == "__main__":
    sys.exit(main())
