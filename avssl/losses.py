"""The objectives as small pure functions; the models in :mod:`avssl.models` call them.

All of them compute in float32, so they are safe to call on bf16/fp16 outputs under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Two-way (no match / match) cross-entropy of L3-Net (https://arxiv.org/abs/1705.08168)
    and AVE-Net (https://arxiv.org/abs/1712.06651).

    Args:
        logits: ``[B, 2]``; column 1 is "match".
        target: ``[B]`` long, 1 for a corresponding pair, 0 otherwise.

    Returns:
        Scalar mean loss.
    """
    return F.cross_entropy(logits.float(), target.long())


def mil_logistic(pooled_logits: Tensor, target: Tensor) -> Tensor:
    """Logistic loss on the location-pooled logit of AVOL-Net (https://arxiv.org/abs/1712.06651;
    multiple-instance learning).

    Args:
        pooled_logits: ``[B]`` logit of "match" after pooling over locations.
        target: ``[B]`` float, 1.0 for a corresponding pair, 0.0 otherwise.

    Returns:
        Scalar mean loss.
    """
    return F.binary_cross_entropy_with_logits(pooled_logits.float(), target.float())


def lse_pool(x: Tensor, sharpness: float) -> Tensor:
    """Soft maximum over the last axis: ``(1/k) * log(mean(exp(k * x)))``, the log-sum-exp
    pooling of Pinheiro & Collobert's multiple-instance learning (https://arxiv.org/abs/1411.6228).

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
    """InfoNCE (https://arxiv.org/abs/1807.03748) made symmetric as in CLIP
    (https://arxiv.org/abs/2103.00020), over a batch of visual rows and audio columns.

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


def false_negatives(label: Tensor, frame_labels: Tensor | None = None) -> Tensor:
    """Pairs that must not count as negatives: frame ``i`` shows the class of sound ``c``.

    The losses leave them out (false negative elimination, https://arxiv.org/abs/2011.11765,
    here with the known classes instead of estimated ones).

    Args:
        label: ``[B]`` long class of each item's sound (-1: unknown, never masked).
        frame_labels: ``[B, C]`` bool classes visible in each frame; None: each frame shows
            exactly its own label (then this is plain same-label masking).

    Returns:
        ``[B, B]`` bool, rows frames and columns sounds (the diagonal is left to the loss).
    """
    known = label >= 0
    if frame_labels is None or frame_labels.shape[1] == 0:
        return (label[:, None] == label[None, :]) & known[:, None] & known[None, :]
    shows = frame_labels[:, label.clamp(min=0)]  # [B frames, B sounds]
    return shows & known[None, :]


def pair_logistic(logits: Tensor, negatives: Tensor) -> Tensor:
    """Balanced logistic loss over every pair of a batch (the sigmoid loss of SigLIP,
    https://arxiv.org/abs/2303.15343, with positives and negatives weighted half and half).

    Args:
        logits: ``[B, B]`` match logits, rows frames and columns sounds; the diagonal pairs match.
        negatives: ``[B, B]`` bool, the off-diagonal pairs that count as non-matching (False
            leaves a pair out, e.g. a frame that also shows the sound's class).

    Returns:
        Scalar ``0.5 * (mean positive loss + mean negative loss)``; with no negative, the
        positive term alone.
    """
    logits = logits.float()
    pos = F.softplus(-logits.diagonal()).mean()
    negatives = negatives & ~torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    # branch- and sync-free (no data-dependent shape), so torch.compile keeps one graph
    count = negatives.sum()
    neg = torch.where(negatives, F.softplus(logits), 0.0).sum() / count.clamp(min=1)
    has_neg = (count > 0).float()
    return (1.0 - 0.5 * has_neg) * pos + 0.5 * neg
