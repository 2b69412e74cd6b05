"""The summary of a run with nothing left to train, given by ``train.py --resume`` without
loading the run's data.

Two values of a training session's summary come from its data: the bad items it skipped while
loading them, and the memory a training step needs, measured on validation items
(:mod:`avssl.train.step_memory`). Every checkpoint records the ones of the session that wrote it
(:func:`record`), with that session's measured peak when it saved (:func:`at_save`: the peak of
the training, which a process that loads nothing is far below) and what they were measured under
besides the config the checkpoint holds: the device type, the resolved precision and the number
of processes. A resume that has nothing left to train gives its summary from that record
(:func:`finished_summary`), reading the weights digests from the checkpoint. It falls back to
loading the data, as a session that trains does, for a checkpoint of an older version (no
record), for ``--set`` overrides that change any value of the config, and on another kind of
device, precision or number of processes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from avssl.config import Config, to_dict
from avssl.errors import AvsslError, skip_fields
from avssl.train import averaging, runtime
from avssl.train import resume as resuming
from avssl.train.checkpoint import weights_digest
from avssl.train.memory import peak_mb
from avssl.train.summary import train_summary

RECORD_KEY = "summary_record"  # the checkpoint entry of :func:`record`
# the summary's ``memory_mb``: the estimate's keys, then the measured peak
MEMORY_KEYS = ("activations_mb", "optimizer_mb", "estimated_peak_mb", "peak_mb")


def record(device, precision: str, world: int, memory: dict, skipped: list[dict]) -> dict:
    """The checkpoint entry that lets a resume with nothing to train skip loading the data
    (saved through :func:`at_save`, which adds the measured peak).

    Args:
        device: the training device (its type is recorded).
        precision: the resolved precision.
        world: the number of processes.
        memory: :func:`avssl.train.step_memory.estimate_step_memory`'s estimate.
        skipped: the bad items skipped while loading, ``{"split", "id", "reason"}`` each.

    Returns:
        ``{"device", "precision", "world", "memory_mb", "n_skipped", "skipped"}`` (the first
        :data:`avssl.errors.MAX_LISTED_SKIPS` items listed, as in the summary).
    """
    return {
        "device": device.type,
        "precision": precision,
        "world": world,
        "memory_mb": dict(memory),
        **skip_fields(skipped),
    }


def at_save(entry: dict, device) -> dict:
    """``entry`` (:func:`record`) as a checkpoint saves it: ``memory_mb`` completed with the
    session's measured peak so far (:func:`avssl.train.memory.peak_mb`), as its summary gives it."""
    return {**entry, "memory_mb": {**entry["memory_mb"], "peak_mb": peak_mb(device)}}


def strict_error(skipped: list[dict]) -> AvsslError:
    """The error ``--strict`` stops a run with when loading its data skipped bad items."""
    first = skipped[0]
    return AvsslError(f"{first['reason']} ({first['split']} row {first['id']!r}; --strict)")


def _usable(entry, device, precision: str, world: int) -> bool:
    """Whether ``entry`` is a well-formed :func:`record` made under these settings."""
    if not isinstance(entry, dict):
        return False
    made = (entry.get("device"), entry.get("precision"), entry.get("world"))
    skipped = entry.get("skipped")
    return (
        made == (device.type, precision, world)
        and isinstance(entry.get("memory_mb"), dict)
        and tuple(entry["memory_mb"]) == MEMORY_KEYS
        and isinstance(entry.get("n_skipped"), int)
        and isinstance(skipped, list)
        and all(isinstance(s, dict) and {"split", "id", "reason"} <= set(s) for s in skipped)
    )


def finished_summary(
    cfg: Config, saved: Config, resume: dict, run_dir: Path, strict: bool = False
) -> dict | None:
    """The summary of a resumed run that has nothing left to train, without loading its data.

    Built as a training session builds its summary (:func:`avssl.train.summary.train_summary`),
    with the values :func:`avssl.train.loop.train` gives such a run, except that ``memory_mb``
    (the estimate and the measured peak) is the one the session that wrote the checkpoint
    recorded when it saved, and ``seconds`` is this process's, which trains nothing and loads no
    data. The rank-0 process cuts ``metrics.jsonl`` back to the checkpoint's step, as a resume
    does; nothing else is written.

    Args:
        cfg: the config after ``--set``.
        saved: the checkpoint's config.
        resume: the loaded checkpoint, at its run's last step.
        run_dir: the run folder.
        strict: ``--strict``: a recorded skipped item is an error.

    Returns:
        The summary, or None when the checkpoint holds no usable record (see the module):
        the caller then trains, which loads the data and trains nothing.

    Raises:
        AvsslError: ``strict`` and the record lists a skipped item.
    """
    t0 = time.time()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    entry = resume.get(RECORD_KEY)
    if not isinstance(entry, dict) or to_dict(cfg) != to_dict(saved):
        return None
    device = runtime.resolve_device(cfg.train.device)
    if entry.get("device") != device.type:  # before the precision's note, which it would repeat
        return None
    precision = runtime.resolve_precision(cfg.train.precision, device)
    if not _usable(entry, device, precision, world):
        return None
    if strict and entry["skipped"]:
        raise strict_error(entry["skipped"])
    from avssl.models import build_model

    model = build_model(cfg.model, cfg.data, cfg.loss)
    ema = averaging.build_ema(model, cfg.train.ema_decay)
    averaging.restore(model, ema, resume)
    digest = weights_digest(model)
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:  # as a training session does: every rank's digest
        sys.stderr.write(f"rank {rank}: weights digest {digest}\n")
    step, best = resume["step"], resume.get("best")
    if rank == 0:
        resuming.cut_metrics(run_dir / "metrics.jsonl", step)
    return train_summary(cfg, run_dir, step, best, entry, digest, ema, t0)
