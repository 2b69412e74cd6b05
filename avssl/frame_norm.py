"""The frames' normalisation every vision tower starts with (ImageNet's mean and std)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrameNorm(nn.Module):
    """ImageNet mean/std normalisation of RGB frames.

    Model inputs are float frames in ``[0, 1]``; uint8 frames in ``[0, 255]`` are also accepted
    and scaled here.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, 3, H, W]`` normalised, same memory format."""
        if not frames.is_floating_point():
            frames = frames.float() / 255.0
        return (frames - self.mean.to(frames.dtype)) / self.std.to(frames.dtype)
