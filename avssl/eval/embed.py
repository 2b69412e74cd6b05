"""Batched embedding extraction shared by every evaluation and tool.

Every function takes raw media tensors (the models own their front ends), runs in eval mode under
``torch.no_grad`` on the given device and precision, and returns float32 tensors on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from avssl.data.transforms import eval_resize
from avssl.train.runtime import autocast


def audio_windows(wave: Tensor, sample_rate: int, window: float, hop: float) -> Tensor:
    """Cut a mono waveform into overlapping windows (zero-padding audio shorter than one window).

    Args:
        wave: float ``[N]``.
        sample_rate: Hz.
        window: window length in seconds.
        hop: hop between window starts in seconds.

    Returns:
        float ``[W, n]`` with ``n = round(window * sample_rate)``, ``W >= 1``.
    """
    n = int(round(window * sample_rate))
    step = max(1, int(round(hop * sample_rate)))
    if wave.shape[0] < n:
        wave = F.pad(wave, (0, n - wave.shape[0]))
    return wave.unfold(0, n, step)


def frames_to_input(frames: Tensor, size: int) -> Tensor:
    """uint8 frames ``[B, H, W, 3]`` (as decoded) -> model input float ``[B, 3, size, size]``.

    Args:
        frames: uint8 ``[B, H, W, 3]`` RGB frames.
        size: side length the frames are resized to (no crop).

    Returns:
        float32 ``[B, 3, size, size]`` in ``[0, 1]``.
    """
    chw = frames.permute(0, 3, 1, 2)
    return torch.stack([eval_resize(f, size) for f in chw]).float().div_(255)


def _batched(fn, x: Tensor, device, precision: str, batch_size: int) -> Tensor:
    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            with autocast(precision, torch.device(device)):
                outs.append(fn(x[i : i + batch_size].to(device)).float().cpu())
    return torch.cat(outs)


def embed_audio(
    model, waves: Tensor, device="cpu", precision: str = "fp32", batch_size: int = 64
) -> Tensor:
    """``[W, n]`` waveforms -> audio embeddings ``[W, D]``.

    Args:
        model: the model (its ``embed_audio``).
        waves: float ``[W, n]`` waveforms at the model's sample rate.
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward pass.

    Returns:
        float32 ``[W, D]`` on the CPU.
    """
    model.eval()
    return _batched(model.embed_audio, waves, device, precision, batch_size)


def embed_visual(
    model, frames: Tensor, device="cpu", precision: str = "fp32", batch_size: int = 64
) -> Tensor:
    """Float frames ``[B, 3, H, W]`` in ``[0, 1]`` -> visual embeddings ``[B, D]``.

    Args:
        model: the model (its ``embed_visual``).
        frames: float ``[B, 3, H, W]`` in ``[0, 1]``.
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward pass.

    Returns:
        float32 ``[B, D]`` on the CPU.
    """
    model.eval()
    return _batched(model.embed_visual, frames, device, precision, batch_size)


def visual_maps(
    model, frames: Tensor, device="cpu", precision: str = "fp32", batch_size: int = 64
) -> Tensor | None:
    """Float frames ``[B, 3, H, W]`` -> per-location embeddings ``[B, D, h, w]`` (None: no map).

    Args:
        model: the model (its ``visual_map``; ``has_map`` False gives None).
        frames: float ``[B, 3, H, W]`` in ``[0, 1]``.
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward pass.

    Returns:
        float32 ``[B, D, h, w]`` on the CPU, or None when the model has no map.
    """
    if not model.has_map:
        return None
    model.eval()
    return _batched(model.visual_map, frames, device, precision, batch_size)


def heatmaps(
    model, frames: Tensor, waves: Tensor, device="cpu", precision: str = "fp32", batch_size=64
) -> Tensor | None:
    """Localisation maps ``[B, h, w]`` of float frames ``[B, 3, H, W]`` for waveforms ``[B, n]``.

    Args:
        model: the model (its ``heatmap``; ``has_map`` False gives None).
        frames: float ``[B, 3, H, W]`` in ``[0, 1]``.
        waves: float ``[B, n]``, the sound of each frame.
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward pass.

    Returns:
        float32 ``[B, h, w]`` on the CPU, or None when the model has no map.
    """
    if not model.has_map:
        return None
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, frames.shape[0], batch_size):
            f = frames[i : i + batch_size].to(device)
            w = waves[i : i + batch_size].to(device)
            with autocast(precision, torch.device(device)):
                outs.append(model.heatmap(f, w).float().cpu())
    return torch.cat(outs)
