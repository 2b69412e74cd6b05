"""Domain-adversarial training: a domain classifier behind a gradient reversal layer.

DANN (Ganin & Lempitsky, https://arxiv.org/abs/1409.7495; Ganin et al.,
https://arxiv.org/abs/1505.07818): a small classifier learns to tell an embedding's domain (for
AV-Digits, the speaker of a sound); between it and the encoder the gradient is multiplied by
``-weight``, so the encoder is pushed towards embeddings the classifier cannot tell apart while
the classifier itself trains normally. The weight is constant (DANN ramps it up from 0). With
speakers as the domains this is speaker-invariant training (Meng et al.,
https://arxiv.org/abs/1804.00732).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.weight, None


def reverse_gradient(x: Tensor, weight: float) -> Tensor:
    """Identity forward; the backward pass multiplies the gradient by ``-weight``.

    Args:
        x: any shape.
        weight: the reversed gradient's scale.

    Returns:
        A view of ``x`` (same shape and values).
    """
    return _Reverse.apply(x, weight)


class DomainAdversary(nn.Module):
    """A two-layer domain classifier on embeddings, trained through :func:`reverse_gradient`
    (DANN, https://arxiv.org/abs/1505.07818).

    Args:
        dim: embedding width D.
        domains: number of domains K (at least 2).
        weight: the reversed gradient's scale (the encoder's side of the minimax).
        hidden: hidden width of the classifier.
    """

    def __init__(self, dim: int, domains: int, weight: float, hidden: int = 128):
        super().__init__()
        self.weight = weight
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, domains))

    def forward(self, emb: Tensor, domain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Classifier loss on ``emb`` ``[B, D]`` against ``domain`` long ``[B]`` (-1: unknown).

        Returns:
            The mean cross-entropy over rows with a known domain (0 when none), whose gradient
            reaches ``emb`` reversed and scaled by ``weight``; stats ``domain_loss`` and
            ``domain_acc`` (the classifier's accuracy on those rows; chance is 1 / K for
            balanced domains), detached 0-d tensors.
        """
        logits = self.net(reverse_gradient(emb.float(), self.weight))
        known = domain >= 0
        if not bool(known.any()):
            return logits.sum() * 0.0, {}
        loss = F.cross_entropy(logits[known], domain[known])
        with torch.no_grad():
            acc = (logits[known].argmax(1) == domain[known]).float().mean()
        return loss, {"domain_loss": loss.detach(), "domain_acc": acc}
