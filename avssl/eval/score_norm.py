"""Cohort centring of correspondence scores: how well a sound fits a picture, relative to how
well it fits pictures in general.

A sound from a voice unlike the training voices scores lower against *every* picture, its own
included, so a decision threshold chosen on seen voices rejects most of its matches. Centring
subtracts from each score the mean of the sound's ``top`` highest scores against a fixed cohort
of training pictures. This is the sound-side term of CSLS (Conneau et al., Word Translation
Without Parallel Data, https://arxiv.org/abs/1710.04087), and the mean-only form of the
adaptive cohort score normalisation of speaker verification (Matejka et al., Interspeech 2017).
It shifts all of one sound's scores by the same amount, so rankings of pictures for a sound
are unchanged; what changes is which side of one threshold a pair falls.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from avssl.errors import AvsslError
from avssl.train.runtime import autocast


@torch.no_grad()
def cohort_codes(model, dataset, device, precision: str = "fp32", batch_size: int = 64) -> Tensor:
    """The model's :meth:`visual_codes` of every frame of ``dataset`` (its audio is unused).

    Args:
        model: an :class:`~avssl.models.base.AVModel`.
        dataset: items with ``frames`` uint8 ``[3, S, S]`` (e.g. an
            :class:`~avssl.data.dataset.AVPairDataset` of training pictures).
        device: the model's :class:`torch.device`.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: frames per forward pass.

    Returns:
        ``[F, ...]`` codes on ``device``, F = ``len(dataset)``.
    """
    model.eval()
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        frames = batch["frames"].to(device).float().div_(255)
        with autocast(precision, device):
            out.append(model.visual_codes(frames).float())
    return torch.cat(out)


@torch.no_grad()
def cohort_offsets(model, wave: Tensor, cohort: Tensor, top: int) -> Tensor:
    """Each sound's mean score over its ``top`` best-matching cohort pictures.

    Args:
        model: an :class:`~avssl.models.base.AVModel` with ``audio_codes`` / ``cross_scores``.
        wave: ``[A, N]`` waveforms.
        cohort: ``[F, ...]`` from :func:`cohort_codes`.
        top: how many of the F cohort scores are averaged (1 <= top <= F).

    Returns:
        ``[A]`` float offsets, to be subtracted from the sounds' scores.
    """
    return code_offsets(model, model.audio_codes(wave), cohort, top)


@torch.no_grad()
def code_offsets(model, audio: Tensor, cohort: Tensor, top: int) -> Tensor:
    """:func:`cohort_offsets` from the sounds' :meth:`audio_codes` ``[A, ...]`` -> ``[A]``.

    Args:
        model: an :class:`~avssl.models.base.AVModel` (its ``cross_scores``).
        audio: ``[A, ...]`` audio codes of the sounds.
        cohort: ``[F, ...]`` from :func:`cohort_codes`.
        top: how many of the F cohort scores are averaged (1 <= top <= F).

    Returns:
        ``[A]`` float offsets, to be subtracted from the sounds' scores.
    """
    if not 1 <= top <= cohort.shape[0]:
        raise AvsslError(f"cohort top {top} must be between 1 and the cohort size {len(cohort)}")
    scores = model.cross_scores(cohort, audio)  # [A, F]
    return scores.float().topk(top, dim=1).values.mean(dim=1)
