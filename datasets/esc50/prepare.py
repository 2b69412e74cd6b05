"""Write the esc50 manifest (see avssl.prep.esc50); run with --help for the options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.prep.esc50:main", argv)


if __name__ == "__main__":
    sys.exit(main())
