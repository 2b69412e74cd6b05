"""The ``avssl`` console script: one explicit registry of subcommands.

Each entry maps a subcommand to ``module:function`` where the function is ``main(argv) -> int``.
Modules are imported lazily so ``avssl inspect`` does not pay for importing the models.
"""

from __future__ import annotations

import importlib
import sys

from avssl.errors import AvsslError

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("avssl.train.cli:main", "train a correspondence model (same as train.py)"),
    "evaluate": ("avssl.eval.cli:main", "evaluate a checkpoint (same as evaluate.py)"),
    "inspect": ("avssl.tools.inspect:main", "describe and test-decode a media file"),
    "synth": ("avssl.data.synthetic:main", "build the built-in synthetic AV world"),
}


def _usage() -> str:
    lines = ["usage: avssl COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def run_guarded(fn, argv: list[str]) -> int:
    """Run ``fn(argv)`` turning :class:`AvsslError` into ``error: ...`` on stderr and exit 2."""
    try:
        return int(fn(argv) or 0)
    except AvsslError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``avssl COMMAND ARGS`` to the registered command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n{_usage()}", file=sys.stderr)
        return 2
    module, func = COMMANDS[name][0].split(":")
    return run_guarded(getattr(importlib.import_module(module), func), rest)


if __name__ == "__main__":
    sys.exit(main())
