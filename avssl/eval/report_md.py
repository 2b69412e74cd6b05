"""The two-column markdown tables ``evaluate.py`` appends to a run's ``report.md``.

One cell formatting serves ``report.md`` and the JSON tables of ``avssl report``
(:func:`scalar_rows`): floats to 4 decimals, None (NaN in the code, null in the JSON) as ``-``,
short lists of scalars joined by commas; empty or longer lists and lists of objects are left
out. A ``|`` in a cell is written ``\\|`` and a line break as a space, so that no value can
break the table; :func:`split_cells` reads such a line back.
"""

from __future__ import annotations

import re
from pathlib import Path

from avssl.cli import json_safe

MAX_LIST_ITEMS = 12  # e.g. the speeds of --audio-tta; per-item lists are longer or objects
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def scalar_text(value) -> str | None:
    """The cell text of one JSON value, or None when it has no cell (dict, empty or long list)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, bool | int | str):
        return str(value)
    short = isinstance(value, list | tuple) and 0 < len(value) <= MAX_LIST_ITEMS
    if short and all(_is_scalar(v) for v in value):
        return ", ".join(_item_text(v) for v in value)
    return None


def _item_text(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def scalar_rows(result: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``(key, text)`` of every cell of a JSON result; nested dicts become ``outer/inner`` keys.

    Args:
        result: the result (NaN and infinities are shown as ``-``, as the JSON's null).
        prefix: prepended to every key.
    """
    out: list[tuple[str, str]] = []
    for key, value in json_safe(result).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += scalar_rows(value, name + "/")
        elif (text := scalar_text(value)) is not None:
            out.append((name, text))
    return out


def md_cell(text: str) -> str:
    """``text`` safe inside a markdown table cell or heading: ``|`` escaped, breaks as spaces."""
    return _LINE_BREAK.sub(" ", text).replace("|", "\\|")


def split_cells(line: str) -> list[str]:
    """The cells of one markdown table line, split at unescaped ``|`` and unescaped.

    Args:
        line: a table line such as ``| a\\|b | 1 |`` (-> ``["a|b", "1"]``).
    """
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in _UNESCAPED_PIPE.split(line)]


def append_report(path: Path, title: str, result: dict) -> None:
    """Append a two-column markdown table of the cells of ``result`` (see :func:`scalar_rows`).

    Text that is not UTF-8 (e.g. a path of a folder whose name is not) is written with
    backslash escapes.

    Args:
        path: the markdown file (created if missing).
        title: the table's heading.
        result: the JSON result.

    Raises:
        OSError: the file cannot be appended to.
    """
    lines = [f"\n## {md_cell(title)}\n", "| metric | value |", "|---|---|"]
    lines += [f"| {md_cell(key)} | {md_cell(text)} |" for key, text in scalar_rows(result)]
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write("\n".join(lines) + "\n")
