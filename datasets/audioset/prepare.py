"""Write the audioset manifest (see avssl.prep.audioset); run with --help for the options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.prep.audioset:main", argv)


if __name__ == "__main__":
    sys.exit(main())
