"""SIGTERM as an exception, or as the default kill, within a block; torch-free.

:func:`avssl.cli.run_entry` sets :func:`terminated_as_interrupt` before a command imports torch
(seconds in which the default handler would end it without a word), and the commands that clean
up after themselves keep it while they run (training, ``avssl cache``, ``synth``, ``overlay``,
``bench``, the AV-Digits benchmark, and the preparations' new outputs).
"""

from __future__ import annotations

import contextlib
import signal

from avssl.errors import Terminated


@contextlib.contextmanager
def _sigterm_handler(handler):
    """Within the block, ``handler`` handles SIGTERM; the previous one is restored after it.
    Outside the main thread (where handlers cannot be set), nothing changes."""
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _raise_terminated(signum, frame):
    raise Terminated()


def terminated_as_interrupt():
    """Within the block, SIGTERM raises :class:`~avssl.errors.Terminated`, which the commands
    report as ``error: terminated (SIGTERM)`` (exit 143) after cleaning up as for a Ctrl-C (the
    training loop's :class:`~avssl.train.signals.StopFlag` takes over inside it and gives it back
    at the end). Outside the main thread, no handler."""
    return _sigterm_handler(_raise_terminated)


def sigterm_kills():
    """Within the block, SIGTERM kills the process as by default. For a blocking call that
    Python handlers cannot interrupt: joining the process group waits for every rank, and when
    one has already failed, torchrun's SIGTERM must end the others at once, not after its 30-s
    grace period. Outside the main thread, nothing changes."""
    return _sigterm_handler(signal.SIG_DFL)


@contextlib.contextmanager
def interrupt_kills_after(own: bool = True):
    """Once the block ends (a return, an exit code, argparse's ``SystemExit``), SIGINT ends the
    process at once, as by default, when ``own`` (the command is the process's own): for the
    teardown of a process whose command has finished (its threads joined, its atexit
    callbacks: up to a second after a training's summary), where a Ctrl-C, often the second
    one pressed to stop a command, would raise a KeyboardInterrupt that Python reports as an
    ``Exception ignored`` traceback. Only Python's own handler is replaced: a process started
    with SIGINT ignored (``cmd &`` in a script) keeps ignoring it. Outside the main thread,
    nothing changes."""
    try:
        yield
    finally:
        if own and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, signal.SIG_DFL)
