"""Evaluate a checkpoint: ``python evaluate.py SUBCOMMAND --checkpoint CKPT ...``."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.eval.cli:main", argv)


if __name__ == "__main__":
    sys.exit(main())
