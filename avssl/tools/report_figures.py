"""The run-history parts of ``avssl report``: training curves and evaluation tables.

Reads what ``train.py`` and ``evaluate.py`` leave in a run directory: ``metrics.jsonl`` (one JSON
object per logged step, ``"split"`` is ``"train"`` or ``"val"``), the ``report.md`` that each
evaluation appends a ``## Title`` and a markdown table to, and evaluation results saved as JSON.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from avssl.eval.report_md import scalar_rows, split_cells

# (split, key, legend) of each plotted series; loss and accuracies go on separate axes. Only the
# accuracies logged alike in training and validation share the axis: the balanced accuracies
# (TPR + TNR) / 2 of positives against easy / hard negatives at the decision threshold. A train
# row's ``acc`` is not one of them (in-batch top-1 retrieval for contrastive models, plain pair
# accuracy for the others), so it is not plotted.
LOSS_SERIES = (("train", "loss", "train loss"),)
ACC_SERIES = (
    ("train", "acc_easy", "train, easy neg."),
    ("val", "accuracy_easy", "val, easy neg."),
    ("train", "acc_hard", "train, hard neg."),
    ("val", "accuracy_hard", "val, hard neg."),
    ("val", "accuracy", "val AVC accuracy (mean of easy, hard)"),
)
PANELS = (("loss", LOSS_SERIES), ("balanced accuracy (positives vs negatives)", ACC_SERIES))
MAX_JSON_BYTES = 5_000_000


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Rows of a ``metrics.jsonl`` and the number of unreadable lines skipped."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad += 1
    return rows, bad


def curve_series(rows: list[dict], split: str, key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of ``key`` in rows of ``split`` that have a numeric step and value."""
    steps, values = [], []
    for row in rows:
        step, value = row.get("step"), row.get(key)
        if row.get("split") != split or isinstance(value, bool) or isinstance(step, bool):
            continue
        if isinstance(step, int | float) and isinstance(value, int | float):
            steps.append(float(step))
            values.append(float(value))
    return steps, values


def png_uri(png: bytes) -> str:
    """PNG bytes -> ``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plotted_series(rows: list[dict]) -> list[tuple[str, list[tuple[str, list, list]]]]:
    """What :func:`curves_png` draws: ``[(y label, [(legend, steps, values), ...]), ...]``, one
    entry per panel, holding only the series ``rows`` have points of."""
    out = []
    for ylabel, series in PANELS:
        found = [(label, *curve_series(rows, split, key)) for split, key, label in series]
        out.append((ylabel, [(label, x, y) for label, x, y in found if x]))
    return out


def curves_png(rows: list[dict]) -> bytes | None:
    """Training loss and train/val balanced accuracies against the step, as one PNG (None: none).

    Uses matplotlib's Agg canvas directly (no pyplot global state), so it runs headless.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = plotted_series(rows)
    if not any(series for _, series in panels):
        return None
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (ylabel, series) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for label, steps, values in series:
            # a train series dashed, in the colour of its val counterpart
            style = "--" if label.startswith("train") and i > 0 else "-"
            colour = {"easy neg.": "C0", "hard neg.": "C1"}.get(label[-9:], "C2")
            marker = "o" if len(steps) < 30 else None
            ax.plot(steps, values, style, color=colour, marker=marker, ms=3, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not readable JSON: {str(err).splitlines()[0]}"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    return obj, None


def json_tables(paths: list[Path], base: Path) -> tuple[list[dict], list[str]]:
    """Evaluation results saved as JSON objects -> tables like :func:`parse_report_md`'s.

    Returns:
        ``(tables, notes)``: one table per readable JSON object (titled by its path relative to
        ``base`` when inside it), one note per file that was skipped and why.
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
        rows = [list(kv) for kv in flatten_scalars(obj)]
        tables.append({"title": title, "header": ["metric", "value"], "rows": rows})
    return tables, notes


def current_digests(run_dir: Path) -> dict[str, str]:
    """``{weights digest: "best.pt (step N)"}`` of the run's ``best.pt`` and ``last.pt`` that
    load (digests as in evaluation results: :func:`avssl.train.checkpoint.weights_digest`)."""
    from avssl.errors import AvsslError
    from avssl.train.checkpoint import load_model, weights_digest

    out: dict[str, str] = {}
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            try:
                model, _, state = load_model(run_dir / name)
            except AvsslError:
                continue
            out.setdefault(weights_digest(model), f"{name} (step {state.get('step')})")
    return out


def stale_note(table: dict, current: dict[str, str]) -> str | None:
    """Why a table's evaluated weights are none of the run's checkpoints now, else None.

    Args:
        table: a table of :func:`parse_report_md` or :func:`json_tables`; only its
            ``weights_digest`` row is read (older tables have none: never called stale).
        current: :func:`current_digests` of the run (empty: nothing to compare with).
    """
    digest = next((r[1] for r in table["rows"] if len(r) > 1 and r[0] == "weights_digest"), None)
    if not current or not digest or digest in current:
        return None
    now = ", ".join(f"{name} {d}" for d, name in current.items())
    return f"Stale: evaluated weights {digest} are not the run's current checkpoints ({now})."
