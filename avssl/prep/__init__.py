"""Dataset preparation: ``avssl prepare NAME ARGS`` writes ``NAME``'s ``manifest.jsonl``.

One module per dataset, each with ``main(argv) -> int``; ``datasets/<name>/prepare.py`` are thin
scripts calling the same functions. :mod:`avssl.prep.report` holds the shared bookkeeping.
"""

from __future__ import annotations

from avssl.cli import dispatch

PREPARERS: dict[str, str] = {
    "avdigits": "avssl.prep.avdigits:main",
    "audioset": "avssl.prep.audioset:main",
    "vggsound": "avssl.prep.vggsound:main",
    "vggss": "avssl.prep.vggss:main",
    "flickr": "avssl.prep.flickr:main",
    "esc50": "avssl.prep.esc50:main",
    "us8k": "avssl.prep.us8k:main",
}


def _usage() -> str:
    names = ", ".join(PREPARERS)
    return f"usage: avssl prepare NAME [ARGS...]  (NAME: {names}; NAME --help for its options)"


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``NAME ARGS`` to the registered preparation script."""
    return dispatch(PREPARERS, argv, _usage(), "dataset", guard=False)
