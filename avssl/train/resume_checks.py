"""What ``train.py --resume`` checks before it trains: the checkpoint is a resumable one, holds
finite weights, and the ``--set`` overrides keep what its weights and optimiser state were made
with. Each refusal is one line that says how to go on."""

from __future__ import annotations

from pathlib import Path

from avssl.config import Config, apply_override
from avssl.config_checks import check_ranges
from avssl.errors import AvsslError, CheckpointError, ConfigError
from avssl.model_inputs import INPUT_KEYS
from avssl.train.checkpoint import (
    WEIGHT_KEYS,
    check_checkpoint_method,
    checkpoint_config,
    load_checkpoint,
    misfit_reason,
    nonfinite_tensor,
)
from avssl.train.model_check import check_model_config
from avssl.train.rng import states_error

RESUMABLE_KEYS = ("model", "optimizer", "scaler", "step", "epoch", "batch_in_epoch", "rng_cpu")


# starting values of weights the checkpoint holds: the resumed run loads the learnt values
INIT_ONLY = ("model.temperature", "model.avol_scale_init")
# which parameters the saved optimiser state is for, and in which groups
OPTIMISER_KEYS = ("train.optimizer", "train.decay_all", "model.learn_temperature")


def check_resume_keeps_inputs(cfg: Config, saved: Config) -> None:
    """Refuse a ``--set`` at resume that changes what the weights were learnt to read.

    Also refuse one that changes only a weight's starting value (:data:`INIT_ONLY`: the run
    would load the checkpoint's value and ignore it, while ``config.yaml`` recorded it), or the
    parameters the saved optimiser state is for (:data:`OPTIMISER_KEYS`: it would not load).

    Raises:
        ConfigError: one of those keys differs from the checkpoint's value.
    """
    # INPUT_KEYS are refused by value, as a changed shape is by loading (training-only
    # augmentation may change)
    for key in INPUT_KEYS + INIT_ONLY + OPTIMISER_KEYS:
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


def check_resume_fits(cfg: Config, resume: dict, ckpt: Path, overrides: list[str]) -> None:
    """Refuse a checkpoint whose weights do not load into the model the run builds: one of
    another version, or ``--set`` overrides that change the model it was trained as (another
    width, an added or removed head). Checked before any data is loaded.

    Raises:
        ConfigError: the overridden model settings are refused.
        CheckpointError: the checkpoint's weights do not fit, naming the keys; the overrides
            are blamed only when the weights fit the model of the checkpoint's own config.
    """
    reason = _misfit(check_model_config(cfg), resume)
    if reason is None:
        return
    if overrides and _misfit(_own_model(resume), resume) is None:
        raise CheckpointError(
            ckpt,
            f"the --set overrides change the model, so its weights do not fit ({reason}); "
            "resume with the model settings it was trained with, or start a new run",
        )
    raise CheckpointError(
        ckpt,
        f"weights do not fit the model of its own config ({reason}; written by another "
        "version?): not resumable",
    )


def _own_model(resume: dict):
    """The model of the checkpoint's own config (its initialisation draws left out), or None
    when this version cannot build it."""
    import torch

    from avssl.models import build_model

    saved = checkpoint_config(resume)
    try:
        with torch.random.fork_rng(devices=[]):
            return build_model(saved.model, saved.data, saved.loss)
    except AvsslError:
        return None


def _misfit(model, resume: dict) -> str | None:
    """Why a checkpoint's weight entries do not load into ``model`` (None: it could not be
    built), or None when they do."""
    if model is None:
        return "no model"
    for key in WEIGHT_KEYS:
        if key in resume:
            try:
                model.load_state_dict(resume[key])
            except RuntimeError as err:
                return f"{key}: {misfit_reason(err)}"
    return None


# what draws the validation set best.pt is chosen on (train.seed also draws the batch order):
# its windows, its clips, the hard negatives' shift and which easy negatives count
VALIDATION_KEYS = ("train.val_windows", "data.synthetic", "data.min_shift", "data.unseen_negatives")


def check_seed_kept(cfg: Config, saved: Config) -> None:
    """Refuse a new ``train.seed`` on resume: the epochs' batch order and the validation windows
    are drawn from it, so a run stopped mid-epoch would see some clips twice and others never,
    and ``best.pt`` would be chosen across two validation sets. Likewise the other settings
    that draw the validation set (:data:`VALIDATION_KEYS`; a moved ``data.root`` stays allowed).

    Raises:
        ConfigError: ``train.seed`` or a validation setting differs from the checkpoint's.
    """
    if cfg.train.seed != saved.train.seed:
        raise ConfigError(
            f"train.seed: cannot be changed on resume (the run's batch order and validation "
            f"windows come from seed {saved.train.seed}); start a new run for another seed"
        )
    for key in VALIDATION_KEYS:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) != getattr(getattr(saved, section), name):
            raise ConfigError(
                f"{key}: cannot be changed on resume (best.pt would be chosen across two "
                "validation sets); start a new run"
            )


def check_finite_weights(state: dict, ckpt: Path) -> None:
    """Refuse a checkpoint whose weights hold NaN or inf: the run diverged, or the file was
    damaged in a way its zip container does not catch.

    Raises:
        CheckpointError: a floating-point tensor of ``state["model"]`` (or ``train_model``)
            is not finite.
    """
    for key in ("model", "train_model"):
        if (name := nonfinite_tensor(state.get(key) or {})) is not None:
            raise CheckpointError(
                ckpt, f"weights are not finite ({key} {name} holds NaN or inf): not resumable"
            )


def load_resume(run: str, overrides: list[str]) -> tuple[Config, dict, Path]:
    """Load the checkpoint ``--resume RUN`` names and the config the resumed run trains with.

    Args:
        run: a run folder (its ``last.pt``) or a checkpoint file.
        overrides: the ``--set KEY=VALUE`` items.

    Returns:
        ``(cfg, checkpoint, checkpoint path)``; ``cfg`` is the checkpoint's config with the
        overrides applied, checked.

    Raises:
        CheckpointError: no, a damaged, a non-resumable or a diverged checkpoint, or one beside
            a ``last.pt`` it would overwrite (or, unless it is the folder's ``best.pt``, a
            ``best.pt`` or ``metrics.jsonl``).
        ConfigError: an override changes what the run must keep (see above).
    """
    path = Path(run)
    ckpt = path / "last.pt" if path.is_dir() else path
    if path.is_dir() and not ckpt.exists():
        raise CheckpointError(path, "no last.pt in this run directory")
    try:
        resume = load_checkpoint(ckpt)
    except CheckpointError as err:
        best = ckpt.parent / "best.pt"
        if ckpt.name != "last.pt" or not best.is_file():
            raise
        raise CheckpointError(
            ckpt,
            f"{err.reason}; the best.pt beside it is an earlier state of the run: copy it alone "
            "into a new folder and resume that",
        ) from None
    for key in RESUMABLE_KEYS:
        if key not in resume:
            raise CheckpointError(ckpt, f"not a resumable training checkpoint (no {key!r})")
    if (problem := states_error(resume)) is not None:  # not a traceback at the first batch
        raise CheckpointError(ckpt, problem)
    if ckpt.name != "last.pt" and (ckpt.parent / "last.pt").exists():
        raise CheckpointError(
            ckpt,
            "resuming from it would overwrite the last.pt beside it; resume the run folder "
            "(its last.pt), or copy this checkpoint alone into a new folder and resume that",
        )
    held = [n for n in ("best.pt", "metrics.jsonl") if (ckpt.parent / n).exists()]
    if ckpt.name not in ("last.pt", "best.pt") and held:
        raise CheckpointError(
            ckpt,
            f"resuming from it would overwrite the {' and '.join(held)} beside it (another "
            "run's?); copy this checkpoint alone into a new folder and resume that",
        )
    check_finite_weights(resume, ckpt)
    # its method, registered by the script that trained it? Said before a --set is blamed
    check_checkpoint_method(checkpoint_config(resume), ckpt)
    cfg = checkpoint_config(resume)
    for item in overrides:
        apply_override(cfg, item)
    saved = checkpoint_config(resume)
    check_resume_keeps_inputs(cfg, saved)
    check_seed_kept(cfg, saved)
    check_ranges(cfg, overrides=overrides)
    if cfg.train.steps < resume["step"]:  # it trained nothing, yet rewrote config.yaml
        raise ConfigError(
            f"train.steps: {cfg.train.steps} is below step {resume['step']}, where {ckpt} "
            "stopped: nothing to train; to go on, set it higher"
        )
    check_resume_fits(cfg, resume, ckpt, overrides)
    return cfg, resume, ckpt
