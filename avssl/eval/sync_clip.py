"""The offset search of one model on decoded clips (:mod:`avssl.eval.sync`), for
``evaluate.py sync`` (:mod:`avssl.eval.sync_cli`): its grid of shifts, checked against the
flags, and the scores of a clip's frames against its shifted audio."""

from __future__ import annotations

from avssl.errors import AvsslError

DEFAULT_MAX_OFFSET = 0.5  # --max-offset (s)
DEFAULT_TIMES = 8  # --times: frame times averaged per clip


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


def check_grid(cfg, args):
    """The offset grid of ``--max-offset`` and ``--times`` at the checkpoint's ``data.fps``.

    Args:
        cfg: the checkpoint's config.
        args: the parsed ``sync`` arguments (``max_offset``, ``times``).

    Returns:
        float ``[K]`` offsets (s), as :func:`~avssl.eval.sync.offset_grid`.

    Raises:
        AvsslError: a ``--max-offset`` under a frame, or too many offsets or pairs.
    """
    from avssl.eval.sync import check_pairs, offset_grid

    check_max_offset(args.max_offset, cfg.data.fps)
    offsets = offset_grid(args.max_offset, cfg.data.fps)
    check_pairs(args.times, len(offsets))
    return offsets


class ClipSync:
    """Offset search for decoded clips of one model (settings from its config)."""

    def __init__(self, model, cfg, args, device):
        self.model, self.data, self.args, self.device = model, cfg.data, args, device
        self.offsets = check_grid(cfg, args)

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
        """The shortest clip (s) :meth:`estimate` scores with this ``margin`` (s)."""
        from avssl.eval.sync import min_clip_s

        return min_clip_s(self.data.fps, self.data.window, margin)
