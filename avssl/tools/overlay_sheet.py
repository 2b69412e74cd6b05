"""Contact sheet of overlay frames (matplotlib, Agg backend, no global pyplot state)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from avssl.atomic_write import replacing
from avssl.cli import one_line


def contact_sheet(path, frames: list[tuple[float, np.ndarray]], title: str = "", cols: int = 4):
    """Save ``(time s, uint8 [H, W, 3] frame)`` pairs as a grid PNG, written atomically.

    The ``title`` (a file name) is drawn as written: no ``$...$`` maths, control characters and
    bytes that are not UTF-8 escaped as the JSON output escapes them.

    Returns:
        The written :class:`~pathlib.Path`.
    """
    path = Path(path)
    fig = sheet_figure(frames, title, cols)
    with replacing(path, keep_suffix=True, make_parents=True) as tmp:
        fig.savefig(tmp, format="png")
    return path


def sheet_figure(frames: list[tuple[float, np.ndarray]], title: str = "", cols: int = 4):
    """The matplotlib ``Figure`` :func:`contact_sheet` saves (drawn on an Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, min(cols, len(frames)))
    rows = max(1, math.ceil(len(frames) / cols))
    h, w = frames[0][1].shape[:2] if frames else (1, 1)
    # each row: its images at 3 inches a column, and its time labels (0.35 inch) above them;
    # the layout engine keeps labels off the row above, which tight_layout did not for wide frames
    height = rows * (3 * h / w + 0.35) + (0.4 if title else 0.1)
    fig = Figure(figsize=(3 * cols, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, (t, img) in enumerate(frames):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img)
        ax.set_title(f"{t:.2f} s", fontsize=9)
        ax.axis("off")
    if title:
        shown = one_line(title).encode("utf-8", "backslashreplace").decode("utf-8")
        fig.suptitle(shown, fontsize=10, parse_math=False)
    return fig
