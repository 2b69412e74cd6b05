"""How a decoded frame is made the shape the model reads (``data.frame_fit``), and which frames
a setting applies to.

``squash`` (the default) scales the whole picture to the output size, whatever its aspect
ratio: a 16:9 frame is squeezed into a square, and coordinates normalised to the frame (boxes)
stay valid. ``crop`` scales the picture as shown (upright, pixels of the stream's sample aspect
ratio) until it covers the output size, keeping its aspect ratio, and keeps the centre: for a
square output, the shorter side becomes the output side and the centre square is kept. Either
way the decoded frame has the size asked for, so caches and models see the same shapes.

Which frames ``crop`` applies to (:func:`split_fit`): those of the manifest's ``train`` split
wherever :mod:`avssl.data` reads it (training from media, from ``data.cache`` or streamed, and an
evaluation that loads the train split as a dataset: a cohort, CCA, a recalibration on it,
``avc --split train``). The ``val`` and ``test`` splits always squash (validation chooses
``best.pt`` on what evaluation scores, and localisation scores boxes normalised to the whole
frame on ``test``), and so does every tool that decodes a file itself (sync, on the train split
too; ``retrieval --gallery``'s pictures, index, query, embed, overlay).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from avssl.config_checks import CHOICES

FITS: tuple[str, ...] = CHOICES["data.frame_fit"]  # ("squash", "crop"): the first is the default
SQUASH, CROP = FITS


def split_fit(data, split: str) -> str:
    """The fit frames of ``split`` are decoded with: ``data.frame_fit`` for ``train``, else
    ``squash`` (see the module's docstring).

    Args:
        data: data settings (a :class:`~avssl.config.DataConfig`).
        split: ``train``, ``val`` or ``test``.
    """
    return data.frame_fit if split == "train" else SQUASH


def check_fit(fit: str, size) -> None:
    """Raise ValueError for an unknown ``fit``, or ``crop`` without an output size."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if fit == CROP and size is None:
        raise ValueError("fit='crop' needs an output size")


def cover_size(
    shown_wh: tuple[int, int], sar: Fraction | float | None, turns: int, out_hw: tuple[int, int]
) -> tuple[int, int]:
    """``(H, W)`` the picture as shown is scaled to (aspect ratio kept) so that it covers
    ``out_hw``: one side equals the output's, the other is at least as long.

    Args:
        shown_wh: ``(width, height)`` of the decoded frame turned upright, in stored pixels.
        sar: the stream's sample aspect ratio (a stored pixel's width over its height; ``None``
            or 0: square pixels).
        turns: counterclockwise quarter turns that show the frame upright (an odd number turns
            the stored width into the shown height).
        out_hw: the output ``(H, W)``.
    """
    w, h = float(shown_wh[0]), float(shown_wh[1])
    if sar:
        if turns % 2:
            h *= float(sar)
        else:
            w *= float(sar)
    out_h, out_w = out_hw
    scale = max(out_h / h, out_w / w)
    return max(out_h, round(h * scale)), max(out_w, round(w * scale))


def centre_crop(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The centre ``out_hw`` of a uint8 ``[H, W, C]`` image (the left/top of two equal centres)."""
    h, w = image.shape[:2]
    out_h, out_w = out_hw
    top, left = (h - out_h) // 2, (w - out_w) // 2
    if (top, left) == (0, 0) and (h, w) == (out_h, out_w):
        return image
    return np.ascontiguousarray(image[top : top + out_h, left : left + out_w])
