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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    cols = max(1, min(cols, len(frames)))
    rows = max(1, math.ceil(len(frames) / cols))
    h, w = frames[0][1].shape[:2] if frames else (1, 1)
    fig = Figure(figsize=(3 * cols, 3 * rows * h / w + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (t, img) in enumerate(frames):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img)
        ax.set_title(f"{t:.2f} s", fontsize=9)
        ax.axis("off")
    if title:
        shown = one_line(title).encode("utf-8", "backslashreplace").decode("utf-8")
        fig.suptitle(shown, fontsize=10, parse_math=False)
    fig.tight_layout()
    with replacing(path, keep_suffix=True, make_parents=True) as tmp:
        fig.savefig(tmp, format="png")
    return path
