"""A run that diverged stops with one line naming its last good checkpoint: a loss that is not
finite (checked each step in :func:`avssl.train.loop.train`), or weights or validation scores that
are not (checked before a checkpoint of them is saved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avssl.errors import TrainingError
from avssl.train.checkpoint import nonfinite_tensor


def check_validation(models, scores: dict, step: int, run_dir: Path, main_proc: bool) -> None:
    """Stop a run whose weights or validation scores are not finite, before a checkpoint of
    them is saved.

    The loss alone does not catch every divergence: under bf16 a NaN in the audio tower's first
    weights can come out of a ReLU as 0, so the loss and the scores stay finite while
    ``best.pt`` and ``last.pt`` would hold NaN.

    Args:
        models: the trained model and, when weights are averaged, the averaged one.
        scores: the validation scores (``pos``, ``easy``: float arrays).
        step: the step validated.
        run_dir: the run folder (its ``last.pt`` is named in the error).
        main_proc: whether this is rank 0 (the only rank that knows the folder).

    Raises:
        TrainingError: naming the first tensor that is not finite, or the scores.
    """
    for model in models:
        if (name := nonfinite_tensor(model.state_dict())) is not None:
            raise diverged_error(f"{name} holds NaN or inf", step, run_dir, main_proc)
    if not all(np.isfinite(scores[k]).all() for k in ("pos", "easy")):
        raise diverged_error("the validation scores are not finite", step, run_dir, main_proc)


def diverged_error(loss, step: int, run_dir: Path, main_proc: bool) -> TrainingError:
    """The error that stops a run whose loss (or weights: ``loss`` is then what is wrong) is not
    finite, naming its last good checkpoint."""
    last = run_dir / "last.pt"
    if not main_proc:  # only rank 0 knows the folder it chose
        kept = "Rank 0 names the last good checkpoint"
    elif last.exists():
        kept = f"The last good checkpoint is {last}"
    else:
        kept = "No checkpoint yet"
    what = loss if isinstance(loss, str) else f"loss is {loss}"
    return TrainingError(
        f"{what} at step {step}; stopped. {kept} (try a lower train.lr or train.precision=fp32)"
    )
