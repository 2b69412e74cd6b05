"""Deterministic, shardable, resumable batch order for training.

Epoch ``e``'s order is a permutation drawn from ``(seed, e)``; rank ``r`` of ``w`` takes every
``w``-th index, so ranks never share an item; a resumed run skips the batches it already did.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class EpochBatches(Sampler[list[int]]):
    """Batches of item indices for one epoch on one rank.

    Args:
        n: dataset length.
        batch_size: items per batch on this rank.
        seed: base seed.
        epoch: epoch number.
        rank: this rank.
        world: number of ranks.
        start: index of the first batch to yield (resume mid-epoch).
    """

    def __init__(self, n, batch_size, seed, epoch, rank=0, world=1, start=0):
        order = np.random.default_rng([seed, 7919, epoch]).permutation(n)
        per_rank = len(order) // world
        mine = order[rank::world][:per_rank]
        self.batches = [
            mine[i : i + batch_size].tolist()
            for i in range(0, per_rank - batch_size + 1, batch_size)
        ][start:]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def batches_per_epoch(n: int, batch_size: int, world: int) -> int:
    return (n // world) // batch_size


def make_loader(dataset, batch_size, seed, epoch, rank, world, start, num_workers, device):
    """A DataLoader over :class:`EpochBatches`; the dataset is told the epoch first."""
    dataset.set_epoch(epoch)
    sampler = EpochBatches(len(dataset), batch_size, seed, epoch, rank, world, start)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    """Move a collated batch to the device; frames become float in [0, 1]."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    frames = out["frames"].float().div_(255)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    out["frames"] = frames
    return out
