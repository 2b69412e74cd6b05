"""Train an audio-visual correspondence model: ``python train.py [--config FILE] [--set k=v]``."""

import sys

from avssl.cli import run_guarded


def _main(argv: list[str]) -> int:
    # imported under the guard: a Ctrl-C during the seconds torch takes to import is one line
    from avssl.train.cli import main

    return main(argv)


def main(argv=None) -> int:
    return run_guarded(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
