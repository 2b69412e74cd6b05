"""Torch datasets of audio-visual pairs cut from manifest clips.

:class:`ClipStore` gives the frame at ``t`` and the audio window centred on ``t`` of any clip,
either preloaded into memory (small datasets: one sequential decode per clip) or decoded on
demand with seeking. :class:`AVPairDataset` combines it with the :class:`PairSampler`.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from avssl.config import DataConfig
from avssl.data import media
from avssl.data.clip_windows import (
    NotNegatives,
    audio_window,
    frame_at,
    frame_index,
    label_table,
    too_short,
    window_start,
)
from avssl.data.manifest import Row, resolve
from avssl.data.on_demand import decoded_span, probe_pairs
from avssl.data.pairs import AUDIO_KEYS, PairSampler, check_audio_keys, pair_audio
from avssl.data.transforms import eval_resize, train_augment
from avssl.errors import MediaError


class ClipStore:
    """Frames and audio of a list of manifest rows.

    Args:
        rows: manifest rows.
        manifest: the manifest's path (media paths are relative to it).
        data: data settings (fps, sample rate, window).
        size: side length frames are decoded at.
        preload: decode everything once into memory.
        progress: show a progress bar while preloading.
        loader: ``row -> (frames, audio) | MediaError`` used instead of decoding when
            preloading (e.g. :func:`avssl.data.shards.cached_clips`).
        fit: how frames are made square when decoded, ``squash`` or ``crop``
            (:func:`avssl.data.frame_fit.split_fit`; a ``loader`` serves frames as they are).

    Rows that cannot be decoded are dropped; ``skipped`` lists ``(id, reason)`` for each. On
    demand, rows are kept or dropped from their headers and measured as preloading decodes them
    (:mod:`avssl.data.on_demand`), so both give the same clips, spans and items.
    """

    def __init__(
        self,
        rows: list[Row],
        manifest: str | Path,
        data: DataConfig,
        size: int,
        preload: bool,
        progress: bool = False,
        loader=None,
        fit: str = "squash",
    ):
        self.data, self.size, self.preload, self.fit = data, size, preload, fit
        self.manifest = Path(manifest)
        self.skipped: list[tuple[str, str]] = []
        self._frames: list[torch.Tensor] = []
        self._audio: list[torch.Tensor] = []
        self._lengths: list[tuple[int, int]] = []  # on demand: (T, N) a preloaded clip holds
        if preload:
            with ThreadPoolExecutor(max_workers=2) as pool:
                loaded = pool.map(loader or self._load, rows)
                it = tqdm(
                    loaded, total=len(rows), desc="decode", disable=not progress, file=sys.stderr
                )
                kept = []
                for row, item in zip(rows, it, strict=True):
                    if isinstance(item, MediaError):
                        self.skipped.append((row.id, str(item)))
                        continue
                    kept.append(row)
                    self._frames.append(item[0])
                    self._audio.append(item[1])
            self.rows = kept
            sr = data.sample_rate
            self.durations = [min(f.shape[0] / data.fps, a.shape[0] / sr) for f, a in self.loaded]
        else:
            self.rows, self.durations = [], []
            probed = probe_pairs([self._paths(r) for r in rows], progress)
            for row in rows:
                paths = self._paths(row)
                try:
                    span = decoded_span(row, paths[0], probed[paths], data.fps, data.sample_rate)
                except MediaError as err:
                    self.skipped.append((row.id, str(err)))
                    continue
                self.rows.append(row)
                self._lengths.append(span[:2])
                self.durations.append(span[2])
        short = [i for i, d in enumerate(self.durations) if d < data.window]
        for i in reversed(short):
            self.skipped.append(
                (
                    self.rows[i].id,
                    too_short(self.manifest, self.rows[i], self.durations[i], data.window),
                )
            )
            del self.rows[i], self.durations[i]
            if preload:
                del self._frames[i], self._audio[i]
            else:
                del self._lengths[i]

    @property
    def loaded(self):
        """``(frames, audio)`` of each clip held in memory (``preload``), in clip order."""
        return zip(self._frames, self._audio, strict=True)

    def __len__(self) -> int:
        return len(self.rows)

    def _paths(self, row: Row) -> tuple[Path, Path | None]:
        return resolve(self.manifest, row.visual), resolve(self.manifest, row.audio)

    def _load(self, row: Row):
        video, audio = self._paths(row)
        d = self.data
        try:
            duration = None if row.end is None else row.end - row.start
            return media.read_clip(
                video, d.fps, self.size, d.sample_rate, audio, row.start, duration, self.fit
            )
        except MediaError as err:
            return err

    def frame(self, clip: int, t: float) -> torch.Tensor:
        """uint8 ``[3, size, size]``: the frame showing at ``t`` s into the clip.

        Args:
            clip: index of the clip in ``rows``.
            t: time in seconds from the clip's start (its row's ``start``).
        """
        fps = self.data.fps
        if self.preload:
            return frame_at(self._frames[clip], t, fps)
        row = self.rows[clip]
        video, _ = self._paths(row)
        # the grid time a preloaded clip holds this frame at (its last one past the end, as
        # frame_at), so that both pick the same source frame whatever the source's frame rate
        k = min(frame_index(t, fps), self._lengths[clip][0] - 1)
        grid_t = row.start + k / fps
        frames = media.read_frames(video, grid_t, 1.0 / fps, fps, self.size, self.fit)
        return frames[0].permute(2, 0, 1)

    def audio(self, clip: int, centre: float) -> torch.Tensor:
        """float32 ``[N]``: the ``window``-second audio centred on ``centre`` s into the clip.

        Args:
            clip: index of the clip in ``rows``.
            centre: centre of the window in seconds from the clip's start (its row's ``start``).
        """
        d = self.data
        if self.preload:
            return audio_window(self._audio[clip], centre, d.window, d.sample_rate)
        row = self.rows[clip]
        video, audio = self._paths(row)
        # the samples a preloaded clip cuts (on its sample grid, moved inside the clip)
        i, _ = window_start(centre, d.window, d.sample_rate, self._lengths[clip][1])
        start = row.start + i / d.sample_rate
        return media.read_audio(audio or video, start, d.window, d.sample_rate)


AUGMENT_TAG = 3571  # keeps the augmentation's random stream apart from the pair sampler's


def augment_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of item ``index``'s frame augmentation in ``epoch``.

    Its own tag keeps it apart from :meth:`~avssl.data.pairs.PairSampler.sample`'s
    ``[seed, epoch, index]``: the augmentation once drew from ``[seed, 1 + epoch, index]``, the
    very numbers that drew the next epoch's frame time and negatives for the same item.
    """
    return np.random.default_rng([seed, AUGMENT_TAG, epoch & 0x7FFFFFFF, index])


class AVPairDataset(Dataset):
    """Items of positive, easy-negative and hard-negative audio for one frame.

    Each item is a dict: ``frames`` uint8 ``[3, S, S]``, ``audio``, ``audio_neg``, ``audio_hard``
    float32 ``[N]``, ``neg_hard`` and ``hard_valid`` bool, ``label`` long (class index or -1),
    ``frame_labels`` bool ``[len(classes)]`` (the classes visible in the frame: the row's
    ``frame_labels`` when given, else its first label),
    ``clip`` long, ``t`` float, and with ``domains`` given ``domain`` long (the index of the
    row's ``domain`` in ``domains``, -1 when absent or not listed). ``audio_neg`` is the hard
    negative when ``neg_hard`` else the easy one; ``audio_easy`` is always the easy one. After
    :meth:`set_audio_keys` an item holds only the audio entries named (the others are not read).

    Args:
        store: decoded clips.
        data: data settings (window, shifts, augmentation).
        classes: label names; a row's first label indexes into it.
        train: augment frames and offset positives by ``data.positive_jitter``; otherwise resize
            only and centre every positive on its frame.
        windows_per_clip: items per clip per epoch.
        seed: sampling seed.
        domains: domain names (``loss.domain_adversary``), or None for no ``domain`` entry.
    """

    def __init__(
        self,
        store: ClipStore,
        data: DataConfig,
        classes: list[str],
        train: bool,
        windows_per_clip: int = 1,
        seed: int = 0,
        domains: list[str] | None = None,
    ):
        self.store, self.data, self.train = store, data, train
        self.labels, self.visible = label_table(store.rows, classes)
        self.domains = None
        if domains is not None:
            index = {d: i for i, d in enumerate(domains)}
            self.domains = torch.tensor([index.get(r.domain, -1) for r in store.rows])
        self.sampler = PairSampler(
            store.durations, data.window, data.min_shift, data.hard_fraction, seed,
            excluded=NotNegatives(store.rows, self.labels, self.visible, data.unseen_negatives),
            jitter=data.positive_jitter if train else 0.0,  # evaluation pairs stay centred
        )  # fmt: skip
        self.windows_per_clip = windows_per_clip
        self.seed = seed
        self.epoch = 0
        self.audio_keys = AUDIO_KEYS

    def set_audio_keys(self, keys) -> None:
        """Read only these audio entries (a model's :meth:`~avssl.models.base.AVModel.audio_keys`);
        the pairs drawn are the same."""
        self.audio_keys = check_audio_keys(keys)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of each row left out (see :class:`ClipStore`)."""
        return self.store.skipped

    def set_epoch(self, epoch: int) -> None:
        """Draw the items of ``epoch`` (frame times, negatives, augmentation) from then on."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store) * self.windows_per_clip

    def __getitem__(self, index: int) -> dict:
        pair = self.sampler.sample(index, self.epoch)
        store = self.store
        frame = store.frame(pair.clip, pair.t)
        if self.train and self.data.augment:
            rng = augment_rng(self.seed, self.epoch, index)
            frame = train_augment(frame, self.data.frame_size, rng)
        else:
            frame = eval_resize(frame, self.data.frame_size)
        hard_valid = not math.isnan(pair.hard_t)
        audio = pair_audio(
            self.audio_keys,
            lambda: store.audio(pair.clip, pair.audio_t),
            lambda: store.audio(pair.easy_clip, pair.easy_t),
            lambda: store.audio(pair.clip, pair.hard_t),
            hard_valid, pair.neg_hard,
        )  # fmt: skip
        item = {
            "frames": frame,
            **audio,
            "neg_hard": torch.tensor(pair.neg_hard),
            "hard_valid": torch.tensor(hard_valid),
            "label": torch.tensor(self.labels[pair.clip], dtype=torch.long),
            "frame_labels": self.visible[pair.clip],
            "clip": torch.tensor(pair.clip, dtype=torch.long),
            "t": torch.tensor(pair.t, dtype=torch.float32),
        }
        if self.domains is not None:
            item["domain"] = self.domains[pair.clip]
        return item
