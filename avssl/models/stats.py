"""A training step's statistics: 0-d tensors through the step, Python floats when logged.

A method's :meth:`~avssl.models.base.AVModel.loss` returns its statistics (``loss``, ``acc``,
...) as detached 0-d tensors, not floats: on CUDA each ``float(tensor)`` waits until the device
has finished all the work queued before it, and a step that turned its six to nine statistics
into floats would wait as many times, although the training loop logs them only every
``train.log_every`` steps. The loop turns the statistics of a logged step into floats with
:func:`stats_floats`, one copy to the host for all of them; the other steps' are dropped unread.
:func:`threshold_stats` gives the pair accuracies at a decision threshold that the methods report.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from avssl.errors import TrainingError


def stats_floats(stats: Mapping[str, Tensor | float]) -> dict[str, float]:
    """A step's statistics as Python floats, in their order, read from the device at once.

    A tensor of one element becomes the float ``float(tensor)`` gives: the tensors are stacked
    as float64, which holds every float32, bfloat16 and float16 value (and every integer up to
    2**53) exactly, and read with one ``tolist``. Other values (a custom method's Python floats)
    are kept as they are.

    Args:
        stats: names to 0-d (or one-element) tensors of any dtype, or to numbers; tensors on
            several devices are gathered on the first one that is not the CPU.

    Returns:
        A new dict with the same keys in the same order.

    Raises:
        TrainingError: a tensor of no or several elements (``float`` refuses it too), named.
    """
    tensors = {k: v for k, v in stats.items() if isinstance(v, Tensor)}
    for name, v in tensors.items():  # the shape is known on the host: nothing is read
        if v.numel() != 1:
            raise TrainingError(
                f"the loss's statistic {name!r} is a tensor of shape {list(v.shape)}, "
                "not one value (a method's loss returns 0-d tensors or numbers)"
            )
    if not tensors:
        return dict(stats)
    devices = [v.device for v in tensors.values() if v.device.type != "cpu"]
    device = devices[0] if devices else torch.device("cpu")
    column = [
        v.detach().reshape(()).to(device=device, dtype=torch.float64) for v in tensors.values()
    ]
    values = dict(zip(tensors, torch.stack(column).tolist(), strict=True))
    return {k: values.get(k, v) for k, v in stats.items()}


def threshold_stats(
    pos: Tensor,
    neg: Tensor,
    neg_hard: Tensor | None,
    thr: Tensor,
    kinds: tuple[bool, bool] | None = None,
) -> dict[str, Tensor]:
    """Pair accuracies at a decision threshold, as 0-d float32 tensors.

    ``acc`` is over all positives and negatives; ``acc_easy`` / ``acc_hard`` are balanced
    accuracies ``(TPR + TNR) / 2`` of the positives against the easy / hard negatives only, present
    when the batch has negatives of that kind.

    Args:
        pos: ``[P]`` scores of matching pairs.
        neg: ``[Q]`` scores of non-matching pairs.
        neg_hard: ``[Q]`` bool, True where a negative is hard; None if unknown.
        thr: scalar threshold.
        kinds: whether ``neg_hard`` holds any False (an easy negative) and any True (a hard
            one), when the caller knows it without reading the device; None: read from
            ``neg_hard``, both at once.
    """
    pos, neg, thr = pos.detach().float(), neg.detach().float(), thr.float()
    tp, tn = (pos >= thr).float(), (neg < thr).float()
    vals = {"acc": torch.cat([tp, tn]).mean()}
    if neg_hard is not None:
        neg_hard = neg_hard.bool()
        sels = {"acc_easy": ~neg_hard, "acc_hard": neg_hard}
        if kinds is None:
            kinds = tuple(torch.stack([sel.any() for sel in sels.values()]).tolist())
        for (name, sel), present in zip(sels.items(), kinds, strict=True):
            if present:
                vals[name] = 0.5 * (tp.mean() + tn[sel].mean())
    return vals
