"""Checks of a run's training data against its config, made before the clips are decoded (on the
manifest's rows) and again once they are (on the usable clips): a run whose batches cannot be
filled, or that asks for hard negatives no clip has room for, is refused rather than trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from avssl.config import Config
from avssl.data.manifest import read_manifest
from avssl.errors import ConfigError, TrainingError
from avssl.models import method_class
from avssl.train.data import batches_per_epoch

# rounding slack (s), as the pair sampler's: a clip exactly data.window + data.min_shift long has
# room for a hard negative at its other end
SLACK = 1e-9


def hard_negative_setting(cfg: Config) -> str | None:
    """The setting that asks the run for hard (same clip, time-shifted) negatives, or None:
    the method's own answer (:meth:`~avssl.models.traits.MethodTraits.hard_negative_setting`).

    Contrastive reads them with ``loss.hard_negatives``; the two-way methods with
    ``data.hard_fraction > 0``, unless AVOL-Net draws its negatives from the batch.
    """
    return method_class(cfg.model.method).hard_negative_setting(cfg.model, cfg.data, cfg.loss)


def _hard_key(cfg: Config) -> str | None:
    """The setting by which the run's method would be asked for hard negatives (with them on)."""
    data = dataclasses.replace(cfg.data, hard_fraction=0.5)
    loss = dataclasses.replace(cfg.loss, hard_negatives=True)
    return method_class(cfg.model.method).hard_negative_setting(cfg.model, data, loss)


def hard_negative_error(cfg: Config, durations: Sequence[float], where: Path | str) -> str | None:
    """Why no clip of ``durations`` can give the hard negatives the run asks for, or None.

    A clip has room for one when it is at least ``data.window + data.min_shift`` long; some
    clips without room are fine (those items fall back to an easy negative), none with room
    would train without any hard negative, silently.

    Args:
        cfg: the run's configuration.
        durations: seconds of each training clip (an upper bound of each is enough to refuse).
        where: the manifest, named in the message.
    """
    setting = hard_negative_setting(cfg)
    if setting is None or not durations:
        return None
    need = cfg.data.window + cfg.data.min_shift
    longest = max(durations)
    if longest >= need - SLACK:
        return None
    off = "loss.hard_negatives: false" if setting.startswith("loss.") else "data.hard_fraction: 0"
    return (
        f"{where}: no training clip is long enough for a hard negative ({setting}): the longest "
        f"is {longest:g} s, and data.window + data.min_shift is {need:g} s; lower data.min_shift "
        f"or turn them off ({off})"
    )


def check_manifest_rows(cfg: Config, manifest: Path, world: int, resume: dict | None = None) -> str:
    """Refuse, before any clip is decoded, a run the training rows of ``manifest`` cannot feed:
    fewer rows than one batch per process, or (when every row has an ``end``) none long enough
    for the hard negatives the run asks for. A streamed split is checked by its own loader. A
    run of a method whose negatives are the batch's (``batch_negatives``: contrastive) with one
    clip per step and no hard negatives has no negative at all. A resume on other validation
    rows is refused (:func:`validation_digest`).

    Args:
        cfg: the run's configuration.
        manifest: the manifest the run reads.
        world: the number of processes.
        resume: the checkpoint resumed from, or None.

    Returns:
        the validation rows' digest, for the run's checkpoints.

    Raises:
        TrainingError: too few rows for one batch.
        ConfigError: no row long enough for a hard negative, no negative at all, or other
            validation rows than the resumed run's.
    """
    one_pair = cfg.train.batch_size * world == 1 and hard_negative_setting(cfg) is None
    if method_class(cfg.model.method).batch_negatives and one_pair:  # InfoNCE over one pair
        off = {"loss.hard_negatives": " with loss.hard_negatives: false",
               "data.hard_fraction": " with data.hard_fraction: 0"}  # fmt: skip
        off = off.get(_hard_key(cfg), "")
        raise ConfigError(
            f"train.batch_size 1 in one process{off} leaves "
            f"{cfg.model.method} no negative to learn from; raise train.batch_size"
        )
    val_rows = read_manifest(manifest, "val")
    digest = validation_digest(val_rows, manifest, resume)
    if cfg.data.stream:
        return digest
    rows = read_manifest(manifest, "train")
    if rows and batches_per_epoch(len(rows), cfg.train.batch_size, world) == 0:
        raise TrainingError(
            f"{manifest}: {len(rows)} training row{'s' if len(rows) != 1 else ''} cannot fill "
            "one batch of "
            f"{cfg.train.batch_size} per process; lower train.batch_size"
        )
    if rows and all(row.duration is not None for row in rows):
        problem = hard_negative_error(cfg, [row.duration for row in rows], manifest)
        if problem:
            raise ConfigError(problem)
    problem = preload_error(cfg, rows, val_rows, manifest, world)
    if problem:
        raise ConfigError(problem)
    return digest


def preload_error(cfg: Config, train_rows, val_rows, manifest, world: int) -> str | None:
    """Why the preloaded training and validation clips would not fit in memory, or None.

    Counted from the rows' durations (rows without an ``end`` are not counted): uint8 frames at
    ``data.fps`` (training at ``data.load_size``, validation at ``data.frame_size``) and float32
    audio, once for each process on the machine (``LOCAL_WORLD_SIZE``, else ``world``). A
    preloading process out of memory is killed without a word on the CPU.
    """
    import os

    import torch

    from avssl.train.memory import available_bytes

    data = cfg.data
    if not (data.preload or data.cache):  # decoded on demand
        return None
    free = available_bytes(torch.device("cpu"))
    if free is None:
        return None

    def size(rows, side: int) -> float:
        seconds = sum(r.duration for r in rows if r.duration is not None)
        return seconds * (data.fps * side * side * 3 + data.sample_rate * 4)

    local = int(os.environ.get("LOCAL_WORLD_SIZE") or world)
    need = local * (size(train_rows, data.load_size) + size(val_rows, data.frame_size))
    if need <= free:
        return None
    each = f" ({local} processes)" if local > 1 else ""
    return (
        f"{manifest}: the training and validation clips decoded into memory need about "
        f"{need / 2**30:.1f} GiB{each} at data.fps {data.fps:g} and data.load_size "
        f"{data.load_size}, more than the {free / 2**30:.1f} GiB free; lower them, decode on "
        "demand (data.preload=false), or stream a shard cache (data.cache=DIR, data.stream=true)"
    )


def check_train_clips(cfg: Config, train_ds, manifest: Path) -> None:
    """Refuse hard negatives that none of the decoded training clips has room for.

    Args:
        cfg: the run's configuration.
        train_ds: the training :class:`~avssl.data.dataset.AVPairDataset` (a streamed split is
            not checked).
        manifest: the manifest, named in the message.

    Raises:
        ConfigError: no usable clip long enough for a hard negative.
    """
    sampler = getattr(train_ds, "sampler", None)
    if sampler is None:
        return
    problem = hard_negative_error(cfg, [float(d) for d in sampler.durations], manifest)
    if problem:
        raise ConfigError(problem)


def validation_digest(val_rows: list, manifest: Path, resume: dict | None) -> str:
    """A digest of ``manifest``'s validation rows (ids, windows, labels), which ``best.pt`` is
    chosen on; a resume whose rows differ is refused (a moved dataset keeps them).

    Args:
        val_rows: the manifest's rows of split ``val``.
        manifest: the manifest the run reads (named in the error).
        resume: the checkpoint resumed from, or None; one saved before the digest was recorded
            passes.

    Returns:
        16 hex digits, saved in the checkpoints as ``val_rows``.

    Raises:
        ConfigError: the resumed run chose ``best.pt`` on other validation rows.
    """
    rows = [[r.id, r.start, r.end, r.labels] for r in val_rows]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    saved = (resume or {}).get("val_rows")
    if saved is not None and saved != digest:
        raise ConfigError(
            f"data.root: the validation rows of {manifest} are not the run's (best.pt would "
            "be chosen across two validation sets); resume on the run's data or start a new run"
        )
    return digest
