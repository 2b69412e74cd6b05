"""Training batches of consecutive epochs as one stream, prepared ahead across epoch boundaries.

With ``data.num_workers=0`` and ``data.prefetch > 0`` a background thread builds the batches
(:class:`~avssl.train.prefetch.Prefetcher`), and it goes on into the next epoch while the model
trains on the last batches of this one, so no epoch's first batch waits for loading.

Exact resume depends on the global torch generator, which the model's audio augmentation draws
from. Iterating a DataLoader draws its base seed from that generator unless the loader has its
own; building the next epoch's loader in the thread, at a moment that depends on timing, would
move that draw. So a thread-built loader gets its own generator, and the main thread makes the
same draw from the global generator where an epoch starts: the global stream, and hence the
trained weights, are those of loading each epoch in the main thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch

from avssl.train.data import make_loader
from avssl.train.prefetch import Prefetcher
from avssl.train.rng import restore_rng

_EPOCH_START = object()  # marks where an epoch begins (also an epoch with no batch left)


def _epochs(train_ds, cfg, rank, world, device, epoch, start_batch, own_generator):
    """Yield ``(epoch, 0, _EPOCH_START)``, then ``(epoch, batch index, raw)``, for each epoch."""
    for e in itertools.count(epoch):
        generator = None
        if own_generator:
            generator = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + e)
        first = start_batch if e == epoch else 0
        loader = make_loader(
            train_ds, cfg.train.batch_size, cfg.train.seed, e, rank, world, first,
            cfg.data.num_workers, device, generator,
        )  # fmt: skip
        batches = iter(loader)  # without a generator of its own: draws the loader's base seed
        yield e, 0, _EPOCH_START
        for i, raw in enumerate(batches, first):
            yield e, i, raw


def _loader_draw() -> None:
    """The draw ``DataLoader.__iter__`` makes from the global generator (its base seed) when
    the loader has no generator of its own."""
    torch.empty((), dtype=torch.int64).random_()


def draws_before_first_batch(resume, rank: int, seed: int) -> None:
    """Leave the global generators as :func:`training_batches` leaves them before its first
    batch: after the first epoch's loader draw and, for a resumed run, at ``resume``'s states.

    For a run that stops before its first batch, where the batches were never started: its
    checkpoint must hold the states a resume sets once the first epoch's loader is built.

    Args:
        resume: the checkpoint the run resumed from, or None.
        rank: this process's rank.
        seed: ``train.seed``.
    """
    _loader_draw()
    if resume is not None:
        restore_rng(resume, rank, seed)


def training_batches(
    train_ds, cfg, rank: int, world: int, device, epoch: int, start_batch: int, resume
) -> Iterator[tuple[int, int, dict]]:
    """``(epoch, batch index in the epoch, raw batch)`` from ``start_batch`` of ``epoch`` on.

    Endless: the caller stops when its plan is done.

    Close it (or leave a ``for`` loop over it) to stop the prefetch thread.

    Args:
        train_ds: the training split (map-style or streamed).
        cfg: the run's configuration (``data.num_workers``, ``data.prefetch``, ``train``).
        rank: this process's rank.
        world: number of processes.
        device: the training device.
        epoch: the first epoch.
        start_batch: the first batch of ``epoch`` (a resumed run skips the ones it did).
        resume: a checkpoint whose generator states (this rank's: :func:`restore_rng`) are set
            once the first epoch's loader is built (the uninterrupted run made that epoch's
            draw before the checkpoint), or None.
    """
    threaded = bool(cfg.data.prefetch) and cfg.data.num_workers == 0
    source = _epochs(train_ds, cfg, rank, world, device, epoch, start_batch, threaded)
    if threaded:
        source = iter(Prefetcher(source, cfg.data.prefetch))
    pending = resume
    try:
        for e, i, raw in source:
            if raw is not _EPOCH_START:
                yield e, i, raw
                continue
            if threaded:  # the thread's loader has a generator of its own: its draw, here
                _loader_draw()
            if pending is not None:
                restore_rng(pending, rank, cfg.train.seed)
                pending = None
    finally:
        source.close()
