"""``python train.py`` / ``avssl train``: train a correspondence model.

The last line on stdout is one JSON object:
``{"run_dir", "step", "best_step", "val": {"accuracy", "accuracy_easy", "accuracy_hard"},
"clips_per_s", "data_wait_fraction", "precision", "seconds", "memory_mb": {"activations_mb",
"optimizer_mb", "estimated_peak_mb", "peak_mb"}, "weights_digest",
"averaged_weights_digest", "interrupted", "signal", "time_limited", "n_skipped",
"skipped": [{"split", "id", "reason"}, ...]}``. ``weights_digest`` is of the weights the
optimiser moves; ``averaged_weights_digest`` of the averaged ones (``train.ema_decay``), else null.
``memory_mb``: :func:`avssl.train.step_memory.estimate_step_memory` and the measured peak, MiB.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from avssl.cli import ArgumentParser, json_line
from avssl.config import Config, apply_override, load_config
from avssl.config_checks import check_ranges
from avssl.errors import AvsslError, CheckpointError, ConfigError
from avssl.train.checkpoint import checkpoint_config, load_checkpoint
from avssl.train.resume import finished_note
from avssl.train.run_dir import (  # noqa: F401 (re-exported)
    check_config_unedited,
    check_writable,
    discard_failed_run,
    prepare_run_dir,
)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="train.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", help="YAML config (default: the built-in default, on the synthetic world)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=500 (repeatable)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly where it stopped")
    p.add_argument("--run-dir", help="explicit run directory (must not exist or be empty)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first clip that cannot be decoded"
    )
    return p


def check_model_config(cfg: Config):
    """Build the model once, off the record, so a refused model config (or weight averaging
    setting) fails before any folder is made or any clip decoded (a fraction of a second even at
    paper size).

    Returns:
        The model built, in eval mode (the run builds its own).

    Raises:
        ConfigError: the model settings are refused, or its training state alone would not fit
            in the device's free memory (:mod:`avssl.train.memory`).
    """
    import torch

    from avssl.models import build_model, embedding_dims
    from avssl.train.averaging import check_decay
    from avssl.train.memory import check_model_fits
    from avssl.train.runtime import check_precision, resolve_device

    check_decay(cfg.train.ema_decay)
    device = resolve_device(cfg.train.device)
    check_precision(cfg.train.precision, device)
    check_model_fits(cfg, device)  # counted without allocating: a huge model is not built
    with torch.random.fork_rng(devices=[]):  # the run's own initialisation stays as it was
        model = build_model(cfg.model, cfg.data, cfg.loss).eval()
        embedding_dims(model, cfg.data)
    return model


# what the weights were learnt on that keeps every weight's shape when changed: refused on
# resume by value, as a changed shape is by loading (training-only augmentation may change)
FIXED_ON_RESUME = (
    "data.fps", "data.frame_size", "data.sample_rate", "data.window",
    "model.conv1_stride", "model.vision_pool_last", "model.audio_time_bins",
    "model.audio_rfn_blocks", "model.audio_rfn_lambda", "model.spatial",
    "model.audio.kind", "model.audio.n_fft", "model.audio.win_length", "model.audio.hop_length",
    "model.audio.n_mels", "model.audio.center", "model.audio.normalize", "model.audio.lifter",
    "model.audio.stretch_active_db",
)  # fmt: skip
# starting values of weights the checkpoint holds: the resumed run loads the learnt values
INIT_ONLY = ("model.temperature", "model.avol_scale_init")
# which parameters the saved optimiser state is for, and in which groups
OPTIMISER_KEYS = ("train.decay_all", "model.learn_temperature")


def check_resume_keeps_inputs(cfg: Config, saved: Config) -> None:
    """Refuse a ``--set`` at resume that changes what the weights were learnt to read.

    Also refuse one that changes only a weight's starting value (:data:`INIT_ONLY`: the run
    would load the checkpoint's value and ignore it, while ``config.yaml`` recorded it), or the
    parameters the saved optimiser state is for (:data:`OPTIMISER_KEYS`: it would not load).

    Raises:
        ConfigError: one of those keys differs from the checkpoint's value.
    """
    for key in FIXED_ON_RESUME + INIT_ONLY + OPTIMISER_KEYS:
        new, old = cfg, saved
        for part in key.split("."):
            new, old = getattr(new, part), getattr(old, part)
        if new == old:
            continue
        if key in OPTIMISER_KEYS:
            raise ConfigError(
                f"{key}: cannot be changed on resume (the run's optimiser state was saved with "
                f"{key.split('.')[-1]}={str(old).lower()}); start a new run"
            )
        if key in INIT_ONLY:
            raise ConfigError(
                f"{key}: cannot be changed on resume (it only sets the starting value of a "
                f"weight the checkpoint holds, so {new!r} would be ignored); start a new run"
            )
        raise ConfigError(
            f"{key}: cannot be changed on resume (the weights were learnt with {old!r}, "
            f"not {new!r}); start a new run"
        )


def check_resume_fits(cfg: Config, resume: dict, ckpt: Path) -> None:
    """Refuse ``--set`` overrides at resume that change the model the checkpoint was trained as
    (another width, an added or removed head): its weights would not load into it.

    Raises:
        ConfigError: the overridden model settings are refused.
        CheckpointError: the checkpoint's weights do not fit the model the overrides make.
    """
    model = check_model_config(cfg)
    try:
        model.load_state_dict(resume.get("train_model", resume["model"]))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:120]
        raise CheckpointError(
            ckpt,
            f"the --set overrides change the model, so its weights do not fit ({first}); "
            "resume with the model settings it was trained with, or start a new run",
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point shared by ``train.py`` and ``avssl train``."""
    args = _parser().parse_args(argv)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    resume, made_here, started_empty = None, False, False
    if args.resume and args.run_dir:
        raise AvsslError(
            "--run-dir: cannot be used with --resume (a resumed run continues in its own folder)"
        )
    if args.resume and args.config:
        raise AvsslError(
            "--config: cannot be used with --resume (the run's config is read from its "
            "checkpoint; change values with --set)"
        )
    if args.resume:
        path = Path(args.resume)
        ckpt = path / "last.pt" if path.is_dir() else path
        if path.is_dir() and not ckpt.exists():
            raise CheckpointError(path, "no last.pt in this run directory")
        resume = load_checkpoint(ckpt)
        for key in ("model", "optimizer", "scaler", "step", "epoch", "batch_in_epoch", "rng_cpu"):
            if key not in resume:
                raise CheckpointError(ckpt, f"not a resumable training checkpoint (no {key!r})")
        if ckpt.name != "last.pt" and (ckpt.parent / "last.pt").exists():
            raise CheckpointError(
                ckpt,
                "resuming from it would overwrite the last.pt beside it; resume the run folder "
                "(its last.pt), or copy this checkpoint alone into a new folder and resume that",
            )
        cfg = checkpoint_config(resume)
        for item in args.overrides:
            apply_override(cfg, item)
        saved = checkpoint_config(resume)
        check_resume_keeps_inputs(cfg, saved)
        check_ranges(cfg, overrides=args.overrides)
        if cfg.train.steps < resume["step"]:  # it trained nothing, yet rewrote config.yaml
            raise ConfigError(
                f"train.steps: {cfg.train.steps} is below step {resume['step']}, where {ckpt} "
                "stopped: nothing to train; to go on, set it higher"
            )
        if args.overrides:
            check_resume_fits(cfg, resume, ckpt)
        run_dir = ckpt.parent
        check_config_unedited(run_dir, saved, cfg, ckpt)
        check_writable(run_dir)
        note = finished_note(resume, saved, cfg, ckpt)
        if note and rank0:  # finished: a note, then its summary, nothing trained
            print(note, file=sys.stderr)
    else:
        cfg = load_config(args.config, args.overrides)
        from avssl.data.source import resolve_domains

        resolve_domains(cfg, progress=not args.no_progress)
        check_model_config(cfg)
        run_dir, made_here = (
            prepare_run_dir(cfg, args.run_dir)
            if rank0
            else (Path(cfg.train.runs_dir) / cfg.name, False)
        )
        started_empty = rank0  # prepare_run_dir hands out only a new or an empty folder

    from avssl.train.loop import train  # heavy imports only once the arguments are valid
    from avssl.train.runtime import cleanup_distributed
    from avssl.train.signals import terminated_as_interrupt

    try:
        with terminated_as_interrupt():
            summary = train(
                cfg, run_dir, resume=resume, progress=not args.no_progress, strict=args.strict
            )
    except BaseException:
        # a run that failed before its first checkpoint (unreadable data, a non-finite loss)
        # leaves no folder behind (no files, in a folder the user made) that would block, or be
        # silently taken over by, the next run
        discard_failed_run(run_dir, made_here, started_empty)
        raise
    if rank0:
        print(json_line(summary))
        sys.stdout.flush()
    cleanup_distributed()  # after rank 0's last line: torchrun ends every rank once one exits
    if summary["interrupted"]:
        return 128 + summary["signal"]
    return 0
