"""Exponential moving average of the weights (Polyak averaging) for validation and checkpoints.

With ``train.ema_decay`` above 0, every optimiser step also updates
``w_ema <- decay * w_ema + (1 - decay) * w`` over the parameters *and* buffers (batch-norm
running statistics included), through :class:`torch.optim.swa_utils.AveragedModel`. Validation,
the choice of ``best.pt`` and every evaluation then use the averaged weights: a checkpoint's
``model`` entry holds them, and ``train_model`` the weights the optimiser moves (what an exact
resume needs). Polyak and Juditsky (1992) average SGD iterates; SWAD
(https://arxiv.org/abs/2102.08604) reports that averaged weights sit in flatter minima and
transfer better to unseen domains. On AV-Digits' validation voices it did not help
(datasets/avdigits/README.md), so every config leaves it off.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from avssl.errors import ConfigError


def check_decay(decay: float) -> None:
    """Refuse a decay outside ``[0, 1)`` (0 turns averaging off) with a one-line ConfigError."""
    if not 0.0 <= decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1) (0: off), got {decay}")


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An averaged copy of ``model`` updated with ``decay``, or None when ``decay`` is 0.

    The copy starts equal to ``model`` (the first :meth:`AveragedModel.update_parameters` copies,
    later ones average) and keeps its memory format and device.
    """
    check_decay(decay)
    if decay == 0.0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def eval_model(model: nn.Module, ema: AveragedModel | None) -> nn.Module:
    """The weights that validation, ``best.pt`` and evaluation use."""
    return model if ema is None else ema.module


def checkpoint_entries(model: nn.Module, ema: AveragedModel | None) -> dict:
    """The weight entries of a checkpoint: ``model`` (evaluated) and, with averaging, the
    optimiser's ``train_model`` and the number of updates ``ema_updates``."""
    if ema is None:
        return {"model": model.state_dict()}
    return {
        "model": ema.module.state_dict(),
        "train_model": model.state_dict(),
        "ema_updates": int(ema.n_averaged),
    }


def restore(model: nn.Module, ema: AveragedModel | None, state: dict) -> None:
    """Load a checkpoint's weights for an exact resume.

    A checkpoint written without averaging holds only the optimiser's weights (``model``); if
    averaging is switched on at resume, the average starts from them.
    """
    averaged = "train_model" in state
    model.load_state_dict(state["train_model"] if averaged else state["model"])
    if ema is None:
        return
    if averaged:
        ema.module.load_state_dict(state["model"])
        ema.n_averaged.fill_(int(state["ema_updates"]))
    else:
        ema.module.load_state_dict(model.state_dict())
        ema.n_averaged.fill_(0)
