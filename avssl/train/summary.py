"""The summary ``train.py`` prints as its last stdout line, built here for both of its sources:
a training session (:func:`avssl.train.loop.train`) and a finished run resumed without loading
its data (:func:`avssl.train.finished.finished_summary`), so that both give the same keys, in the
same order, with the same values for the same run.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch.optim.swa_utils import AveragedModel

from avssl.config import Config
from avssl.train.checkpoint import weights_digest

VAL_KEYS = ("accuracy", "accuracy_easy", "accuracy_hard")  # the summary's ``val``


def train_summary(
    cfg: Config,
    run_dir: Path,
    step: int,
    best: dict | None,
    entry: dict,
    digest: str,
    ema: AveragedModel | None,
    t0: float,
    seen: int = 0,
    train_time: float = 0.0,
    data_wait: float = 0.0,
    signum: int = 0,
    interrupted: bool = False,
) -> dict:
    """The summary of a run at ``step``; the defaults are those of a session that trained no
    step and received no signal.

    Args:
        cfg: the run's config.
        run_dir: the run folder.
        step: the run's last step.
        best: the best validation (``{"step", **metrics}``), or None before the first one.
        entry: the session's data-derived values, as its checkpoint records them
            (:func:`avssl.train.finished.at_save`): the resolved precision, ``memory_mb`` (the
            estimate and the measured peak) and the skipped items.
        digest: :func:`avssl.train.checkpoint.weights_digest` of the weights the optimiser moves.
        ema: the averaged model (``train.ema_decay`` > 0), or None.
        t0: the ``time.time()`` at which this process began.
        seen: the clips this session trained on (all processes).
        train_time: the seconds this session spent in training steps.
        data_wait: the seconds it waited for the loader's next batch.
        signum: the stop signal received, even during the last step (which stops nothing: a
            script running several trainings learns that it was asked to stop), else 0.
        interrupted: the signal stopped the run before its last step.

    Returns:
        The summary (the keys listed in :mod:`avssl.train.cli`).
    """
    budgeted = cfg.train.max_minutes > 0
    return {
        "run_dir": str(run_dir),
        "step": step,
        "best_step": best["step"] if best else None,
        "val": best and {k: best[k] for k in VAL_KEYS},
        "clips_per_s": seen / max(train_time, 1e-9) if seen else None,  # None: no step here
        "data_wait_fraction": data_wait / max(data_wait + train_time, 1e-9),
        "precision": entry["precision"],
        "seconds": time.time() - t0,
        "memory_mb": dict(entry["memory_mb"]),
        "weights_digest": digest,
        # the averaged weights that best.pt, validation and evaluation use
        "averaged_weights_digest": None if ema is None else weights_digest(ema.module),
        "interrupted": interrupted,
        # train.max_minutes ended the run before train.steps
        "time_limited": budgeted and step < cfg.train.steps and not interrupted,
        "signal": signum if interrupted else 0,
        "stop_signal": signum,
        "n_skipped": entry["n_skipped"],
        "skipped": entry["skipped"],
    }
