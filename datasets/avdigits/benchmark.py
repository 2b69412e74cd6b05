"""Run issue #5's AV-Digits benchmark (see avssl.tools.avdigits_benchmark); --help for options."""

import sys

from avssl.cli import run_entry


def main(argv=None) -> int:
    """Run :func:`avssl.tools.avdigits_benchmark.main` on ``argv`` (default ``sys.argv[1:]``);
    returns the exit status (2 with one ``error:`` line for a refused input,
    :func:`avssl.cli.run_entry`)."""
    return run_entry("avssl.tools.avdigits_benchmark:main", argv)


if __name__ == "__main__":
    sys.exit(main())
