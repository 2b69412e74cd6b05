"""Deterministic, shardable, resumable batch order for training.

Epoch ``e``'s order is a permutation drawn from ``(seed, e)``; rank ``r`` of ``w`` takes every
``w``-th index, so ranks never share an item; a resumed run skips the batches it already did.
A streamed train split (:class:`~avssl.data.stream_pairs.StreamPairs`) is read in its own
deterministic order instead, cut to the same number of batches on every rank.
"""

from __future__ import annotations

import itertools
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from avssl.data.stream_pairs import StreamPairs
from avssl.errors import TrainingError


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
    """Full batches each of ``world`` ranks gets from ``n`` items (as :class:`EpochBatches`)."""
    return (n // world) // batch_size


def ignore_stop_signals(_worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: SIGINT and SIGTERM are the training process's
    to handle. A scheduler's SIGTERM to the whole process group (``timeout``, SLURM) reaches the
    workers too, and torch's worker handler ends a worker on a SIGTERM its parent did not send:
    the run then failed with a traceback instead of its clean stop. The workers end when the
    training process closes its loader, or dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset, batch_size, seed, epoch, rank, world, start, num_workers, device, generator=None
):
    """A DataLoader over :class:`EpochBatches`; the dataset is told the epoch first.

    A :class:`StreamPairs` gets :func:`stream_loader` (it knows its seed, rank and world).
    ``generator``: the loader's own, for its base seed (None: the global torch generator).
    """
    if isinstance(dataset, StreamPairs):
        return stream_loader(dataset, batch_size, epoch, start, num_workers, device, generator)
    dataset.set_epoch(epoch)
    sampler = EpochBatches(len(dataset), batch_size, seed, epoch, rank, world, start)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        generator=generator,
        worker_init_fn=ignore_stop_signals,
    )


def stream_loader(
    dataset: StreamPairs, batch_size, epoch, start, num_workers, device, generator=None
):
    """Batches ``start`` to ``n`` of ``epoch`` streamed from ``dataset``.

    ``n`` is the smallest number of full batches any rank gets this epoch (every rank knows it
    from the shard index), so all DDP ranks take the same number of steps. The batches before
    ``start`` (done before a resume) are read and discarded: the order is deterministic.

    Args:
        dataset: the streamed train split (knows its seed, rank and world).
        batch_size: items per batch on this rank.
        epoch: epoch number.
        start: index of the first batch to yield.
        num_workers: DataLoader worker processes (0: load in this process).
        device: the training device (pinned memory on CUDA only).
        generator: the loader's own generator, or None (the global one).

    Raises:
        TrainingError: some rank gets no full batch this epoch.
    """
    dataset.set_epoch(epoch)
    workers = max(1, num_workers)
    n = min(dataset.rank_batches(batch_size, workers))
    if n == 0:
        raise TrainingError(
            f"{dataset.stream.root}: in epoch {epoch} some process gets no full batch: "
            f"{len(dataset)} training clips in {len(dataset.stream.shards)} shards for "
            f"{dataset.stream.world} process(es) x {workers} worker(s) x batch {batch_size}; "
            "cache smaller shards (avssl cache --shard-size) or lower data.num_workers or "
            "train.batch_size"
        )
    if start >= n:  # resumed at the end of the epoch: nothing to read
        return iter(())
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=generator,
        worker_init_fn=ignore_stop_signals,
    )
    return itertools.islice(loader, start, n)


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    """Move a collated batch to the device; frames become float in [0, 1]."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    frames = out["frames"].float().div_(255)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    out["frames"] = frames
    return out
