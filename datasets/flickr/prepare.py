"""Write the flickr manifest (see avssl.prep.flickr); run with --help for the options."""

import sys

from avssl.cli import run_guarded
from avssl.prep.flickr import main as _main


def main(argv=None) -> int:
    return run_guarded(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
