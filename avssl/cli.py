"""The ``avssl`` console script: one explicit registry of subcommands.

Each entry maps a subcommand to ``module:function`` where the function is ``main(argv) -> int``.
Modules are imported lazily so ``avssl inspect`` does not pay for importing the models.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import signal
import sys
from pathlib import Path

from avssl.cli_dashes import attach_dash_values, dash_paths_last  # noqa: F401 (re-exported)
from avssl.cli_json import json_line, json_safe, names_json  # noqa: F401 (re-exported)
from avssl.cli_types import (  # noqa: F401 (re-exported: the commands import them from here)
    fraction,
    int_at_least,
    positive_float,
    positive_int,
    share,
)
from avssl.errors import AvsslError, Terminated
from avssl.failures import (  # noqa: F401 (peer_lost, worker_error re-exported)
    close_bars,
    end_process_group,
    overflowed,
    peer_lost,
    silence_stdout,
    stdout_reader_gone,
    worker_error,
)
from avssl.sigterm import interrupt_kills_after

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("avssl.train.cli:main", "train a correspondence model (same as train.py)"),
    "evaluate": ("avssl.eval.cli:main", "evaluate a checkpoint (same as evaluate.py)"),
    "inspect": ("avssl.tools.inspect:main", "describe and test-decode a media file"),
    "synth": ("avssl.data.synth_cli:main", "build the built-in synthetic AV world"),
    "index": ("avssl.tools.index_cli:main", "build or update a cross-modal search index"),
    "query": ("avssl.tools.query_cli:main", "search an index with a sound, image or video"),
    "embed": ("avssl.tools.embed_cli:main", "write audio and visual embeddings of media files"),
    "overlay": ("avssl.tools.overlay:main", "render a sound-localisation heatmap video"),
    "prepare": ("avssl.prep:main", "write a dataset's manifest (avssl prepare NAME ...)"),
    "report": ("avssl.tools.report:main", "a self-contained HTML page of a run"),
    "cache": ("avssl.data.shards_cli:main", "decode a manifest once into tar shards"),
    "bench": ("avssl.tools.bench:main", "measure decoding, cache, training and embedding speed"),
}


# C0 and C1 control characters (a newline, a carriage return, an escape sequence) and the Unicode
# line and paragraph separators: what can break an error line or rewrite the terminal
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped as ``repr`` escapes them (``\\n``, ``\\t``,
    ``\\x1b``), so a message naming a file called ``a<newline>b.mp4`` stays one line; text
    without any (every normal file name) is returned unchanged.

    Args:
        text: a message, or a file name to put in one.
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _usage() -> str:
    lines = ["usage: avssl COMMAND [ARGS...]   (avssl --version: the version)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: --flag: reason (PROG --help)``.

    argparse itself prints its usage block before the error; a bad flag is bad input like any
    other, so it gets one line and exit status 2 too.
    """

    def __init__(self, *args, **kwargs):
        for key in ("description", "epilog"):  # docstring text: its markup read as plain text
            if kwargs.get(key):
                kwargs[key] = re.sub(r":\w+:`~?([^`]+)`", r"\1", kwargs[key]).replace("``", "")
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """Exit with status 2 and ``error: MESSAGE (PROG --help)``, on one line: argparse's
        ``argument --x:`` prefix shortened to ``--x:`` and no usage block."""
        message = one_line(re.sub(r"^argument ([^:]+): ", r"\1: ", message))
        self.exit(2, f"error: {message} ({self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, after :func:`attach_dash_values` (``--video -clip.mp4`` works)."""
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(attach_dash_values(self, argv), namespace)


def run_guarded(fn, argv: list[str]) -> int:
    """Run ``fn(argv)`` turning :class:`AvsslError` into ``error: ...`` on stderr and exit 2.

    An :class:`OSError` the command did not foresee (a read-only folder, an output path below a
    file, a full disk) is reported the same way, by the file it names and the system's reason.
    So is a number too large for the machine (``--hop 1e308``: an ``int()`` of an infinite
    product, a C integer overflowing in torch or numpy), as ``a number is too large for this
    machine``, and an allocation the machine cannot make (``MemoryError``, torch's CPU
    allocator) as ``not enough memory``. Control characters in a message (a file name holding a
    newline) are escaped (:func:`one_line`). Those are backstops: a command should refuse such a
    value itself, naming the flag (the config's keys have upper bounds,
    :mod:`avssl.config_checks`), but not every flag of every command has one. The ``error:``
    line starts a line of its own below a progress bar still drawn
    (:func:`~avssl.failures.close_bars`). Output piped into a reader that stopped reading
    (``| head``) ends the command quietly, as a command killed by ``SIGPIPE`` (exit 141).
    """
    try:
        try:
            code = int(fn(argv) or 0)
        except SystemExit:  # argparse's --help: its text too is written under the guard
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # a pipe's buffer is written here, under the guard, not at exit
        return code
    except AvsslError as err:
        _error(worker_error(err) or str(err))
        return 2
    except (OverflowError, ValueError, TypeError) as err:
        if not overflowed(err):
            raise
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        _error(f"a number is too large for this machine ({detail})")
        return 2
    except MemoryError as err:  # numpy's "Unable to allocate 64.4 GiB for an array with ..."
        detail = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
        _error(f"not enough memory ({detail}): ask for less")
        return 2
    except RuntimeError as err:  # torch re-raises an error it cannot rebuild as RuntimeError
        message = worker_error(err)
        if message is None and (message := peer_lost(err)):
            end_process_group()
        if message is None and "can't allocate memory" in str(err):  # torch's CPU allocator
            message = f"not enough memory ({str(err).strip().splitlines()[0]}): ask for less"
        if message is None:
            raise
        _error(message)
        return 2
    except OSError as err:
        if isinstance(err, BrokenPipeError) and stdout_reader_gone():  # `| head` read its fill
            silence_stdout()
            return 128 + signal.SIGPIPE
        where = f"{err.filename}: " if err.filename else ""
        _error(f"{where}{err.strerror or err}")
        return 2
    except Terminated:  # a SIGTERM before the training loop (avssl.sigterm)
        _error("terminated (SIGTERM)")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    """Print ``error: MESSAGE`` on stderr, on a line of its own (below any progress bar)."""
    close_bars()
    print(f"error: {one_line(message)}", file=sys.stderr)


def dispatch(
    targets: dict[str, str], argv: list[str] | None, usage: str, noun: str, guard: bool = True
) -> int:
    """Run ``NAME ARGS`` as ``targets[NAME](ARGS)``, a ``module:function`` imported lazily.

    No argument prints ``usage`` on stderr and returns 2, ``-h``/``--help`` prints it on stdout
    and returns 0; an unknown NAME is reported in one line on stderr as an unknown ``noun``,
    with the valid names (exit 2). With ``guard`` the function runs under :func:`run_guarded`,
    else its errors propagate.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a mistake: the usage goes where errors go
        print(usage, file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        return run_guarded(lambda _: print(usage), [])
    name, rest = argv[0], argv[1:]
    if name not in targets:
        prog = re.match(r"usage: ([a-z ]+?) [A-Z]", usage)  # "avssl", "avssl prepare"
        hint = f"; {prog.group(1)} --help" if prog else ""
        print(
            f"error: unknown {noun} {name!r} ({noun}s: {', '.join(targets)}{hint})", file=sys.stderr
        )
        return 2
    return run_entry(targets[name], rest) if guard else int(_lazy(targets[name])(rest) or 0)


def _lazy(target: str):
    """The function ``target`` (``module:function``) names, as a function that imports it first."""
    module, func = target.split(":")

    def fn(args: list[str]) -> int:
        return getattr(importlib.import_module(module), func)(args)

    return fn


def run_entry(target: str, argv: list[str] | None = None) -> int:
    """Run a command's ``main`` from an entry point (``train.py``, ``datasets/*/prepare.py``).

    Args:
        target: ``module:function``, imported under :func:`run_guarded`: a Ctrl-C during the
            seconds torch or the decoders take to import is one line too (exit 130).
        argv: the arguments (default ``sys.argv[1:]``: the process's own command, after which
            a Ctrl-C ends the process at once, :func:`~avssl.sigterm.interrupt_kills_after`).

    Returns:
        The exit code.
    """
    fn = _lazy(target)
    if target in SIGTERM_AS_INTERRUPT:
        fn = _sigterm_as_interrupt(fn)
    with interrupt_kills_after(own=argv is None):  # the process's own command
        return run_guarded(fn, list(sys.argv[1:] if argv is None else argv))


# commands that turn SIGTERM into a clean stop themselves (train: it clears a folder it made and
# saves last.pt); run_entry makes it an `error: terminated (SIGTERM)` line (exit 143) already
# during the seconds their imports take, where the default handler would end them without a word
SIGTERM_AS_INTERRUPT = {"avssl.train.cli:main"}


def _sigterm_as_interrupt(fn):
    """``fn`` with SIGTERM raising :class:`Terminated` while it runs, inside
    :func:`run_guarded`, which reports it (:func:`avssl.sigterm.terminated_as_interrupt`)."""
    from avssl.sigterm import terminated_as_interrupt

    def guarded(args: list[str]) -> int:
        with terminated_as_interrupt():
            return fn(args)

    return guarded


def run_script(path: str | os.PathLike, argv: list[str] | None = None) -> int:
    """Run a developer script's ``main(argv)`` (``benchmarks/*.py``) with its imports under
    :func:`run_guarded`, as :func:`run_entry` runs a command's module: a Ctrl-C during the
    seconds torch takes to import is one line too (exit 130).

    The script calls it before its other imports, so ``python benchmarks/x.py`` imports them
    only here, under the guard; imported as a module (a test calling its ``main``), it skips
    the call::

        import sys

        if __name__ == "__main__":  # the imports below, then main(), under the guard
            from avssl.cli import run_script

            sys.exit(run_script(__file__))

    Args:
        path: the script's file (its ``__file__``), imported again as the module named by its
            stem (``decode``, as ``import decode`` from its folder would name it).
        argv: the arguments (default ``sys.argv[1:]``: the process's own, as for
            :func:`run_entry`).

    Returns:
        The exit code.
    """
    path = Path(path)

    def fn(args: list[str]) -> int:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses and pickle find a class's module by name
        spec.loader.exec_module(module)
        return module.main(args)

    with interrupt_kills_after(own=argv is None):  # the process's own command
        return run_guarded(fn, list(sys.argv[1:] if argv is None else argv))


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``avssl COMMAND ARGS`` to the registered command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        from avssl import __version__

        return run_guarded(lambda _: print(f"avssl {__version__}"), [])
    targets = {name: target for name, (target, _) in COMMANDS.items()}
    with interrupt_kills_after(own=argv is None):  # the process's own command
        return dispatch(targets, args, _usage(), "command")


if __name__ == "__main__":
    sys.exit(main())
