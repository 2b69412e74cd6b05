"""``evaluate.py avc``: held-out correspondence accuracy against easy and hard negatives.

The metrics are :func:`avssl.eval.avc.avc_metrics`; the decision threshold is the one stored
in the checkpoint (chosen on validation by ``train.py``), or chosen anew on a split of the
checkpoint's own training data (``--recalibrate``; on val whenever ``--cohort`` or, for a
model whose threshold is calibrated, ``--audio-tta`` move the scores, or the checkpoint was
saved before any validation chose one; a two-way head keeps its own rule under
``--audio-tta``). Evaluated on ``--split val``, the threshold chosen on val is a validation
figure, as ``train.py`` reports it; the test split never takes part in a choice.
"""

from __future__ import annotations

from avssl.cli import ArgumentParser, int_at_least
from avssl.cli_checkpoint import load_command_model
from avssl.config_checks import SIZE_LIMIT
from avssl.errors import AvsslError
from avssl.eval.cli import (
    SUBCOMMANDS,
    add_adapt,
    add_common,
    add_strict,
    add_tta,
    apply_tta,
    check_outputs,
    emit,
    skip_report,
    use_data,
)

CALIBRATION_ROWS = 2000  # a random part of a large split is enough to place one threshold
COHORT_TOP = 200  # chosen on the AV-Digits validation voices (README)


def run(argv: list[str]) -> int:
    """``evaluate.py avc --checkpoint CKPT [--data MANIFEST] [--split test] [--recalibrate val]
    [--cohort N [--cohort-top K]] [--audio-tta R] [--adapt-bn]``."""
    p = ArgumentParser(prog="evaluate.py avc", description=SUBCOMMANDS["avc"][1])
    add_common(p)
    p.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument(  # bounded as train.val_windows is
        "--windows", type=int_at_least(1, SIZE_LIMIT), default=4, help="windows per clip"
    )
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument(
        "--recalibrate", choices=("val", "train"),
        help="choose the threshold anew on this split of the checkpoint's own training data "
        f"(at most {CALIBRATION_ROWS} rows; default: the threshold stored in the checkpoint)",
    )  # fmt: skip
    p.add_argument(
        "--cohort", type=int_at_least(0), default=0,
        help="centre each score by its sound's best scores against this many training pictures "
        "(default 0: off); the threshold is then recalibrated (on val unless --recalibrate "
        "says)",
    )  # fmt: skip
    p.add_argument(
        "--cohort-top", type=int_at_least(1),
        help=f"best cohort scores averaged (default: {COHORT_TOP} or the whole cohort if smaller)",
    )  # fmt: skip
    add_tta(p)
    add_adapt(p)
    add_strict(p)
    args = p.parse_args(argv)
    check_outputs(args)
    if args.cohort == 1:  # the training split is read like any other: two clips at least
        raise AvsslError("--cohort 1: a cohort is at least 2 training pictures (0: off)")
    if args.cohort_top is not None and args.cohort_top > args.cohort:
        off = " (off)" if not args.cohort else ""
        raise AvsslError(f"--cohort-top {args.cohort_top}: at most --cohort {args.cohort}{off}")

    import copy

    from avssl.data.source import load_split
    from avssl.eval.avc import avc_metrics, calibrate_threshold, score_pairs
    from avssl.eval.provenance import provenance
    from avssl.eval.score_norm import cohort_codes
    from avssl.train.runtime import resolve_device

    device = resolve_device(args.device, "--device")
    model, cfg, state = load_command_model(args.checkpoint, device)
    tta = apply_tta(model, args)  # scores move: a calibrated threshold is chosen anew (below)
    own = copy.deepcopy(cfg.data)  # the training data: cohort and calibration come from it
    use_data(cfg, args.data)
    norm = {"batch_size": cfg.train.batch_size}
    if args.cohort:  # before the evaluated split: a --cohort-top too large fails early
        pictures = load_split(
            own, "train", train=False, seed=cfg.train.seed + 3000, sample=args.cohort,
            progress=not args.no_progress,
        )  # fmt: skip
        if args.cohort_top is not None and args.cohort_top > len(pictures):
            raise AvsslError(
                f"--cohort-top {args.cohort_top}: the cohort holds {len(pictures)} training "
                f"clips (--cohort {args.cohort}); at most {len(pictures)}"
            )
        top = args.cohort_top or min(COHORT_TOP, len(pictures))
        norm.update(
            cohort=cohort_codes(model, pictures, device, args.precision, cfg.train.batch_size),
            cohort_top=top,
        )
    ds = load_split(
        cfg.data, args.split, train=False, windows_per_clip=args.windows,
        seed=cfg.train.seed + 2000, progress=not args.no_progress,
    )  # fmt: skip
    skips = skip_report(ds.store, args.strict)
    threshold, source = float(model.decision_threshold), "checkpoint"
    # a last.pt saved before the run's first validation holds the initial threshold, never
    # chosen: it is chosen on val here, as train.py would have
    uncalibrated = model.needs_calibration and "best" in state and state["best"] is None
    # a last.pt saved on a stop holds the threshold of the last validation, not of its weights
    chosen_at = state.get("threshold_step") if model.needs_calibration else None
    stale = chosen_at is not None and chosen_at != state.get("step")
    # a two-way head's own rule (logit difference > 0) stays meaningful for the mean of its
    # logits over speed views; a cohort's centring moves every method's scores
    moved = args.cohort or (tta and model.needs_calibration)
    calib_split = args.recalibrate or ("val" if moved or uncalibrated or stale else None)
    if calib_split:
        calib = load_split(
            own, calib_split, train=False, windows_per_clip=cfg.train.val_windows,
            seed=cfg.train.seed + 1000, sample=CALIBRATION_ROWS, progress=not args.no_progress,
        )  # fmt: skip
        threshold = calibrate_threshold(score_pairs(model, calib, device, args.precision, **norm))
        source = f"{calib_split} ({len(calib.store)} rows)"
        if uncalibrated and not args.recalibrate:
            source += "; the checkpoint was saved before its first validation"
        elif stale and not args.recalibrate:
            source += f"; its threshold was chosen at step {chosen_at}, not its {state['step']}"
    adapt = {}
    if args.adapt_bn:  # after calibration: the seen voices keep their own statistics
        from avssl.eval.adapt_bn import adapt_on_waves, centre_waves

        waves = centre_waves(ds.store)
        adapt = adapt_on_waves(model, waves, device, args.precision, cfg.train.batch_size)
    scores = score_pairs(model, ds, device, args.precision, **norm)
    result = avc_metrics(scores, threshold)
    result.update(split=args.split, n_clips=len(ds.store), windows=args.windows)
    result.update(threshold_from=source, checkpoint=state["path"], **tta)
    result.update(**adapt, **skips, **provenance(model, state, ds.store.manifest))
    if args.cohort:
        result.update(cohort=len(pictures), cohort_top=top)
    emit(result, args, f"AVC accuracy ({args.split})")
    return 0
