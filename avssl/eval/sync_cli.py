"""``evaluate.py sync``: audio-visual offset estimation (see :mod:`avssl.eval.sync`).

usage::

    evaluate.py sync --checkpoint CKPT --video FILE [--max-offset 0.5]
    evaluate.py sync --checkpoint CKPT [--data MANIFEST] [--split test] [--max-offset 0.5]

On one video: the estimated offset (s, positive = audio lags) and its confidence. On a manifest
split (default: the data the checkpoint was trained on): every clip's audio is shifted by a
known random offset of the grid (seeded) and the estimate is scored; the result says how often
it lands within one video frame.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from avssl.cli import ArgumentParser, int_at_least, positive_float, positive_int
from avssl.cli_checkpoint import load_command_model
from avssl.errors import MediaError, skip_fields
from avssl.eval.cli import SUBCOMMANDS, add_common, add_strict, check_outputs, emit, use_data
from avssl.eval.sync_clip import (  # noqa: F401 (check_max_offset re-exported)
    DEFAULT_MAX_OFFSET,
    DEFAULT_TIMES,
    ClipSync,
    check_grid,
    check_max_offset,
)

_FP32_HINT = {"bf16": " (try --precision fp32)", "fp32": ""}


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate.py sync`` argument parser."""
    p = ArgumentParser(prog="evaluate.py sync", description=SUBCOMMANDS["sync"][1])
    add_common(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="estimate the offset of this file")
    src.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument(
        "--split", choices=("train", "val", "test"), help="manifest split (default test)"
    )
    p.add_argument(
        "--max-offset", type=positive_float, default=DEFAULT_MAX_OFFSET,
        help=f"largest shift searched (s; default {DEFAULT_MAX_OFFSET:g}, in whole frames); a "
        "positive offset_s means the audio lags the picture",
    )  # fmt: skip
    p.add_argument(
        "--times", type=int_at_least(1, 10_000), default=DEFAULT_TIMES,
        help=f"frame times averaged per clip (default {DEFAULT_TIMES})",
    )  # fmt: skip
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="default fp32")
    p.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    p.add_argument(
        "--seed", type=int_at_least(0), help="seed of the known shifts of a manifest (default 0)"
    )
    add_strict(p)
    return p


def manifest_only_flags(args: argparse.Namespace) -> list[str]:
    """The flags given that only a manifest run reads (``--split``, ``--seed``, ``--strict``)."""
    given = [("--split", args.split is not None), ("--seed", args.seed is not None)]
    return [flag for flag, on in [*given, ("--strict", args.strict)] if on]


def run_video(sync: ClipSync, args) -> dict:
    """The estimated offset of the ``--video`` file, its confidence and score curve (JSON).

    Args:
        sync: the model's offset search.
        args: the parsed ``sync`` arguments (``video``, ``max_offset``).

    Returns:
        ``offset_s``, ``at_edge`` (the best offset is the largest searched: the true one may
        lie beyond), ``confidence``, ``n_offsets``, ``n_times``, ``step_s``,
        ``max_offset_s`` (as asked), ``largest_offset_s`` (searched: whole frames),
        ``offsets_s``, ``curve`` and ``video``.

    Raises:
        MediaError: the file has no video or no audio stream, is too short for
            ``--max-offset``, or the model scores some offset NaN or infinite.
    """
    from avssl.data.media import clip_end, probe
    from avssl.eval.sync import NonFiniteCurve
    from avssl.eval.sync_long import SEGMENTED_FROM_S, segmented_estimate

    info = probe(args.video)
    if not info.has_video:
        raise MediaError(args.video, "no video stream")
    if not info.has_audio:
        raise MediaError(args.video, "no audio stream")
    # where both picture and sound exist, as a decode of the whole file ends
    end = clip_end(args.video, unknown=0.0)  # unknown (raw streams): decoded whole
    segmented = end >= SEGMENTED_FROM_S
    try:
        if segmented:
            est = segmented_estimate(sync, args.video, end, args.max_offset)
        else:
            frames, wave = sync.decode(args.video)
            est = sync.estimate(frames, wave, args.max_offset)
    except NonFiniteCurve as err:
        raise MediaError(args.video, f"{err}{_FP32_HINT[args.precision]}") from None
    if est is None:  # a long video's times keep a frame spare before its end
        need = sync.min_duration(args.max_offset) + (1 / sync.data.fps if segmented else 0.0)
        raise MediaError(
            args.video, f"too short for --max-offset {args.max_offset:g} (need {need:.2f} s)"
        )
    offset, confidence, curve, n_times = est
    at_edge = bool(abs(offset) >= np.abs(sync.offsets).max() - 1e-9)
    if at_edge:  # the curve may still be rising past the search's end
        print(
            f"note: the best offset, {offset:+g} s, is at the edge of the search; the true one "
            f"may be larger (a larger --max-offset than {args.max_offset:g} searches further)",
            file=sys.stderr,
        )
    return {
        "offset_s": offset,
        "at_edge": at_edge,
        "confidence": confidence,
        "n_offsets": len(sync.offsets),
        "n_times": n_times,
        "step_s": 1 / sync.data.fps,
        "max_offset_s": args.max_offset,
        "largest_offset_s": float(sync.offsets.max()),
        "offsets_s": sync.offsets.round(6).tolist(),
        "curve": curve.tolist(),
        "video": str(args.video),
    }


def run_manifest(sync: ClipSync, cfg, args) -> dict:
    """Offset accuracy on a manifest split whose audio is shifted by known offsets (JSON).

    Each row's shift is drawn from the offset grid (seeded by ``--seed``); ``offset_accuracy``
    is the share of estimates within one video frame of it, an estimate whose curve ties at
    its maximum scoring the share of the tied offsets that are (:func:`~avssl.eval.sync.
    tie_scores`). Unreadable rows are skipped (an error under ``--strict``), as are rows too
    short for the search and rows the model scores NaN or infinite.

    Args:
        sync: the model's offset search.
        cfg: the checkpoint's config (its data settings; ``--data`` replaces the manifest).
        args: the parsed ``sync`` arguments (``data``, ``split``, ``max_offset``, ``seed``,
            ``strict``, ``no_progress``).

    Returns:
        ``offset_accuracy``, ``exact_accuracy`` (within half a frame), ``mean_abs_error_s``,
        ``median_confidence``, ``n``, ``chance_accuracy``, ``ties`` ("share"), ``n_offsets``,
        ``step_s``, ``max_offset_s``, ``largest_offset_s``, ``split``, ``data`` (the manifest
        read), ``n_skipped`` and ``skipped``.

    Raises:
        MediaError: under ``--strict``, the first unreadable row (or row scored NaN).
        ManifestError: no row of the split is usable.
    """
    from avssl.data.manifest import read_manifest, resolve
    from avssl.data.source import manifest_path
    from avssl.errors import ManifestError
    from avssl.eval.sync import NonFiniteCurve, shift_audio, tie_scores

    use_data(cfg, args.data)
    manifest = manifest_path(cfg.data, progress=not args.no_progress)
    rows = read_manifest(manifest, args.split)
    rng = np.random.default_rng(args.seed)
    true = rng.choice(sync.offsets, size=len(rows))  # drawn for every row: stable across skips
    margin = 2 * args.max_offset  # candidate shift minus true shift spans +-2 max_offset
    step = 1 / sync.data.fps
    scores, confidences, skipped = [], [], []
    for row, d in zip(
        tqdm(rows, desc="sync", disable=args.no_progress, file=sys.stderr), true, strict=True
    ):
        try:
            frames, wave = sync.decode(
                resolve(manifest, row.visual), resolve(manifest, row.audio), row.start, row.duration
            )
        except MediaError as err:
            if args.strict:
                raise
            skipped.append({"id": row.id, "reason": str(err)})
            continue
        try:
            est = sync.estimate(frames, shift_audio(wave, float(d), sync.data.sample_rate), margin)
        except NonFiniteCurve as err:
            if args.strict:
                raise MediaError(
                    resolve(manifest, row.visual), f"{err}{_FP32_HINT[args.precision]}"
                ) from None
            skipped.append({"id": row.id, "reason": f"{err}{_FP32_HINT[args.precision]}"})
            continue
        if est is None:
            need = sync.min_duration(margin)
            why = f"shorter than {need:.2f} s, the least --max-offset {args.max_offset:g} needs"
            skipped.append({"id": row.id, "reason": why})
            continue
        scores.append(tie_scores(est[2], sync.offsets, float(d), step))
        confidences.append(est[1])
    if not scores:
        why = f" (first: {skipped[0]['reason']})" if skipped else ""
        raise ManifestError(
            f"{manifest}: split {args.split!r} has no usable clip of its {len(rows)}{why}"
        )
    k = len(sync.offsets)
    within, exact, abs_error = np.array(scores).mean(axis=0)
    result = {
        "offset_accuracy": float(within),
        "exact_accuracy": float(exact),
        "mean_abs_error_s": float(abs_error),
        "median_confidence": float(np.median(confidences)),
        "n": len(scores),
        # a uniform random guess lands within one step of a uniform true offset this often
        "chance_accuracy": (3 * k - 2) / k**2,
        "ties": "share",
        "n_offsets": k,
        "step_s": step,
        "max_offset_s": args.max_offset,
        "largest_offset_s": float(sync.offsets.max()),
        "split": args.split,
        "data": str(manifest),
        **skip_fields(skipped),
    }
    return result


def run(argv: list[str]) -> int:
    """Estimate offsets; the last stdout line is the JSON result."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.video and (ignored := manifest_only_flags(args)):
        parser.error(f"{', '.join(ignored)}: read for a manifest only (--data, or the "
                     "checkpoint's data), not with --video")  # fmt: skip
    args.split, args.seed = args.split or "test", args.seed or 0
    check_outputs(args)
    from avssl.eval.provenance import provenance, short_path
    from avssl.train.runtime import resolve_device

    if args.video:
        from avssl.data.media_checks import check_file

        check_file(args.video)  # a bad path fails before the model loads
    device = resolve_device(args.device, "--device")
    model, cfg, state = load_command_model(
        args.checkpoint, device, check=lambda c: check_grid(c, args)
    )
    sync = ClipSync(model, cfg, args, device)
    if args.video:
        result = run_video(sync, args)
    else:
        result = run_manifest(sync, cfg, args)
    result["checkpoint"] = state["path"]
    result.update(provenance(model, state, result.get("data")))
    # the video's name: estimates of two videos by one checkpoint otherwise shared a title
    what = f"video={short_path(args.video)}" if args.video else args.split
    emit(result, args, f"Synchronisation ({what})")
    return 0
