"""Write the vggss manifest (see avssl.prep.vggss); run with --help for the options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.prep.vggss:main", argv)


if __name__ == "__main__":
    sys.exit(main())
