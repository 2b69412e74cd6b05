"""The objectives as small pure functions; the models in :mod:`avssl.models` call them.

All of them compute in float32, so they are safe to call on bf16/fp16 outputs under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Two-way (no match / match) cross-entropy of L3-Net and AVE-Net.

    Args:
        logits: ``[B, 2]``; column 1 is "match".
        target: ``[B]`` long, 1 for a corresponding pair, 0 otherwise.

    Returns:
        Scalar mean loss.
    """
    return F.cross_entropy(logits.float(), target.long())


def mil_logistic(pooled_logits: Tensor, target: Tensor) -> Tensor:
    """Logistic loss on the location-pooled logit of AVOL-Net (multiple-instance learning).

    Args:
        pooled_logits: ``[B]`` logit of "match" after pooling over locations.
        target: ``[B]`` float, 1.0 for a corresponding pair, 0.0 otherwise.

    Returns:
        Scalar mean loss.
    """
    return F.binary_cross_entropy_with_logits(pooled_logits.float(), target.float())


def lse_pool(x: Tensor, sharpness: float) -> Tensor:
    """Soft maximum over the last axis: ``(1/k) * log(mean(exp(k * x)))``.

    Lies between the mean (``k -> 0``) and the max (``k -> inf``), never above the max; unlike a
    hard max it sends gradient to every location, which keeps MIL training from stalling.

    Args:
        x: ``[B, L]`` scores per location (any leading dims).
        sharpness: ``k > 0``.

    Returns:
        ``[B]`` pooled scores.
    """
    x = x.float()
    return (torch.logsumexp(sharpness * x, dim=-1) - math.log(x.shape[-1])) / sharpness


def info_nce(logits: Tensor, targets: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE (CLIP-style) over a batch of visual rows and audio columns.

    The vision->audio direction is a softmax over every column of a row, including ``E`` extra
    negative columns (e.g. each row's own time-shifted audio); the audio->vision direction is a
    softmax down each of the first ``B`` columns. The loss is the mean of the two directions.

    Args:
        logits: ``[B, B + E]`` similarities already divided by the temperature.
        targets: ``[B]`` long, column of each row's positive; a permutation of ``range(B)``
            (default: the diagonal).
        mask: optional ``[B, B + E]`` bool, True where an entry is left out of both softmaxes
            (false negatives). The positives are never masked.

    Returns:
        Scalar loss.
    """
    logits = logits.float()
    n = logits.shape[0]
    rows = torch.arange(n, device=logits.device)
    if targets is None:
        targets = rows
    if mask is not None:
        mask = mask.clone()
        mask[rows, targets] = False
        logits = logits.masked_fill(mask, float("-inf"))
    v2a = F.cross_entropy(logits, targets)
    col_targets = torch.empty_like(targets)
    col_targets[targets] = rows  # positive row of each column
    a2v = F.cross_entropy(logits[:, :n].T, col_targets)
    return 0.5 * (v2a + a2v)
