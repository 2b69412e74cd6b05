"""Run issue #5's AV-Digits benchmark (see avssl.tools.avdigits_benchmark); --help for options."""

import sys

from avssl.cli import run_guarded
from avssl.tools.avdigits_benchmark import main as _main


def main(argv=None) -> int:
    return run_guarded(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
