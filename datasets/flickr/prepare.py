"""Write the flickr manifest (see avssl.prep.flickr); run with --help for the options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    """Run :func:`avssl.prep.flickr.main` on ``argv`` (default ``sys.argv[1:]``); returns the exit
    status (2 with one ``error:`` line for a refused input, :func:`avssl.cli.run_entry`)."""
    return run_entry("avssl.prep.flickr:main", argv)


if __name__ == "__main__":
    sys.exit(main())
