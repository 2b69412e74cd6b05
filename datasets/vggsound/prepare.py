"""Write the vggsound manifest (see avssl.prep.vggsound); run with --help for the options."""

import sys

from avssl.cli import run_guarded


def _main(argv: list[str]) -> int:
    # imported under the guard: a Ctrl-C while numpy and the decoders import is one line
    from avssl.prep.vggsound import main

    return main(argv)


def main(argv=None) -> int:
    return run_guarded(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
