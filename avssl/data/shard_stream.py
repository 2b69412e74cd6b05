"""Stream a shard cache (datasets too large to preload), WebDataset style.

Each epoch the shard list is permuted from ``(seed, epoch)`` (the same on every process); rank
``r`` of ``w`` takes shards ``r::w`` of that order and DataLoader worker ``k`` of ``K`` every
``K``-th of those, so no sample is read twice in an epoch. Samples then pass through an
in-memory shuffle buffer seeded from ``(seed, epoch, rank, worker)``. Ranks may receive
unequal numbers of samples when the shards differ in size; use many more shards than
``world * num_workers`` and stop each epoch after a fixed number of batches under DDP.

See https://github.com/webdataset/webdataset for the design this follows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from avssl.config import DataConfig
from avssl.data.shard_checks import check_sizes
from avssl.data.shards import check_settings, iter_shard, read_index, split_size


class ShardStream(IterableDataset):
    """Samples of one split of a shard cache, streamed shard by shard.

    Each sample is ``{"key", "row": dict, "frames": uint8 ndarray [T, H, W, 3], "audio":
    float32 ndarray [N]}``, passed through ``transform`` when given.

    Args:
        cache: the cache folder (``avssl cache --out``).
        split: the split to stream; None streams every sample.
        seed: base seed of the shard order and the shuffle buffer.
        rank: this process's rank.
        world: number of processes.
        shuffle_buffer: samples held for shuffling (0 or 1: shard order only).
        transform: applied to each sample in the worker (e.g. cut pairs, make tensors).
        data: when given, refuse a cache decoded with other settings than this config.
        train: with ``data``, whether the frames must be at the training size.

    Raises:
        AvsslError: the cache is unfinished, decoded with other settings than ``data``, or one
            of the split's shards is missing or not the size its sidecar recorded (a shard
            damaged in a way its size does not show is an error when it is read).
    """

    def __init__(
        self,
        cache: str | Path,
        split: str | None = "train",
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int = 256,
        transform: Callable[[dict], object] | None = None,
        data: DataConfig | None = None,
        train: bool = True,
    ):
        self.root = Path(cache).expanduser()
        index = read_index(self.root)
        if data is not None and split is not None:
            check_settings(index, self.root, data, split, split_size(data, split, train))
        self.split, self.seed, self.rank, self.world = split, seed, rank, world
        self.shuffle_buffer, self.transform = shuffle_buffer, transform
        mine = [s for s in index["shards"] if split is None or split in s["splits"]]
        # a shard cut short would give a rank fewer batches than every rank was promised
        check_sizes(self.root, mine)
        self.shards = [s["name"] for s in mine]
        # which clips each shard holds, in order: a rebuild with another layout changes the
        # epochs' order, so a resumed run cannot skip the batches it had done
        self.digest = hashlib.sha256(
            json.dumps([[s["name"], s["ids"]] for s in mine]).encode()
        ).hexdigest()[:12]
        self._keys = {s["name"]: s["keys"] for s in mine}
        self.n_samples = sum(
            sum(split is None or sp == split for sp in s["splits"]) for s in index["shards"]
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before creating each epoch's iterator (with non-persistent workers)."""
        self.epoch = epoch

    def shards_for(self, worker: int, n_workers: int, rank: int | None = None) -> list[str]:
        """Shard names read this epoch by ``worker`` of ``n_workers`` on ``rank`` (default: own).

        Args:
            worker: DataLoader worker id (0 without workers).
            n_workers: number of DataLoader workers (1 without workers).
            rank: process rank; ``None``: this stream's ``rank``.
        """
        rank = self.rank if rank is None else rank
        order = np.random.default_rng([self.seed, 104729, self.epoch]).permutation(len(self.shards))
        return [self.shards[i] for i in order[rank :: self.world][worker::n_workers]]

    def _samples(self, names: list[str]) -> Iterator[dict]:
        for name in names:
            for sample in iter_shard(self.root / name, self._keys[name]):
                if self.split is None or sample["row"]["split"] == self.split:
                    yield sample

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        for sample in shuffled(
            self._samples(self.shards_for(worker, n_workers)), self.shuffle_buffer, rng
        ):
            yield sample if self.transform is None else self.transform(sample)


def shuffled(items, size: int, rng: np.random.Generator) -> Iterator:
    """``items`` in a locally shuffled order: each output is drawn from a buffer of ``size``.

    Args:
        items: any iterable, read lazily.
        size: buffer length; 0 or 1 passes ``items`` through in order.
        rng: draws the buffer positions.
    """
    if size <= 1:
        yield from items
        return
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = rng.integers(len(buffer))
        buffer[i], item = item, buffer[i]
        yield item
    rng.shuffle(buffer)
    yield from buffer
