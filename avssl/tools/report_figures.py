"""The training curves of ``avssl report``.

Reads the ``metrics.jsonl`` that ``train.py`` leaves in a run directory (one JSON object per
logged step, ``"split"`` is ``"train"`` or ``"val"``); the evaluation tables are
:mod:`avssl.tools.report_evals`'.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

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


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Rows of a ``metrics.jsonl`` and the number of unreadable lines skipped."""
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:  # not JSON, or a number of over 4300 digits
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
            try:
                point = float(step), float(value)
            except OverflowError:  # an integer beyond a float's range: no point of a curve
                continue
            steps.append(point[0])
            values.append(point[1])
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
