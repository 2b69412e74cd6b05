"""The one-line messages of failures a command did not foresee, for :func:`avssl.cli.run_guarded`:
an avssl error raised in a DataLoader worker, a collective of a distributed run that failed, a
number too large for the machine; and what ends a command cleanly on the terminal (progress
bars closed before its error line, stdout whose reader has gone)."""

from __future__ import annotations

import contextlib
import re
import sys


def worker_error(err: Exception) -> str | None:
    """The one-line message of an avssl error raised in a DataLoader worker, else None.

    torch re-raises a worker's error in the main process with the worker's whole traceback as
    its message (or, when the error class cannot be rebuilt from it, as a RuntimeError); the
    traceback's last line holds the original ``avssl.errors.Name: message``.
    """
    text = str(err)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return None
    last = text.rstrip().rsplit("\n", 1)[-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.startswith("avssl.errors.") else None


# words of a collective's error that name a process gone (gloo's transport; nccl's "remote process
# exited", its aborted communicator, a reset socket)
_PEER_GONE = re.compile(
    r"closed by peer|reset by peer|remote process|aborted|gloo/transport", re.IGNORECASE
)


def peer_lost(err: BaseException) -> str | None:
    """The one-line message of a failed collective of a distributed run, else None.

    gloo raises a plain RuntimeError naming its transport (``.../gloo/transport/tcp/pair.cc:547]
    Connection closed by peer``); nccl a ``torch.distributed.DistBackendError``, which also
    covers its failures that are not a lost process (a CUDA error inside a collective). The
    message blames another process only when the error's text names one gone; the error's
    first line is kept either way. Pure: :func:`end_process_group` tears the group down.
    """
    text = str(err).strip()
    dist = sys.modules.get("torch.distributed")
    backend = getattr(dist, "DistBackendError", None) if dist is not None else None
    if not (backend and isinstance(err, backend)) and "gloo/transport" not in text:
        return None
    first = text.splitlines()[0] if text else type(err).__name__
    if _PEER_GONE.search(text):
        return f"another process of the distributed run stopped or failed ({first}): see its output"
    return f"a collective operation of the distributed run failed ({first})"


def end_process_group() -> None:
    """Destroy the default process group, if any, ignoring its errors: gloo's threads abort the
    interpreter at exit ("terminate called without an active exception") once a peer is gone,
    unless the group is torn down first."""
    dist = sys.modules.get("torch.distributed")
    with contextlib.suppress(Exception):
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()


def overflowed(err: BaseException) -> bool:
    """Whether ``err`` says a number did not fit a machine integer: an :class:`OverflowError`,
    or torch's ValueError/TypeError about an argument too large for a C integer."""
    if isinstance(err, OverflowError):
        return True
    return isinstance(err, ValueError | TypeError) and "Overflow when unpacking" in str(err)


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``avssl ... | head``).

    ``poll`` reports an error (Linux) or a hang-up (the BSDs, macOS) on a pipe's write end once
    its read end is closed; a broken pipe elsewhere (a worker's connection) leaves stdout as it
    was, and is an error. Without ``poll`` (Windows) it is an error too.
    """
    import os
    import select
    import stat

    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLERR | select.POLLHUP)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or stdout is not a real file
        return False


def silence_stdout() -> None:
    """Point standard output at ``/dev/null``: the interpreter's last flush of a pipe whose
    reader is gone would otherwise print its own ``BrokenPipeError`` (see the Python docs on
    SIGPIPE)."""
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def close_bars() -> None:
    """Close the tqdm progress bars still drawn: the command they belong to has ended.

    A bar closed in a ``finally`` is closed already, but one the error's traceback keeps alive
    (``bar = tqdm(...)`` in the frame that raised, e.g. ``--strict``'s first unreadable file)
    is closed only when collected: an error printed before then would follow the bar's text on
    its line (``features:  40%|####  | 4/10 error: ...``). Closing it ends that line. tqdm is
    looked up, not imported: a command that never imported it drew no bar.
    """
    bars = getattr(sys.modules.get("tqdm.std"), "tqdm", None)
    for bar in list(getattr(bars, "_instances", ())):  # tqdm keeps no public list of its bars
        bar.close()
