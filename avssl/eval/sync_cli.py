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
from avssl.errors import AvsslError, MediaError, skip_fields
from avssl.eval.cli import SUBCOMMANDS, add_common, add_strict, check_outputs, emit, use_data


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate.py sync`` argument parser."""
    p = ArgumentParser(prog="evaluate.py sync", description=SUBCOMMANDS["sync"][1])
    add_common(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="estimate the offset of this file")
    src.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument(
        "--max-offset", type=positive_float, default=0.5,
        help="largest shift searched (s); a positive offset_s means the audio lags the picture",
    )  # fmt: skip
    p.add_argument(
        "--times", type=int_at_least(1, 10_000), default=8, help="frame times averaged per clip"
    )
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, help="seed of the known shifts (--data)"
    )
    add_strict(p)
    return p


def check_max_offset(max_offset: float, fps: float) -> None:
    """Refuse a ``--max-offset`` under one video frame: the grid steps by frames, so it would
    search the offset 0 alone (an estimate of 0 with confidence 0, whatever the clip).

    Args:
        max_offset: ``--max-offset`` (s).
        fps: the frame rate clips are decoded at (the checkpoint's ``data.fps``).

    Raises:
        AvsslError: naming the flag, the value and the minimum.
    """
    if max_offset * fps + 1e-6 < 1:  # the tolerance of offset_grid's floor
        raise AvsslError(
            f"--max-offset {max_offset:g}: less than one video frame; it must be at least "
            f"{1 / fps:g} s (1 / the checkpoint's data.fps {fps:g})"
        )


class ClipSync:
    """Offset search for decoded clips of one model (settings from its config)."""

    def __init__(self, model, cfg, args, device):
        from avssl.eval.sync import offset_grid

        self.model, self.data, self.args, self.device = model, cfg.data, args, device
        check_max_offset(args.max_offset, cfg.data.fps)
        self.offsets = offset_grid(args.max_offset, cfg.data.fps)

    def decode(self, path, audio_path=None, start=0.0, duration=None):
        """Decode a clip at the model's ``data.fps``, ``data.frame_size`` and ``data.sample_rate``.

        Args:
            path: a video (or a still image).
            audio_path: a separate audio file; by default the audio track of ``path``.
            start: clip start (s).
            duration: clip length (s); ``None`` reads to the end.

        Returns:
            ``(frames, wave)``: uint8 ``[T, S, S, 3]`` and float32 ``[N]`` mono, as
            :func:`~avssl.data.media.read_clip` returns them.

        Raises:
            MediaError: as :func:`~avssl.data.media.read_clip`.
        """
        from avssl.data.media import read_clip

        d = self.data
        return read_clip(path, d.fps, d.frame_size, d.sample_rate, audio_path, start, duration)

    def estimate(self, frames, wave, margin: float):
        """``(offset, confidence, curve, n_times)``, or None when the clip is too short.

        Args:
            frames: uint8 ``[T, H, W, 3]`` decoded at ``data.fps``.
            wave: float ``[N]`` mono audio at ``data.sample_rate``.
            margin: largest shift (s) the scored audio windows must fit for (see
                :func:`~avssl.eval.sync.frame_times`).

        Returns:
            The best offset (s), its confidence, the ``[K]`` curve over ``offsets`` and the
            number of frame times averaged.
        """
        from avssl.eval.sync import best_offset, frame_times, model_pair_scorer, sync_curve

        d, a = self.data, self.args
        duration = min(frames.shape[0] / d.fps, wave.shape[0] / d.sample_rate)
        times = frame_times(duration, d.fps, d.window, margin, a.times)
        if times is None:
            return None
        scorer = model_pair_scorer(
            self.model, frames, wave, d.fps, d.sample_rate, d.window, d.frame_size,
            self.device, a.precision, a.batch_size,
        )  # fmt: skip
        curve = sync_curve(scorer, times, self.offsets)
        return (*best_offset(curve, self.offsets), curve, len(times))

    def min_duration(self, margin: float) -> float:
        from avssl.eval.sync import min_clip_s

        return min_clip_s(self.data.fps, self.data.window, margin)


def run_video(sync: ClipSync, args) -> dict:
    """The estimated offset of the ``--video`` file, its confidence and score curve (JSON).

    Args:
        sync: the model's offset search.
        args: the parsed ``sync`` arguments (``video``, ``max_offset``).

    Returns:
        ``offset_s``, ``at_edge`` (the best offset is the largest searched: the true one may
        lie beyond), ``confidence``, ``n_offsets``, ``n_times``, ``step_s``,
        ``max_offset_s``, ``offsets_s``, ``curve`` and ``video``.

    Raises:
        MediaError: the file has no video or no audio stream, or is too short for
            ``--max-offset``.
    """
    from avssl.data.media import clip_end, probe
    from avssl.eval.sync_long import SEGMENTED_FROM_S, segmented_estimate

    info = probe(args.video)
    if not info.has_video:
        raise MediaError(args.video, "no video stream")
    if not info.has_audio:
        raise MediaError(args.video, "no audio stream")
    # where both picture and sound exist, as a decode of the whole file ends
    end = clip_end(args.video, unknown=0.0)  # unknown (raw streams): decoded whole
    if end >= SEGMENTED_FROM_S:
        est = segmented_estimate(sync, args.video, end, args.max_offset)
    else:
        frames, wave = sync.decode(args.video)
        est = sync.estimate(frames, wave, args.max_offset)
    if est is None:
        need = sync.min_duration(args.max_offset)
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
        "offsets_s": sync.offsets.round(6).tolist(),
        "curve": curve.tolist(),
        "video": str(args.video),
    }


def run_manifest(sync: ClipSync, cfg, args) -> dict:
    """Offset accuracy on a manifest split whose audio is shifted by known offsets (JSON).

    Each row's shift is drawn from the offset grid (seeded by ``--seed``); ``offset_accuracy``
    is the share of estimates within one video frame of it. Unreadable rows are skipped (an
    error under ``--strict``), as are rows too short for the search.

    Args:
        sync: the model's offset search.
        cfg: the checkpoint's config (its data settings; ``--data`` replaces the manifest).
        args: the parsed ``sync`` arguments (``data``, ``split``, ``max_offset``, ``seed``,
            ``strict``, ``no_progress``).

    Returns:
        ``offset_accuracy``, ``exact_accuracy`` (within half a frame), ``mean_abs_error_s``,
        ``median_confidence``, ``n``, ``chance_accuracy``, ``n_offsets``, ``step_s``,
        ``max_offset_s``, ``split``, ``data`` (the manifest read), ``n_skipped`` and
        ``skipped``.

    Raises:
        MediaError: under ``--strict``, the first unreadable row.
        ManifestError: no row of the split is usable.
    """
    from avssl.data.manifest import read_manifest, resolve
    from avssl.data.source import manifest_path
    from avssl.errors import ManifestError
    from avssl.eval.sync import shift_audio

    use_data(cfg, args.data)
    manifest = manifest_path(cfg.data, progress=not args.no_progress)
    rows = read_manifest(manifest, args.split)
    rng = np.random.default_rng(args.seed)
    true = rng.choice(sync.offsets, size=len(rows))  # drawn for every row: stable across skips
    margin = 2 * args.max_offset  # candidate shift minus true shift spans +-2 max_offset
    step = 1 / sync.data.fps
    errors, confidences, skipped = [], [], []
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
        est = sync.estimate(frames, shift_audio(wave, float(d), sync.data.sample_rate), margin)
        if est is None:
            need = sync.min_duration(margin)
            skipped.append({"id": row.id, "reason": f"shorter than {need:.2f} s"})
            continue
        errors.append(est[0] - d)
        confidences.append(est[1])
    if not errors:
        why = f" (first: {skipped[0]['reason']})" if skipped else ""
        raise ManifestError(
            f"{manifest}: split {args.split!r} has no usable clip of its {len(rows)}{why}"
        )
    k = len(sync.offsets)
    err = np.abs(np.array(errors))
    result = {
        "offset_accuracy": float(np.mean(err <= step + 1e-6)),
        "exact_accuracy": float(np.mean(err <= step / 2)),
        "mean_abs_error_s": float(err.mean()),
        "median_confidence": float(np.median(confidences)),
        "n": len(errors),
        # a uniform random guess lands within one step of a uniform true offset this often
        "chance_accuracy": (3 * k - 2) / k**2,
        "n_offsets": k,
        "step_s": step,
        "max_offset_s": args.max_offset,
        "split": args.split,
        "data": str(manifest),
        **skip_fields(skipped),
    }
    return result


def run(argv: list[str]) -> int:
    """Estimate offsets; the last stdout line is the JSON result."""
    args = build_parser().parse_args(argv)
    check_outputs(args)
    from avssl.eval.provenance import provenance
    from avssl.train.checkpoint import load_model
    from avssl.train.runtime import resolve_device

    if args.video:
        from avssl.data.media_checks import check_file

        check_file(args.video)  # a bad path fails before the model loads
    device = resolve_device(args.device, "--device")
    model, cfg, state = load_model(args.checkpoint, device)
    sync = ClipSync(model, cfg, args, device)
    if args.video:
        result = run_video(sync, args)
    else:
        result = run_manifest(sync, cfg, args)
    result["checkpoint"] = state["path"]
    result.update(provenance(model, state, result.get("data")))
    emit(result, args, "Synchronisation" + (" (video)" if args.video else f" ({args.split})"))
    return 0
