"""Speed test-time augmentation of the audio side: one embedding from several speeds of a sound.

A new voice differs from the training voices in pitch, formants and pace; one speed of its
sound may meet the training voices better than another. Each sound is embedded at ``K`` speed
factors evenly spaced in ``[1 - radius, 1 + radius]`` (the same resampling about the centre
as training's speed perturbation, :func:`~avssl.audio_augment.warp_waves`) and the embeddings
are averaged. Test-time augmentation of this kind is the audio form of the multi-crop testing
of image classifiers (e.g. https://arxiv.org/abs/1409.1556, Sec. 3.2); each sound is treated
alone, so no test statistics are shared between sounds. Chosen for AV-Digits on the validation
voices (README).
"""

from __future__ import annotations

import torch
from torch import Tensor

from avssl.audio_augment import warp_waves
from avssl.errors import AvsslError

DEFAULT_VIEWS = 9


def tta_speeds(radius: float, views: int | None = None) -> tuple[float, ...]:
    """``views`` speed factors evenly spaced in ``[1 - radius, 1 + radius]`` (``()`` if off).

    Args:
        radius: ``--audio-tta``; 0 turns test-time augmentation off.
        views: ``--audio-tta-views``; ``None`` means :data:`DEFAULT_VIEWS`.

    Raises:
        AvsslError: ``radius`` outside ``[0, 1)``, views outside ``[2, 64]``, views given
            while ``radius`` is 0 (they would be ignored), or a radius too small for distinct
            speeds at 6 decimals.
    """
    if not 0 <= radius < 1:
        raise AvsslError(f"--audio-tta must be in [0, 1), got {radius}")
    if radius == 0:
        if views is not None:
            raise AvsslError(f"--audio-tta-views {views}: read only with --audio-tta above 0")
        return ()
    views = DEFAULT_VIEWS if views is None else views
    if not 2 <= views <= 64:
        raise AvsslError(f"--audio-tta-views must be in [2, 64], got {views}")
    speeds = tuple(round(float(s), 6) for s in torch.linspace(1 - radius, 1 + radius, views))
    if len(set(speeds)) < views:  # K passes of the same sound, reported as K speeds
        raise AvsslError(f"--audio-tta {radius:g}: too small, its {views} speeds are not distinct")
    return speeds


def speed_views(wave: Tensor, speeds: tuple[float, ...]) -> Tensor:
    """Every sound at every speed: ``[B, N]`` -> ``[S * B, N]``, speed-major (view ``s`` of sound
    ``b`` is row ``s * B + b``)."""
    b = wave.shape[0]
    factors = torch.tensor(speeds, device=wave.device, dtype=torch.float32)
    factors = factors.repeat_interleave(b).unsqueeze(1)  # [S * B, 1]
    return warp_waves(wave.float().repeat(len(speeds), 1), factors).to(wave.dtype)
