"""AV-Digits canvases: ``grid x grid`` mosaics of MNIST digits, the source cell's box, and the
choice of which cell shows the spoken digit."""

from __future__ import annotations

import numpy as np
from PIL import Image


def render_canvas(digits: list[np.ndarray], grid: int, size: int) -> np.ndarray:
    """uint8 ``[size, size, 3]`` mosaic of ``grid**2`` images ``[h, w]`` in row-major order."""
    cell = size // grid
    canvas = np.zeros((size, size), np.uint8)
    for k, img in enumerate(digits):
        r, c = divmod(k, grid)
        up = Image.fromarray(img).resize((cell, cell), Image.Resampling.BILINEAR)
        canvas[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = np.asarray(up)
    return np.repeat(canvas[:, :, None], 3, axis=2)


def render_single(img: np.ndarray, grid: int, size: int) -> np.ndarray:
    """uint8 ``[size, size, 3]``: one image ``[h, w]`` at cell scale, centred on a blank canvas.

    Gallery images keep the digits' size in the canvases (a fully convolutional tower is not
    scale invariant) and show nothing else.
    """
    cell = size // grid
    canvas = np.zeros((size, size), np.uint8)
    lo = (size - cell) // 2
    up = Image.fromarray(img).resize((cell, cell), Image.Resampling.BILINEAR)
    canvas[lo : lo + cell, lo : lo + cell] = np.asarray(up)
    return np.repeat(canvas[:, :, None], 3, axis=2)


def cell_box(k: int, grid: int) -> list[float]:
    """Normalised ``[x0, y0, x1, y1]`` of cell ``k`` (row-major)."""
    r, c = divmod(k, grid)
    return [c / grid, r / grid, (c + 1) / grid, (r + 1) / grid]


def choose_cells(rng: np.random.Generator, digit: int, grid: int) -> tuple[int, list[int]]:
    """The source cell and every cell's digit (distractors differ from ``digit``)."""
    n = grid * grid
    others = [d for d in range(10) if d != digit]
    distract = rng.choice(others, size=n - 1, replace=n - 1 > len(others)).tolist()
    source = int(rng.integers(n))
    return source, [*distract[:source], digit, *distract[source:]]
