"""Write the vggsound manifest (see avssl.prep.vggsound); run with --help for the options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    return run_entry("avssl.prep.vggsound:main", argv)


if __name__ == "__main__":
    sys.exit(main())
