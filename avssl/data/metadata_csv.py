"""A dataset's metadata CSV (ESC-50, UrbanSound8K) row by row, and what is wrong with a row.

Shared by ``avssl prepare esc50|us8k`` (:mod:`avssl.prep.folds`) and ``evaluate.py classify``
(:mod:`avssl.eval.audio_sets`), so one malformed row is reported with the same ``file:line`` and
the same reason by both. Each line is parsed on its own (these files hold one clip per line), so
a stray quote spoils its own line only, and line numbers are the file's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from avssl.data.textfile import csv_fields, text_lines
from avssl.errors import ManifestError

UNREADABLE = "<unreadable>"  # a record's key for why csv could not read its line


def csv_records(
    path: str | os.PathLike, columns: tuple[str, ...]
) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    """The header of a metadata CSV and its records, each with its line in the file.

    Args:
        path: the CSV (a header line, then one row per clip).
        columns: the columns the caller needs; the header must have them all.

    Returns:
        ``(header, records)``: ``records`` yields ``(line, record)`` lazily, where ``record`` is
        a :class:`csv.DictReader` dict (see :func:`record_problem` for its malformed forms).

    Raises:
        ManifestError: the file is missing, unreadable or not UTF-8 text (the latter two may be
            raised while iterating), or its header lacks one of ``columns``.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such metadata file")
    lines = enumerate(text_lines(path), 1)
    header: list[str] = []
    for n, line in lines:  # the first line that is not blank
        if header := csv_fields(line, f"{path}:{n}"):
            break
    missing = [c for c in columns if c not in header]
    if missing:
        raise ManifestError(f"{path}: missing columns {', '.join(missing)}")
    return header, _records(path, header, lines)


def _records(path: Path, header: list[str], lines) -> Iterator[tuple[int, dict]]:
    """``(line, record)`` of each non-blank line, as :class:`csv.DictReader` makes them: fields
    beyond the header under the key None, missing ones None. A line :mod:`csv` cannot read has
    every column None and its reason under :data:`UNREADABLE`."""
    for n, line in lines:
        try:
            fields = csv_fields(line, f"{path}:{n}")
        except ManifestError as err:
            why = err.args[0].removeprefix(f"{path}:{n}: ")
            yield n, {**dict.fromkeys(header), UNREADABLE: why}
            continue
        if not fields:
            continue
        rec: dict = dict(zip(header, fields[: len(header)], strict=False))
        rec.update({c: None for c in header[len(fields) :]})
        if len(fields) > len(header):
            rec[None] = fields[len(header) :]
        yield n, rec


def record_problem(rec: dict, header: list[str], needed: tuple[str, ...]) -> str | None:
    """Why a :func:`csv_records` record cannot be used, or None.

    A record with fewer or more fields than the header is malformed (its columns cannot be
    trusted), and so is one where a column in ``needed`` is empty.
    """
    if UNREADABLE in rec:
        return rec[UNREADABLE]
    if None in rec:  # DictReader's restkey: fields beyond the header
        return f"{len(header) + len(rec[None])} fields, the header has {len(header)}"
    short = [c for c in header if rec[c] is None]  # DictReader's restval: a short row
    if short:
        return f"missing column(s) {', '.join(short)}"
    empty = [c for c in needed if not rec[c].strip()]
    if empty:
        return f"empty column(s) {', '.join(empty)}"
    return None
