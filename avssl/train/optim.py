"""The optimiser: AdamW (decoupled weight decay, https://arxiv.org/abs/1711.05101), or Adam with
the decay as an L2 term in the gradient (``train.optimizer: adam``).

The papers' configs use Adam: "Adam, learning rate 1e-4, weight decay 1e-5" in TensorFlow adds
the decay to the loss. AdamW with those values would shrink each weight by a factor of
``1 - 1e-9`` a step, which is 1.0 in float32: no decay at all.

With ``train.decay_all`` (the default) ``train.weight_decay`` applies to every parameter, as it
always has here. With ``decay_all: false`` it applies to weight matrices and convolution kernels
only: biases, normalisation gains and shifts and the learnt temperature (every parameter with
fewer than two dimensions) are left undecayed, the split timm and open_clip make, so that a
strong decay regularises the weights without shrinking a batch norm's scale or pulling the log
temperature to 0 (a temperature of 1).
"""

from __future__ import annotations

import torch
from torch import nn

from avssl.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = True) -> list[dict]:
    """AdamW parameter groups of ``model``'s parameters, in their registration order.

    Args:
        model: the network.
        weight_decay: the decay of the decayed group.
        decay_all: decay every parameter (one group); otherwise only those with ``ndim >= 2``.

    Returns:
        One group (``decay_all``) or two: ``[{decayed, weight_decay}, {the rest, 0.0}]``; an
        empty group is left out.
    """
    params = list(model.parameters())
    if decay_all:
        return [{"params": params, "weight_decay": weight_decay}]
    decayed = [p for p in params if p.ndim >= 2]
    kept = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": kept, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or Adam (``cfg.optimizer``), over :func:`param_groups`, from ``cfg.lr``,
    ``weight_decay`` and ``decay_all``."""
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return kind(param_groups(model, cfg.weight_decay, cfg.decay_all), lr=cfg.lr)
