"""Clean stops of a training run: SIGINT and SIGTERM set a flag instead of killing it.

:func:`avssl.train.loop.train` runs its steps inside :class:`StopFlag` and, once the flag is
set, saves ``last.pt`` and ends at the next step boundary, so an interrupted run resumes
exactly. The previous handlers are restored on exit.
"""

from __future__ import annotations

import contextlib
import signal


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits at the next step boundary."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            # signal() raises ValueError outside the main thread (e.g. a test thread): no handler.
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
