"""Read a user's UTF-8 text file (annotations, id lists, CSVs, JSON lists); each failure: one line.

Shared by the readers of published metadata (:mod:`avssl.data.annotations`,
:mod:`avssl.data.audioset`) and the preparation scripts, so a file that cannot be read or is
not UTF-8 text is reported as ``FILE: reason`` rather than a ``UnicodeDecodeError``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

from avssl.errors import ManifestError


def text_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of ``path``, line endings kept (``newline=""``, as :mod:`csv` wants).

    Read lazily, so a large CSV is never held whole; errors raised by the caller between lines
    are not caught here.

    Raises:
        ManifestError: the file cannot be opened or read, or is not UTF-8 text.
    """
    path = Path(path)
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) would otherwise join the first
        # field's name or the first id
        with open(path, encoding="utf-8-sig", newline="") as fh:
            yield from fh
    except OSError as err:
        raise ManifestError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{_first_bad_line(path)}: not UTF-8 text") from None


def _first_bad_line(path: Path) -> str:
    """``file:line`` of the first line of ``path`` that is not UTF-8 (the file when none is
    found: the error was in a read the text reader made ahead of the lines)."""
    try:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return f"{path}:{n}"
    except OSError:
        pass
    return str(path)


def csv_fields(line: str, where: str, **fmt) -> list[str]:
    """The fields of one CSV line, parsed on its own: a stray quote spoils that line only, not
    every line after it up to the next quote (a reader over the whole file would read them as
    one record, or stop with a traceback once that record passes :mod:`csv`'s field limit).

    Args:
        line: one line of the file.
        where: ``file:line``, for the error.
        fmt: :func:`csv.reader` format options (e.g. ``skipinitialspace=True``).

    Raises:
        ManifestError: :mod:`csv` cannot read the line (e.g. a field over its size limit), or
            a quote is left open.
    """
    try:
        fields = next(csv.reader([line], **fmt), [])
    except csv.Error as err:
        raise ManifestError(f"{where}: not a CSV row ({err})") from None
    if any("\n" in f or "\r" in f for f in fields):  # only a quote left open keeps a line end
        raise ManifestError(f"{where}: a quote is not closed on its line")
    return fields


def read_text(path: str | os.PathLike) -> str:
    """The whole of ``path`` as a string (see :func:`text_lines` for the errors)."""
    return "".join(text_lines(path))


def read_json_list(path: str | os.PathLike, what: str) -> list:
    """The JSON list in ``path``; its entries are not checked.

    Args:
        path: the file.
        what: what the list holds, for the error (e.g. ``"objects"``).

    Raises:
        ManifestError: unreadable, not UTF-8 text, not JSON (with the line), or not a list.
    """
    path = Path(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}:{err.lineno}: not JSON ({err.msg})") from None
    if not isinstance(data, list):
        raise ManifestError(f"{path}: expected a JSON list of {what}")
    return data
