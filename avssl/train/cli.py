"""``python train.py`` / ``avssl train``: train a correspondence model.

The last line on stdout is one JSON object:
``{"run_dir", "step", "best_step", "val": {"accuracy", "accuracy_easy", "accuracy_hard"},
"clips_per_s", "data_wait_fraction", "precision", "seconds", "memory_mb": {"activations_mb",
"optimizer_mb", "estimated_peak_mb", "peak_mb"}, "weights_digest",
"averaged_weights_digest", "interrupted", "time_limited", "signal", "stop_signal", "n_skipped",
"skipped": [{"split", "id", "reason"}, ...]}`` (built by :mod:`avssl.train.summary`).
``weights_digest`` is of the weights the optimiser moves; ``averaged_weights_digest`` of the
averaged ones (``train.ema_decay``), else null. ``signal`` is the one that stopped the run, else
0; ``stop_signal`` one received (by any rank) even during the last step, which stops nothing.
``clips_per_s`` is null when this session trained no step (a finished run resumed).
``memory_mb``: :func:`avssl.train.step_memory.estimate_step_memory` and the measured peak, MiB.
A finished run resumed loads no data when its checkpoint records the session's data-derived
values (:mod:`avssl.train.finished`): ``memory_mb`` (the estimate, and ``peak_mb`` as measured
when it saved) and the skipped items are then those of the session that wrote the checkpoint;
``seconds`` stays this process's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from avssl.cli import ArgumentParser, json_line
from avssl.config import load_config
from avssl.config_naming import naming_config_file
from avssl.errors import AvsslError
from avssl.sigterm import terminated_as_interrupt
from avssl.train.checkpoint import checkpoint_config
from avssl.train.model_check import check_model_config  # noqa: F401 (re-exported)
from avssl.train.resume import finished_note
from avssl.train.resume_checks import load_resume
from avssl.train.run_dir import (  # noqa: F401 (re-exported)
    check_config_unedited,
    check_writable,
    clear_stale_temps,
    discard_failed_run,
    prepare_run_dir,
    run_lock,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point shared by ``train.py`` and ``avssl train``: :func:`run_training`, then its
    summary as the last stdout line (rank 0's); the exit code (``128 + signal`` when stopped)."""
    args = _parser().parse_args(argv)
    summary = run_training(
        args.config,
        args.overrides,
        resume=args.resume,
        run_dir=args.run_dir,
        progress=not args.no_progress,
        strict=args.strict,
    )
    from avssl.train.runtime import cleanup_distributed

    with terminated_as_interrupt():  # as during training: a SIGTERM here is one line, exit 143
        if int(os.environ.get("RANK", "0")) == 0:
            print(json_line(summary))
            sys.stdout.flush()
        cleanup_distributed()  # after rank 0's last line: torchrun ends every rank once one exits
    if summary["interrupted"]:
        return 128 + summary["signal"]
    return 0


def run_training(
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    resume: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    strict: bool = False,
) -> dict:
    """Train as ``train.py`` does, in this process, and return its summary: the dict
    ``train.py`` prints as its last stdout line (see the module docstring), not printed here.

    The library entry point of training: it checks the config, claims the run folder (a run
    that fails before its first checkpoint leaves none), trains, and leaves ``config.yaml``,
    ``metrics.jsonl``, ``last.pt`` and ``best.pt`` there, as ``train.py`` does. Under torchrun
    the caller leaves the process group after using the summary
    (:func:`avssl.train.runtime.cleanup_distributed`).

    Args:
        config: a YAML config file (None: the built-in default), as ``--config``.
        overrides: ``KEY=VALUE`` strings, as ``--set``.
        resume: a run folder (or its checkpoint) to continue exactly, as ``--resume``.
        run_dir: the run folder (new or empty), as ``--run-dir``; default
            ``train.runs_dir/NAME``.
        progress: draw progress bars on stderr.
        strict: a clip that cannot be decoded is an error, as ``--strict``.

    Returns:
        The summary; ``interrupted`` and ``signal`` tell a run stopped by Ctrl-C or SIGTERM.

    Raises:
        AvsslError: a bad config or run folder, unreadable data, a diverged run (the messages
            ``train.py`` prints as its ``error:`` line; they name the command-line flag that
            corresponds to the argument).
        KeyboardInterrupt: Ctrl-C, or SIGTERM (:class:`~avssl.errors.Terminated`), before the
            training loop began (within it, a signal stops the run cleanly: ``interrupted``).
        TypeError: ``overrides`` is a single string rather than a sequence of them.
    """
    if isinstance(overrides, str):
        raise TypeError(f"overrides: a sequence of KEY=VALUE strings, not one string {overrides!r}")
    args = argparse.Namespace(
        config=config, overrides=list(overrides), resume=resume, run_dir=run_dir,
        no_progress=not progress, strict=strict,
    )  # fmt: skip
    if args.resume and args.run_dir:
        raise AvsslError(
            "--run-dir: cannot be used with --resume (a resumed run continues in its own folder)"
        )
    if args.resume and args.config:
        raise AvsslError(
            "--config: cannot be used with --resume (the run's config is read from its "
            "checkpoint; change values with --set)"
        )
    # from here on a SIGTERM is a clean stop too: a folder claimed by then is cleared again;
    # a value of the --config file refused past load_config (the model's build) names the file
    with (
        naming_config_file(args.config, args.overrides),
        terminated_as_interrupt(),
        contextlib.ExitStack() as held,
    ):
        return _train(args, held)


def _train(args: argparse.Namespace, held: contextlib.ExitStack) -> dict:
    """Check the run, claim (or lock) its folder, train; the summary."""
    rank0 = int(os.environ.get("RANK", "0")) == 0
    resume, made_here, started_empty, note = None, False, False, None
    if args.resume:
        cfg, resume, ckpt = load_resume(args.resume, args.overrides)
        run_dir = ckpt.parent
        if rank0:  # one process trains a run at a time; a killed one may have left temp files
            held.enter_context(run_lock(run_dir))
            clear_stale_temps(run_dir)
        saved = checkpoint_config(resume)
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
        run_dir = Path(cfg.train.runs_dir) / cfg.name
    try:
        if rank0 and resume is None:
            # it clears what it made if stopped inside; from its return, the handler below does
            run_dir, made_here = prepare_run_dir(cfg, args.run_dir)
            started_empty = True  # prepare_run_dir hands out only a new or an empty folder
            held.enter_context(run_lock(run_dir))
        summary = None
        if note:  # nothing to train: the summary the checkpoint recorded, no data loaded
            from avssl.train.finished import finished_summary

            summary = finished_summary(cfg, saved, resume, run_dir, args.strict)
        if summary is None:  # heavy imports only once the arguments are valid
            from avssl.train.loop import train

            summary = train(
                cfg, run_dir, resume=resume, progress=not args.no_progress, strict=args.strict
            )
    except BaseException:
        # a run that failed before its first checkpoint (unreadable data, a non-finite loss, a
        # stop) leaves no folder behind (no files, in a folder the user made) that would block,
        # or be silently taken over by, the next run
        discard_failed_run(run_dir, made_here, started_empty)
        raise
    return summary
