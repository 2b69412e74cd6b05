"""File names and option values that start with a dash, for argparse.

argparse reads any word starting with a dash as an option: ``--video -clip.mp4`` is then a
missing value and ``avssl inspect -clip.mp4`` an unknown option. These rewrite ``argv`` so that
such names reach the command as values (see :class:`avssl.cli.ArgumentParser`).
"""

from __future__ import annotations

import argparse
import os


def _path_like(arg: str) -> bool:
    """Whether a word names an existing path or has a file extension (``-clip.mp4``)."""
    return os.path.exists(arg) or os.path.splitext(arg)[1][1:].isalnum()


def _action(parser: argparse.ArgumentParser, flag: str):
    """The action of option ``flag`` or of its unique abbreviation, else None."""
    options = parser._option_string_actions  # argparse has no public lookup
    if flag in options:
        return options[flag]
    tuples = parser._get_option_tuples(flag) if flag.startswith("--") and len(flag) > 2 else []
    return tuples[0][0] if len(tuples) == 1 else None


def attach_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with a value that starts with a dash attached to its option.

    argparse takes ``--video -clip.mp4`` for two options and refuses it, but accepts
    ``--video=-clip.mp4`` (and ``-o=-clip.mp4``). A word counts as such a value when it follows
    an option that takes exactly one and argparse would not read it as an option (one of
    ``parser``'s, or an abbreviation of a long one): ``--html --forc`` stays a missing value,
    and a list option (``--results``) never swallows the option after it. A list option that
    extends (``action="extend"``: ``avssl index --inputs``) also takes, each as
    ``--opt=VALUE``, the dash words after it that name a path (:func:`_path_like`) and every
    word after a ``--`` that follows it.
    """
    out, takes_value, extending, bare = [], False, None, False
    for i, arg in enumerate(argv):
        if arg == "--":
            if extending is None or i + 1 == len(argv):
                return out + argv[i:]
            return (out[:-1] if bare else out) + [f"{extending}={a}" for a in argv[i + 1 :]]
        flag = arg.split("=", 1)[0]
        action = _action(parser, flag) if arg.startswith("-") else None
        # an ambiguous abbreviation is an option too: argparse refuses it as such
        is_option = action is not None or (
            flag.startswith("--") and parser._get_option_tuples(flag)
        )
        dashed = arg.startswith("-") and len(arg) > 1 and not is_option
        if takes_value and dashed:
            out.append(f"{out.pop()}={arg}")
            takes_value = False
            continue
        if extending and (not arg.startswith("-") or (dashed and _path_like(arg))):
            # each value attached (``--inputs -a.mp4 b.mp4``), the bare option dropped
            out = (out[:-1] if bare else out) + [f"{extending}={arg}"]
            bare = False
            continue
        out.append(arg)
        whole = action is not None and "=" not in arg
        takes_value = whole and action.nargs is None
        extending = arg if whole and isinstance(action, argparse._ExtendAction) else None
        bare = extending is not None
    return out


def dash_paths_last(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with file names that start with a dash moved behind ``--``.

    ``avssl inspect -clip.mp4`` would otherwise be an unknown option and an argparse usage
    message. An argument counts as such a name when it is not one of ``parser``'s options (nor
    ``--opt=value``) and names an existing path or has a file extension; it then stays a
    positional argument, in order. Dash values of options are attached first
    (:func:`attach_dash_values`).
    """
    if "--" in argv:
        return argv
    options = parser._option_string_actions  # argparse has no public lookup
    keep, names = [], []
    for arg in attach_dash_values(parser, argv):
        is_option = arg.split("=", 1)[0] in options
        dashed = arg.startswith("-") and len(arg) > 1 and not is_option
        if dashed and _path_like(arg):
            names.append(arg)
            continue
        keep.append(arg)
    return keep + ["--", *names] if names else keep
