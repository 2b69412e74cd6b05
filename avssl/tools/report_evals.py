"""The evaluation tables of ``avssl report``: what ``evaluate.py`` left in a run directory.

Each evaluation appends a ``## Title`` and a markdown table to the run's ``report.md``, and
writes its JSON result where ``--out`` says. The page shows every ``report.md`` table, every
evaluation result saved as JSON inside the run directory (other JSON files there, such as an
``avssl index``'s ``meta.json`` or a shard cache's sidecars, are not results and are left out)
and every ``--results`` file; a JSON result that is also a ``report.md`` table (the same
rows, ``evaluated_at`` among them) is shown once. A table evaluated on weights that are
neither the run's ``best.pt`` nor its ``last.pt`` is marked stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from avssl.eval.report_md import scalar_rows, split_cells

MAX_JSON_BYTES = 5_000_000
CHECKPOINTS = ("best.pt", "last.pt")


def _is_separator(cells: list[str]) -> bool:
    return all(c and set(c) <= set("-: ") for c in cells)


def parse_report_md(text: str) -> list[dict]:
    """The ``## Title`` sections of a report.md and their markdown tables.

    Returns:
        ``[{"title": str, "header": [str, ...], "rows": [[str, ...], ...]}]`` in file order; the
        first table line of a section is its header, the ``|---|`` line is dropped and lines
        outside any table are ignored. Cells are split at unescaped ``|`` only and ``\\|`` is
        read back as ``|`` (see :mod:`avssl.eval.report_md`).
    """
    sections: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("## "):
            title = line[3:].strip().replace("\\|", "|")
            sections.append({"title": title, "header": [], "rows": []})
        elif line.startswith("|") and sections:
            cells = split_cells(line)
            sec = sections[-1]
            if _is_separator(cells):
                continue
            if not sec["header"] and not sec["rows"]:
                sec["header"] = cells
            else:
                sec["rows"].append(cells)
    return sections


def flatten_scalars(result: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``(key, text)`` of every cell of a nested result (``a2v/R@1``), formatted as in
    ``report.md`` (:func:`avssl.eval.report_md.scalar_rows`: None as ``-``, short lists joined).
    """
    return scalar_rows(result, prefix)


def read_json_object(path: Path) -> tuple[dict | None, str | None]:
    """``(the JSON object in path, None)``, or ``(None, why it is not one)``."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None, f"larger than {MAX_JSON_BYTES // 1_000_000} MB"
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError,
        # and a number of over 4300 digits, which int() refuses
        return None, f"not readable JSON: {str(err).splitlines()[0]}"
    except RecursionError:
        return None, "not readable JSON: nested too deeply"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    return obj, None


def is_result(obj: dict) -> bool:
    """Whether a JSON object is an ``evaluate.py`` result: every one carries ``evaluated_at``,
    and those of a checkpoint its path and ``weights_digest`` (older ones lack the first)."""
    return (
        "evaluated_at" in obj or "weights_digest" in obj or isinstance(obj.get("checkpoint"), str)
    )


def json_tables(
    paths: list[Path], base: Path, scanned: set[Path] = frozenset(), known=frozenset()
) -> tuple[list[dict], list[str]]:
    """Evaluation results saved as JSON objects -> tables like :func:`parse_report_md`'s.

    Args:
        paths: JSON files.
        base: tables are titled by their path relative to it when inside it.
        scanned: those of ``paths`` found by searching the run (not named by the user): left
            out unless they are results (:func:`is_result`).
        known: the rows of tables already shown (``report.md``'s): a result with the same
            rows (an evaluation's ``--out`` inside the run) is left out.

    Returns:
        ``(tables, notes)``: one table per result, one note per file skipped and why.
    """
    tables, notes = [], []
    for path in paths:
        try:
            title = str(path.relative_to(base))
        except ValueError:
            title = str(path)
        obj, problem = read_json_object(path)
        if problem:
            notes.append(f"{title}: skipped ({problem})")
            continue
        if path in scanned and not is_result(obj):
            continue
        try:
            rows = [list(kv) for kv in flatten_scalars(obj)]
        except RecursionError:  # parsed, but too deep to walk
            notes.append(f"{title}: skipped (not readable JSON: nested too deeply)")
            continue
        if _rows_key(rows) not in known:  # a result in report.md or in two files: shown once
            known.add(_rows_key(rows))
            tables.append({"title": title, "header": ["metric", "value"], "rows": rows})
    return tables, notes


def _rows_key(rows: list[list[str]]) -> tuple:
    return tuple(tuple(r) for r in rows)


def current_digests(run_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The run's checkpoints: ``{weights digest: "best.pt (step N)"}`` of those that load
    (digests as in evaluation results: :func:`avssl.train.checkpoint.weights_digest`), and the
    names of those that do not."""
    from avssl.errors import AvsslError
    from avssl.train.checkpoint import load_model, weights_digest

    out: dict[str, str] = {}
    unreadable = []
    for name in CHECKPOINTS:
        if (run_dir / name).is_file():
            try:
                model, _, state = load_model(run_dir / name)
            except AvsslError:
                unreadable.append(name)
                continue
            out.setdefault(weights_digest(model), f"{name} (step {state.get('step')})")
    return out, unreadable


def stale_note(table: dict, current: dict[str, str], unreadable: list[str] = ()) -> str | None:
    """Why a table's evaluated weights may be none of the run's checkpoints now, else None.

    Args:
        table: a table of :func:`parse_report_md` or :func:`json_tables`; only its
            ``weights_digest`` row is read (older tables have none: never called stale).
        current: :func:`current_digests`' digests (empty: nothing to compare with).
        unreadable: the run's checkpoints that could not be read: a table evaluated on one of
            them cannot be told apart, so it is not called stale.
    """
    digest = next((r[1] for r in table["rows"] if len(r) > 1 and r[0] == "weights_digest"), None)
    if not digest or digest in current or not (current or unreadable):
        return None
    now = ", ".join(f"{name} {d}" for d, name in current.items())
    if unreadable:
        names = " and ".join(unreadable)
        return (
            f"Evaluated weights {digest} are not {now or 'a readable checkpoint'}; {names} could "
            "not be read, so whether they are its weights is unknown."
        )
    return f"Stale: evaluated weights {digest} are not the run's current checkpoints ({now})."


def evaluation_tables(run_dir: Path, extra: list[Path]) -> tuple[list[dict], list[str]]:
    """Every table of the run (module doc), each with its ``"stale"`` note or None, and a note
    on each file that was skipped and why."""
    tables, notes = [], []
    md = run_dir / "report.md"
    if md.is_file():
        tables += parse_report_md(md.read_text(encoding="utf-8", errors="replace"))
    found = sorted(p for p in run_dir.rglob("*.json") if p.is_file())
    named = {p.resolve() for p in extra}  # shown whatever they hold: the user asked for them
    in_run = {p.resolve() for p in found}
    outside = {p.resolve(): p for p in extra if p.resolve() not in in_run}  # each file once
    paths = found + list(outside.values())
    scanned = {p for p in found if p.resolve() not in named}
    known = {_rows_key(t["rows"]) for t in tables}
    more, skipped = json_tables(paths, run_dir, scanned, known)
    tables += more
    notes += skipped
    current, unreadable = current_digests(run_dir)
    for t in tables:
        t["stale"] = stale_note(t, current, unreadable)
    return tables, notes
