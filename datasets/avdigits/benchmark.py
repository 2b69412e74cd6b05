"""Run issue #5's AV-Digits benchmark (see avssl.tools.avdigits_benchmark); --help for options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.tools.avdigits_benchmark:main", argv)


if __name__ == "__main__":
    sys.exit(main())
