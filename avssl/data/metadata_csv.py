"""A dataset's metadata CSV (ESC-50, UrbanSound8K) row by row, and what is wrong with a row.

Shared by ``avssl prepare esc50|us8k`` (:mod:`avssl.prep.folds`) and ``evaluate.py classify``
(:mod:`avssl.eval.audio_sets`), so one malformed row is reported with the same ``file:line`` and
the same reason by both. Line numbers are the file's own (:attr:`csv.DictReader.line_num`), which
stay right after a blank line or a quoted field that spans lines.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from avssl.data.textfile import text_lines
from avssl.errors import ManifestError


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
    reader = csv.DictReader(text_lines(path))
    header = list(reader.fieldnames or [])
    missing = [c for c in columns if c not in header]
    if missing:
        raise ManifestError(f"{path}: missing columns {', '.join(missing)}")
    return header, ((reader.line_num, rec) for rec in reader)


def record_problem(rec: dict, header: list[str], needed: tuple[str, ...]) -> str | None:
    """Why a :func:`csv_records` record cannot be used, or None.

    A record with fewer or more fields than the header is malformed (its columns cannot be
    trusted), and so is one where a column in ``needed`` is empty.
    """
    if None in rec:  # DictReader's restkey: fields beyond the header
        return f"{len(header) + len(rec[None])} fields, the header has {len(header)}"
    short = [c for c in header if rec[c] is None]  # DictReader's restval: a short row
    if short:
        return f"missing column(s) {', '.join(short)}"
    empty = [c for c in needed if not rec[c].strip()]
    if empty:
        return f"empty column(s) {', '.join(empty)}"
    return None
