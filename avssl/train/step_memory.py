"""The memory a training step will hold at the run's batch size, estimated before the first step.

:mod:`avssl.train.memory` refuses weights that cannot fit; the activations depend on the batch
and on everything the model does with it, so they are measured: the model's training loss runs
on batches of validation items (its batch norms' running statistics and the random generators
left as they were) and a hook records every tensor autograd saves for the backward pass. A
``train.batch_size`` of at most 8 is measured as it is; a larger one at 2, 4 and 8 items, and
the bytes are fitted by a quadratic in the batch size (the contrastive losses score every sound
against every picture, a term in B squared) and evaluated at ``train.batch_size``.

At the end of a forward pass those saved tensors are all held at once, beside the weights, the
last step's gradients (freed only after the forward) and AdamW's moments, so the estimate is a
lower bound of the step's peak: the backward pass's own temporary tensors come on top. A run
whose estimate exceeds the free memory is warned once, not refused: it would be killed on a CPU
(the kernel's out-of-memory killer prints nothing to the run's terminal).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import default_collate

from avssl.data.pairs import AUDIO_KEYS
from avssl.models.base import running_stats_frozen
from avssl.train import runtime
from avssl.train.data import to_device
from avssl.train.memory import (
    WEIGHT_BYTES,
    available_bytes,
    format_bytes,
    local_processes,
    peak_mb,  # noqa: F401 (re-exported)
    peak_rss_bytes,  # noqa: F401 (re-exported)
    proc_kib_field,
    training_bytes,
)

SIZES = (2, 4, 8)  # the batch sizes measured for a larger batch; three points fix a quadratic


def saved_bytes(model: nn.Module, batch: dict) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass of ``model.loss``.

    Args:
        model: an :class:`~avssl.models.base.AVModel` in training mode.
        batch: a batch on the model's device, as :func:`avssl.train.data.to_device` makes it.

    Returns:
        The bytes of every storage saved, each counted once; the parameters' and buffers' own
        storages (held whatever the batch) are left out, autocast's copies of them are not.
    """
    held = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in held:  # the graph holds each saved storage, so no address is reused
            storages[ptr] = max(storages.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = model.loss(batch)
    del loss
    return sum(storages.values())


def fit_quadratic(points: list[tuple[int, int]], x: int) -> float:
    """The value at ``x`` of the quadratic through three ``(x_i, y_i)`` points."""
    xs, ys = zip(*points, strict=True)
    return float(np.polyval(np.polyfit(xs, ys, 2), x))


def measured_sizes(batch_size: int) -> tuple[int, ...]:
    """The batch sizes :func:`activation_bytes` runs: never more items than the run's batch (a
    pass larger than the run's own could fail where the run would not)."""
    return SIZES if batch_size > SIZES[-1] else (batch_size,)


def activation_bytes(model, dataset, cfg, device: torch.device, precision: str) -> int:
    """Bytes of the tensors saved for backward by one training step at ``cfg.train.batch_size``.

    Args:
        model: the model, on ``device``, in training mode.
        dataset: a map-style split whose items are training items (the validation split: it is
            loaded before training starts, and its items are the training items' shapes;
            unless preloaded, ``data.preload``, the few items are decoded here); with a domain
            adversary every item is given domain 0, so that its pass is measured too.
        cfg: the run's configuration (``train.batch_size``, ``train.channels_last``).
        device: the training device.
        precision: the run's resolved precision (autocast changes what is saved).

    Returns:
        The bytes measured at ``train.batch_size`` when it is at most 8; else the fitted bytes,
        at least those measured at 8.
    """
    keep = set(model.audio_keys())
    adversary = getattr(model, "domain_adversary", None) is not None
    points = []
    cuda = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda), running_stats_frozen(model):
        for n in measured_sizes(cfg.train.batch_size):
            items = [dataset[i % len(dataset)] for i in range(n)]
            items = [
                {k: v for k, v in it.items() if k in keep or k not in AUDIO_KEYS} for it in items
            ]
            if adversary:
                items = [{**it, "domain": torch.tensor(0)} for it in items]
            batch = to_device(default_collate(items), device, cfg.train.channels_last)
            with runtime.autocast(precision, device):
                points.append((n, saved_bytes(model, batch)))
    if len(points) == 1:
        return points[0][1]
    return max(round(fit_quadratic(points, cfg.train.batch_size)), points[-1][1])


def resident_bytes(device: torch.device) -> int | None:
    """What the process holds now: CUDA's allocated memory, or the CPU's resident set."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return proc_kib_field("/proc/self/status", "VmRSS")


def estimate_step_memory(model, dataset, cfg, device, precision, warn: bool = True) -> dict:
    """Estimate a training step's peak and warn on stderr when it exceeds the free memory.

    Args:
        model: the model, on ``device``, with its weights allocated (no gradient yet).
        dataset: the validation split (see :func:`activation_bytes`).
        cfg: the run's configuration.
        device: the training device.
        precision: the run's resolved precision.
        warn: print the one-line warning (the caller chooses which torchrun processes do).

    Returns:
        ``{"activations_mb", "optimizer_mb", "estimated_peak_mb"}`` in MiB: the saved tensors;
        the gradients and AdamW moments (and the weights' average with ``train.ema_decay``) still
        to be allocated; the lower bound of the peak, the process's memory before the passes
        plus both (None when it cannot be read).
    """
    # read before the passes, whose freed memory the process may keep
    now, have = resident_bytes(device), available_bytes(device)
    n = sum(p.numel() for p in model.parameters())
    acts = activation_bytes(model, dataset, cfg, device, precision)
    rest = training_bytes(n, cfg) - n * WEIGHT_BYTES  # the weights are allocated already
    copies = local_processes() if device.type == "cpu" else 1
    if warn and have is not None and (acts + rest) * copies > have:
        sizes = measured_sizes(cfg.train.batch_size)
        how = "" if len(sizes) == 1 else f", fitted to batches of {', '.join(map(str, sizes))}"
        need = f"{format_bytes(acts + rest)} more"
        if copies > 1:  # the processes on this machine share its memory
            need = (
                f"{format_bytes((acts + rest) * copies)} more, {need} in each of {copies} processes"
            )
        print(
            f"warning: a training step at batch {cfg.train.batch_size} needs at least {need} "
            f"({format_bytes(acts)} saved for the backward pass{how}), more than the "
            f"{format_bytes(have)} free on {device}; if it runs out of memory, "
            "lower train.batch_size",
            file=sys.stderr,
        )
    mb = 2**20
    return {
        "activations_mb": round(acts / mb, 1),
        "optimizer_mb": round(rest / mb, 1),
        "estimated_peak_mb": None if now is None else round((now + acts + rest) / mb, 1),
    }
