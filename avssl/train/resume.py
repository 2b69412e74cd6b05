"""What ``--resume`` restores besides the step counters: the weights, the optimiser (with the
current config's weight decay), the place in the epoch, and the metrics log, cut back to the
checkpoint. Each rank's random number generators: :mod:`avssl.train.rng`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from avssl.atomic_write import write_text
from avssl.config import Config
from avssl.train import averaging


def finished_note(resume: dict, saved: Config, cfg: Config, ckpt: Path) -> str | None:
    """The note a resume that will train nothing prints, or None when there is training left.

    A run is done at ``train.steps``, or, with the same ``train.steps`` and
    ``train.max_minutes`` as it had, at the step its time budget planned (it stays finished).

    Args:
        resume: the checkpoint resumed from.
        saved: its config.
        cfg: the config after ``--set``.
        ckpt: the checkpoint file, named in the note.
    """
    step, t = resume["step"], cfg.train
    if t.steps == step:
        return (
            f"note: {ckpt} is at step {step} of train.steps {t.steps}: nothing left to train "
            "(--set train.steps=N to train longer)"
        )
    planned = resume.get("planned_steps")
    same = (saved.train.steps, saved.train.max_minutes) == (t.steps, t.max_minutes)
    if t.max_minutes > 0 and same and isinstance(planned, int) and step >= planned:
        return (
            f"note: {ckpt} ended on its time budget (train.max_minutes {t.max_minutes:g}) at "
            f"step {step}: nothing left to train (--set train.max_minutes=M with a larger M, or "
            "0 for none, to train on)"
        )
    return None


def restore_training(
    model: nn.Module,
    ema,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    resume: dict,
) -> None:
    """Load a checkpoint's weights, averaged weights, optimiser and gradient scaler states.

    Each optimiser group keeps the weight decay ``opt`` was built with (the current config's,
    which ``--set train.weight_decay`` may have changed); ``load_state_dict`` would bring back the
    checkpoint's. The learning rate is set by the loop at every step.

    Args:
        model: the network the optimiser moves.
        ema: its weight average, or None.
        opt: the optimiser built from the current config.
        scaler: the gradient scaler (left as built when the checkpoint's state is empty: the
            run was trained in bf16 or fp32).
        resume: the loaded checkpoint.
    """
    averaging.restore(model, ema, resume)
    decays = [group["weight_decay"] for group in opt.param_groups]
    opt.load_state_dict(resume["optimizer"])
    for group, decay in zip(opt.param_groups, decays, strict=True):
        group["weight_decay"] = decay
    if resume["scaler"]:  # a run without fp16 saved {}: fp16 switched on starts a fresh scaler
        scaler.load_state_dict(resume["scaler"])


def epoch_layout(cfg, n_clips: int, world: int, shards: str | None = None) -> dict:
    """What fixes the batches of an epoch besides the seed: the number of training clips, the
    batch size and the number of processes, and for a streamed split also the loader workers
    (each reads its own shards), the shuffle buffer and which clips each shard holds.

    Args:
        cfg: the run's config.
        n_clips: training clips.
        world: number of processes.
        shards: digest of the streamed cache's shard list
            (:attr:`~avssl.data.shard_stream.ShardStream.digest`); None when not streamed.
    """
    layout = {"clips": n_clips, "batch_size": cfg.train.batch_size, "world": world}
    if cfg.data.stream:
        layout.update(workers=max(1, cfg.data.num_workers), shuffle_buffer=cfg.data.shuffle_buffer)
        layout.update(shards=shards)
    return layout


def resume_position(resume: dict, layout: dict) -> tuple[int, int, str | None]:
    """The epoch and batch a resumed run starts at, and a note when it is not the checkpoint's.

    A run stopped within an epoch skips the batches it had done, which assumes the same batch
    order. When the current settings change that order (:func:`epoch_layout`), reading the rest
    would show some clips twice and others never: the run starts the next epoch instead.

    Args:
        resume: the loaded checkpoint (``epoch``, ``batch_in_epoch``, ``epoch_layout``).
        layout: the current :func:`epoch_layout`.

    Returns:
        ``(epoch, batch, note)``; ``note`` is None when the checkpoint's place stands.
    """
    epoch, batch = resume["epoch"], resume["batch_in_epoch"]
    saved = resume.get("epoch_layout")  # absent in checkpoints of older versions
    if saved is not None and "shards" not in saved:  # older versions did not record it
        layout = {k: v for k, v in layout.items() if k != "shards"}
    if batch == 0 or saved is None or saved == layout:
        return epoch, batch, None
    keys = sorted(set(saved) | set(layout))
    changed = ", ".join(
        f"{k} {saved.get(k)} -> {layout.get(k)}" for k in keys if saved.get(k) != layout.get(k)
    )
    note = (
        f"resume: the batch order of epoch {epoch} changed with the settings ({changed}); "
        f"its remaining batches are skipped and training goes on with epoch {epoch + 1}"
    )
    return epoch + 1, 0, note


def cut_metrics(path: Path, step: int) -> None:
    """Keep only the rows of the metrics log ``path`` up to the checkpoint's ``step``.

    A session that crashed after its last checkpoint logged steps that the resumed run trains
    and logs again. A validation row at ``step`` itself stays: the loop logs a validation before
    it writes that step's checkpoint. A line cut short by the crash goes too. The file is
    replaced atomically; a missing one is left missing.

    Args:
        path: the run's ``metrics.jsonl``.
        step: the step of the checkpoint resumed from.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line + "\n")
    write_text(path, "".join(kept))  # a failed write leaves the log as it was


def _launched_as() -> tuple[str, str]:
    """The training command as this process was started, alone and as torchrun's program:
    ``avssl train`` from the console script (torchrun: ``--no-python avssl train``),
    ``python -m avssl train`` as a module (``-m avssl`` or ``-m avssl.cli``; torchrun:
    ``-m avssl train``), else ``python train.py`` (torchrun: ``train.py``)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if argv0.stem == "avssl":  # the console script (avssl.exe on Windows)
        return "avssl train", "--no-python avssl train"
    if argv0.name in ("__main__.py", "cli.py") and argv0.parent.name == "avssl":
        return "python -m avssl train", "-m avssl train"
    return "python train.py", "train.py"


def resume_command(run_dir: Path) -> str:
    """How to resume ``run_dir``, launched as this process was: under torchrun, with as many
    processes (another world size would change the global batch and skip to the next epoch)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return f"{_launched_as()[0]} --resume {run_dir}"
    local, world = os.environ.get("LOCAL_WORLD_SIZE", "1"), os.environ.get("WORLD_SIZE", "1")
    program = _launched_as()[1]
    if local == world:
        return f"torchrun --standalone --nproc_per_node {local} {program} --resume {run_dir}"
    return (
        f"torchrun --nproc_per_node {local} (and the rest of the same launch: {world} processes "
        f"in all) {program} --resume {run_dir}"
    )
