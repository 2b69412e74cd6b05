"""Evaluate a checkpoint: ``python evaluate.py SUBCOMMAND --checkpoint CKPT ...``."""

import sys

from avssl.cli import run_guarded
from avssl.eval.cli import main as _main


def main(argv=None) -> int:
    return run_guarded(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
