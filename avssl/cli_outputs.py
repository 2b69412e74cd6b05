"""Checks of a command's output paths, made before any work so that a refused output costs
nothing: not a folder, not below a file, not existing unless ``--force``, writable, and never one
of the command's own inputs.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import tempfile
from pathlib import Path

from avssl.errors import AvsslError, InputOverwriteError


def _check_parents(path: Path) -> None:
    """Refuse a path below a regular file (``mkdir`` would fail late, with a traceback)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AvsslError(f"{parent}: not a directory")
            return


HTML_SUFFIXES = (".html", ".htm")
EMPTY_VALUE = "an empty value (leave the flag out)"


def check_not_empty(values, what: str = EMPTY_VALUE) -> None:
    """Refuse a flag given an empty or blank text: most often an unset shell variable, which
    would read as "not given" or as the current folder (``Path("")`` is ``.``).

    Args:
        values: ``(flag, value)`` pairs; values that are not text are passed over.
        what: the reason after the flag's name.

    Raises:
        AvsslError: ``FLAG: what`` for the first such flag.
    """
    for flag, value in values:
        if isinstance(value, str) and not value.strip():
            raise AvsslError(f"{flag}: {what}")


def check_html_name(path: str | os.PathLike, flag: str) -> None:
    """Refuse an HTML output not named ``.html`` or ``.htm`` (``-o x.wav --force`` would write
    a page over a sound, and a browser would not open ``x.txt`` as a page).

    Raises:
        AvsslError: another suffix, naming ``flag``.
    """
    if not str(path).strip():  # an unset shell variable: not the default file
        raise AvsslError(f"{flag}: an empty file name")
    if str(path).endswith(("/", os.sep)):  # Path() would drop the slash and write a file
        raise AvsslError(f"{path}: {flag} names a folder: give the page's file name")
    if Path(path).suffix.lower() not in HTML_SUFFIXES:
        raise AvsslError(f"{path}: {flag} writes an HTML page: name it .html or .htm")


def check_new_file(path: str | os.PathLike, force: bool, in_place: bool = False) -> None:
    """Refuse an output file that is a folder, that exists unless ``force`` (a symlink counts,
    even one that dangles or loops), or that cannot be created (its folder is read-only).

    Called before the work, so a refused output costs nothing.

    Args:
        path: the output file.
        force: whether an existing file may be replaced.
        in_place: the command rewrites an existing file where it is (``evaluate --out``), so
            only that file must be writable; otherwise it writes a new file beside it and
            renames it over, so the folder must take new files.

    Raises:
        AvsslError: ``path`` is a directory, lies below a regular file, exists without
            ``force``, or its folder does not take new files, or it is a device, pipe or
            socket; ``in_place``, it is a symlink loop, or a dangling symlink whose target
            cannot be created.
    """
    path = Path(path)
    _check_parents(path)
    if path.is_dir():
        raise AvsslError(f"{path}: is a directory")
    # lexists: a symlink is the user's even when it dangles or loops (exists() is False then)
    if os.path.lexists(path) and not force:
        raise AvsslError(f"{path}: exists (pass --force to overwrite)")
    _check_regular(path)
    if in_place and path.is_symlink() and not path.exists():
        _check_dangling(path)  # --force: the write goes through the link, where it points
        return
    if in_place and path.exists():
        try:
            open(path, "ab").close()  # appends nothing: the file is unchanged
        except OSError as err:
            raise AvsslError(f"{path}: cannot be written ({err.strerror or err})") from None
        return
    _check_writable(path)


def _check_regular(path: Path) -> None:
    """Refuse an output that is, through its symlinks, a device, a named pipe or a socket: a
    new file renamed over it would replace it, ``--force`` or not (as root, ``report -o
    /dev/null --force`` replaced the system's ``/dev/null`` with a regular file), and the check
    of an in-place output (opening it to append) waits for ever on a pipe nobody reads. Every
    command prints its result on stdout as well, so nothing is lost by naming a file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # nothing there, or a dangling link: the other checks decide
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a folder is refused as one
        raise AvsslError(
            f"{path}: is not a regular file (a device, pipe or socket), which writing would "
            "replace, --force or not; give a file name"
        )


def _check_dangling(link: Path) -> None:
    """Refuse a symlink to nothing that an in-place write cannot go through: a loop, or a link
    whose target cannot be created (no such folder, or one that takes no new file)."""
    try:
        os.stat(link)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise AvsslError(f"{link}: is a symlink loop") from None
    target = Path(os.path.realpath(link))  # where the write would create the file
    if not target.parent.is_dir():
        raise AvsslError(
            f"{link}: is a symlink to {os.readlink(link)}, which cannot be created (no folder "
            f"{target.parent})"
        )
    _check_writable(target, link)


def _check_writable(path: Path, name: Path | None = None) -> None:
    """Refuse an output whose nearest existing folder does not take a new file (read-only,
    no permission), found by creating and removing an empty file there: checking the mode bits
    misses read-only mounts and is wrong for root. The error names ``name`` (default:
    ``path``)."""
    folder = next(p for p in path.absolute().parents if p.exists())
    try:
        fd, probe = tempfile.mkstemp(prefix=".avssl-write-test", dir=folder)
    except OSError as err:
        raise AvsslError(f"{name or path}: cannot be written ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


# the arguments that name a command's outputs, never its inputs
OUTPUT_ARGS = frozenset({"out", "output", "html", "png", "out_dir"})


def _input_paths(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The arguments' values (other than :data:`OUTPUT_ARGS`) that name existing paths, resolved;
    a ``PATH=VALUE`` string counts by its ``PATH``."""
    found = []
    for name, value in vars(args).items():
        if name in OUTPUT_ARGS:
            continue
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, str | os.PathLike) or not v:
                continue
            for candidate in dict.fromkeys([str(v), str(v).rpartition("=")[0]]):
                if candidate and os.path.exists(candidate):
                    found.append((str(v), Path(candidate).resolve()))
    return found


def check_not_input(
    out: str | os.PathLike,
    args: argparse.Namespace,
    suffixes: tuple[str, ...],
    folders: tuple[str | os.PathLike, ...] = (),
):
    """Refuse an output that would replace what the command reads, ``--force`` or not.

    The inputs are the parsed arguments' values that name existing paths (other than the
    outputs, :data:`OUTPUT_ARGS`). ``out`` may not be one of those files, nor an existing file
    inside one of those folders (a run directory, an index) unless its suffix is one the command
    writes (an earlier result it may replace): ``--out RUN/best.pt --force`` must not destroy
    the checkpoint.

    Args:
        out: the output file.
        args: the command's parsed arguments.
        suffixes: lower-case suffixes of the files the command writes (``(".json",)``).
        folders: input folders no argument names as such (the run folder of a checkpoint file).

    Raises:
        AvsslError: ``out`` is an input, or an existing file of another kind in an input folder.
    """
    target = Path(out)
    if not target.exists():
        return
    target = target.resolve()
    extra = [(str(f), Path(f).resolve()) for f in folders if f and os.path.exists(f)]
    for value, path in [*_input_paths(args), *extra]:
        if path == target:
            raise AvsslError(f"{out}: is an input of this command (--force never overwrites it)")
        if path.is_dir() and target.is_relative_to(path) and target.suffix.lower() not in suffixes:
            raise AvsslError(
                f"{out}: is a file of the input folder {value} (--force never overwrites it; "
                f"the output must end in {' or '.join(suffixes)})"
            )


def check_outputs_spare_inputs(
    out: str | os.PathLike,
    args: argparse.Namespace,
    files: tuple[str, ...],
    folders: tuple[str, ...] = (),
) -> None:
    """Refuse, ``--force`` or not, a run whose outputs in the folder ``out`` would replace an
    input: a file of ``files`` that is an input, or a folder of ``folders`` that is or holds one
    (``prepare.py --fsdd OUT/audio --out OUT`` would rewrite the recordings it reads).

    Args:
        out: the output folder.
        args: the command's parsed arguments (their existing paths are the inputs).
        files: names of the files written in ``out``.
        folders: names of the folders written into in ``out``.

    Raises:
        InputOverwriteError: an output is, or holds, an input.
    """
    inputs = _input_paths(args)
    if not inputs:
        return
    out = Path(out)
    for name in files:
        target = (out / name).resolve()
        for value, path in inputs:
            if path == target:
                raise InputOverwriteError(
                    f"{out / name}: is an input of this run ({value}); --force never overwrites it"
                )
    for name in folders:
        target = (out / name).resolve()
        for value, path in inputs:
            if path.is_relative_to(target):
                raise InputOverwriteError(
                    f"{out / name}: holds an input of this run ({value}); this run writes into "
                    "it, --force or not: choose another --out"
                )


def check_not_read(out: str | os.PathLike, inputs, what: str) -> None:
    """Refuse an output that is one of ``inputs``, ``--force`` or not.

    For the files a command reads that no argument names, which :func:`check_not_input` cannot
    see: the manifest a checkpoint's config points at, the media a manifest or an index lists.
    Files are compared by device and inode, so a symlink or a hard link to an input is refused.

    Args:
        out: the output file.
        inputs: paths of the files read (missing ones are ignored).
        what: what each of them is, for the message (``"a media file of the index IDX"``).

    Raises:
        InputOverwriteError: ``out`` is one of ``inputs``.
    """
    try:
        st = os.stat(out)
    except OSError:  # nothing there yet: it cannot be an input
        return
    for path in inputs:
        try:
            other = os.stat(path)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise InputOverwriteError(
                f"{out}: is {path} ({what}), which this command reads (--force never overwrites it)"
            )


def check_new_dir(path: str | os.PathLike, force: bool) -> None:
    """Refuse an output folder that is a file, or that holds anything unless ``force``.

    Raises:
        AvsslError: ``path`` is not a directory, lies below a regular file, or is a non-empty
            folder without ``force``.
    """
    path = Path(path)
    _check_parents(path)
    if path.exists() and not path.is_dir():
        raise AvsslError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise AvsslError(f"{path}: folder is not empty (pass --force to write into it)")
