"""Frame augmentation (L3-Net: random crop, horizontal flip, colour jitter) with explicit draws.

Parameters come from a caller-supplied ``numpy`` generator rather than torch's global RNG, so an
item's augmentation is a pure function of ``(seed, epoch, index)`` and resuming is exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF


def train_augment(
    frame: torch.Tensor,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.7, 1.0),
    jitter: float = 0.15,
) -> torch.Tensor:
    """Random resized crop, flip and brightness/contrast/saturation jitter.

    Hue is left alone: colour is part of an object's identity.

    Args:
        frame: uint8 ``[3, H, W]``.
        size: output side length.
        rng: the item's generator.
        scale: range of the crop's area as a fraction of the frame.
        jitter: maximum relative change of brightness, contrast and saturation.

    Returns:
        uint8 ``[3, size, size]``.
    """
    _, h, w = frame.shape
    area = rng.uniform(*scale) * h * w
    side = int(round(min(h, w, np.sqrt(area))))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    out = TF.resized_crop(frame, top, left, side, side, [size, size], antialias=True)
    if rng.random() < 0.5:
        out = TF.horizontal_flip(out)
    b, c, s = rng.uniform(1 - jitter, 1 + jitter, size=3)
    out = TF.adjust_brightness(out, float(b))
    out = TF.adjust_contrast(out, float(c))
    return TF.adjust_saturation(out, float(s))


def eval_resize(frame: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the whole frame (no crop: normalised boxes stay valid); uint8 ``[3, size, size]``.

    Args:
        frame: uint8 ``[3, H, W]``; returned as is when already ``size x size``.
        size: output side length.
    """
    if frame.shape[-1] == size and frame.shape[-2] == size:
        return frame
    return TF.resize(frame, [size, size], antialias=True)
