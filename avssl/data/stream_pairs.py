"""Training pairs streamed from a shard cache (``data.stream``), for datasets larger than memory.

:class:`StreamPairs` reads the train split of a shard cache through a
:class:`~avssl.data.shard_stream.ShardStream` and cuts each clip into the item
:class:`~avssl.data.dataset.AVPairDataset` gives, with window times drawn as
:class:`~avssl.data.pairs.PairSampler` draws them. Each worker shuffles its clips through a
buffer of ``data.shuffle_buffer`` clips, and an item's easy negative is the audio of one of the
clips in that buffer or of the clip given out just before it (the first clip waits for the
second when there is no buffer).

Each rank and DataLoader worker reads a set of shards fixed by ``(seed, epoch)`` and draws from
a generator seeded with ``(seed, epoch, rank, worker)``, so an epoch's batches are the same on
every run, and the shard index tells every rank how many full batches each rank will get
(:meth:`StreamPairs.rank_batches`): under DDP all ranks stop after the smallest number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from avssl.config import DataConfig
from avssl.data.clip_windows import (
    NotNegatives,
    audio_window,
    frame_at,
    label_table,
    too_short,
)
from avssl.data.manifest import read_manifest
from avssl.data.pairs import (
    AUDIO_KEYS,
    centre_range,
    check_audio_keys,
    frame_time,
    pair_audio,
    positive_time,
    shifted_time,
)
from avssl.data.shard_checks import changed_rows
from avssl.data.shard_stream import ShardStream
from avssl.data.shards import changed_since_cached, read_index
from avssl.data.source import class_names
from avssl.data.transforms import eval_resize, train_augment
from avssl.errors import AvsslError, ManifestError


class Clip(NamedTuple):
    """One decoded clip, as :class:`StreamPairs` reads it from a shard and cuts items from it."""

    index: int  # its position among the usable train rows (an item's ``clip``)
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    audio: torch.Tensor  # float32 [L]
    duration: float  # seconds: the shorter of the two streams


def _train_durations(index: dict, data: DataConfig) -> dict[str, float | None]:
    """Seconds of each cached train clip, as ClipStore measures them (None: unknown, in a cache
    written before clip lengths were recorded)."""
    out = {}
    for shard in index["shards"]:
        lengths = shard.get("lengths") or [None] * shard["n"]
        for id_, split, n in zip(shard["ids"], shard["splits"], lengths, strict=True):
            if split == "train":
                out[id_] = None if n is None else min(n[0] / data.fps, n[1] / data.sample_rate)
    return out


class StreamPairs(IterableDataset):
    """Items of :class:`~avssl.data.dataset.AVPairDataset` (same keys, dtypes and shapes),
    streamed from the train split of the shard cache ``data.cache``, one per clip per epoch.

    Each item: ``frames`` uint8 ``[3, S, S]`` (augmented when ``data.augment``), ``audio``,
    ``audio_easy``, ``audio_hard``, ``audio_neg`` float32 ``[N]``, ``neg_hard`` and
    ``hard_valid`` bool, ``label`` long, ``frame_labels`` bool ``[C]``, ``clip`` long, ``t``
    float. After :meth:`set_audio_keys` an item holds only the audio entries named.

    ``clip`` is the clip's position among the usable train rows of the manifest and ``label``
    and ``frame_labels`` index the manifest's :func:`~avssl.data.source.class_names`, as in
    the in-memory dataset. Train rows the cache build skipped, rows missing from the cache, rows
    changed in the manifest since they were cached and clips shorter than the window are left
    out and listed in ``skipped`` (with the reasons the in-memory dataset gives).

    Args:
        data: data settings (``cache``, window, shifts, augmentation).
        manifest: the manifest the cache was built from (rows, labels and class list).
        seed: base seed of the shard order, the shuffle buffer and the pair draws.
        rank: this process's rank.
        world: number of processes.
        shuffle_buffer: clips held per worker for shuffling, which easy negatives are drawn
            from (default: ``data.shuffle_buffer``; 0 or 1: shard order, the negative is the
            previous clip).

    Raises:
        AvsslError: ``data.cache`` is not set, or the cache is unfinished, was decoded with
            other settings or has a shard of another size than its sidecar records.
        ManifestError: fewer than two usable training clips.
    """

    def __init__(
        self,
        data: DataConfig,
        manifest: str | Path,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int | None = None,
    ):
        if not data.cache:
            raise AvsslError("data.stream=true needs data.cache (a shard cache from avssl cache)")
        self.data, self.seed = data, seed
        self.audio_keys = AUDIO_KEYS
        self.buffer = data.shuffle_buffer if shuffle_buffer is None else shuffle_buffer
        # shard order only: the shuffle buffer is kept here, where negatives are drawn from it
        self.stream = ShardStream(data.cache, "train", seed, rank, world, 0, data=data)
        index, root = read_index(data.cache), self.stream.root
        durations = _train_durations(index, data)
        failed = {s["id"]: f"{s['path']}: {s['reason']}" for s in index.get("skipped", [])}
        rows = read_manifest(manifest)
        train = [r for r in rows if r.split == "train"]
        shards = [s for s in index["shards"] if "train" in s["splits"]]
        changed = set(changed_rows(root, shards, [r for r in train if r.id in durations]))
        usable, self.skipped = [], []
        for row in train:
            if row.id not in durations:
                missing = f"{root}: row {row.id!r} is not in the cache"
                self.skipped.append((row.id, failed.get(row.id, missing)))
            elif row.id in changed:
                self.skipped.append((row.id, f"{root}: {changed_since_cached(row.id, index)}"))
            elif durations[row.id] is not None and durations[row.id] < data.window:
                self.skipped.append(
                    (row.id, too_short(manifest, row, durations[row.id], data.window))
                )
            else:
                usable.append(row)
        if len(usable) < 2:
            raise ManifestError(
                f"{manifest}: split 'train' has {len(usable)} usable clips in {data.cache} "
                f"(need at least 2); {len(self.skipped)} skipped"
            )
        self.clip_of = {row.id: i for i, row in enumerate(usable)}
        self.per_shard = {
            s["name"]: sum(
                sp == "train" and i in self.clip_of
                for i, sp in zip(s["ids"], s["splits"], strict=True)
            )
            for s in index["shards"]
        }
        self.labels, self.visible = label_table(usable, class_names(rows))
        self.not_negatives = NotNegatives(usable, self.labels, self.visible, data.unseen_negatives)

    def __len__(self) -> int:
        """Usable training clips (over all ranks): the items of one epoch, before batching."""
        return len(self.clip_of)

    def set_audio_keys(self, keys) -> None:
        """Return only these audio entries (set before the loader's workers start)."""
        self.audio_keys = check_audio_keys(keys)

    def set_epoch(self, epoch: int) -> None:
        """Call before creating each epoch's iterator (with non-persistent workers)."""
        self.stream.set_epoch(epoch)

    def rank_batches(self, batch_size: int, n_workers: int) -> list[int]:
        """Full batches of ``batch_size`` each rank's DataLoader yields this epoch.

        A worker yields an item per usable clip of its shards (none when it holds fewer than two:
        no easy negative) and batches them on its own, dropping its last partial batch.

        Args:
            batch_size: items per batch.
            n_workers: DataLoader workers per rank (1 when loading in the main process).

        Returns:
            ``[world]`` full-batch counts, indexed by rank.
        """
        out = []
        for rank in range(self.stream.world):
            counts = [
                sum(self.per_shard[s] for s in self.stream.shards_for(k, n_workers, rank))
                for k in range(n_workers)
            ]
            out.append(sum(c // batch_size for c in counts if c >= 2))
        return out

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        epoch = self.stream.epoch & 0x7FFFFFFF
        rng = np.random.default_rng([self.seed, 7253, epoch, self.stream.rank, worker])
        order = np.random.default_rng([self.seed, epoch, self.stream.rank, worker])
        clips = (c for c in map(self._clip, self.stream) if c is not None)
        last, waiting = None, []
        for clip, buffer in _buffered(clips, self.buffer, order):
            pool = buffer if last is None else [*buffer, last]
            last = clip
            if not pool:  # the first clip, nothing else read yet (no buffer)
                waiting.append(clip)
                continue
            for c in waiting:
                yield self.cut_item(c, [*buffer, clip], rng)
            waiting.clear()
            yield self.cut_item(clip, pool, rng)

    def _clip(self, sample: dict) -> Clip | None:
        index = self.clip_of.get(sample["row"]["id"])
        if index is None:
            return None
        frames, audio = torch.from_numpy(sample["frames"]), torch.from_numpy(sample["audio"])
        duration = min(frames.shape[0] / self.data.fps, audio.shape[0] / self.data.sample_rate)
        if duration < self.data.window:  # only a cache without lengths lets one through
            raise AvsslError(
                f"{self.stream.root}: clip {sample['row']['id']!r} is shorter than the "
                f"{self.data.window:g}-s window (a cache from before clip lengths were recorded: "
                "rebuild it into a new folder)"
            )
        return Clip(index, frames, audio, duration)

    def cut_item(self, clip: Clip, pool: list[Clip], rng: np.random.Generator) -> dict:
        """The item of ``clip`` (see the class), its window times drawn as
        :class:`~avssl.data.pairs.PairSampler` draws them.

        The frame's time and the positive's centre come from ``clip``; the hard negative is
        ``clip``'s audio at least ``data.min_shift`` away (``hard_valid`` false when the clip
        has no room for one); the easy negative is a clip of ``pool`` other than ``clip`` (one
        that :class:`~avssl.data.clip_windows.NotNegatives` does not rule out, when there is
        one), at a uniformly drawn centre.

        Args:
            clip: the clip the item is of.
            pool: the clips an easy negative may come from (``clip`` itself is passed over); it
                must hold at least one other clip.
            rng: the generator every draw comes from.
        """
        d = self.data
        t = frame_time(rng, clip.duration, d.window, d.min_shift)
        others = [c for c in pool if c.index != clip.index]
        others = [c for c in others if not self.not_negatives(clip.index, c.index)] or others
        easy = others[int(rng.integers(len(others)))]
        easy_t = float(rng.uniform(*centre_range(easy.duration, d.window)))
        hard_t = shifted_time(rng, clip.duration, d.window, d.min_shift, t)
        hard_valid = not math.isnan(hard_t)
        neg_hard = bool(rng.random() < d.hard_fraction) and hard_valid
        audio_t = positive_time(rng, t, clip.duration, d.window, d.positive_jitter)
        frame = frame_at(clip.frames, t, d.fps)
        if d.augment:
            frame = train_augment(frame, d.frame_size, rng)
        else:
            frame = eval_resize(frame, d.frame_size)
        audio = pair_audio(
            self.audio_keys,
            lambda: audio_window(clip.audio, audio_t, d.window, d.sample_rate),
            lambda: audio_window(easy.audio, easy_t, d.window, d.sample_rate),
            lambda: audio_window(clip.audio, hard_t, d.window, d.sample_rate),
            hard_valid, neg_hard,
        )  # fmt: skip
        return {
            "frames": frame,
            **audio,
            "neg_hard": torch.tensor(neg_hard),
            "hard_valid": torch.tensor(hard_valid),
            "label": torch.tensor(self.labels[clip.index], dtype=torch.long),
            "frame_labels": self.visible[clip.index],
            "clip": torch.tensor(clip.index, dtype=torch.long),
            "t": torch.tensor(t, dtype=torch.float32),
        }


def _buffered(clips: Iterable[Clip], size: int, rng: np.random.Generator):
    """``clips`` in shuffle-buffer order (as :func:`~avssl.data.shard_stream.shuffled`), each
    given out with the clips then still in the buffer.

    Yields:
        ``(clip, buffer)``; ``buffer`` is the live list: read it before the next draw.
    """
    buffer: list[Clip] = []
    for clip in clips:
        if size <= 1:
            yield clip, buffer
            continue
        if len(buffer) < size:
            buffer.append(clip)
            continue
        i = int(rng.integers(len(buffer)))
        buffer[i], clip = clip, buffer[i]
        yield clip, buffer
    rng.shuffle(buffer)
    while buffer:
        clip = buffer.pop()
        yield clip, buffer
