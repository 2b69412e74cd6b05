"""Offset search on a long video without decoding all of it.

``evaluate.py sync --video`` scores a handful of frame times (``--times``, 8 by default) against
audio windows shifted by up to ``--max-offset``: only a few seconds around each time are ever
read. A video longer than :data:`SEGMENTED_FROM_S` is therefore decoded one short stretch per
time (twice ``--max-offset`` and a window long), so memory stays that of a short clip and a
feature film takes as long as a trailer.
Each stretch starts on the frame grid (a whole number of frames from the file's start), so its
frames, and its audio wherever ``sample_rate / fps`` is whole, are those a decode of the whole
file gives; the curve is the mean over times, as :func:`avssl.eval.sync.sync_curve` makes it.
The times are spread up to a frame before the end (the decoded length of a whole file is
known only once decoded), so they may differ by up to a frame from a whole decode's.
"""

from __future__ import annotations

import math

import numpy as np

from avssl.data.media_checks import MAX_WINDOW_S
from avssl.errors import AvsslError

SEGMENTED_FROM_S = 60.0  # a video at least this long is decoded around its scored times only


def segmented_estimate(sync, path, duration: float, margin: float):
    """``(offset, confidence, curve, n_times)`` of a long video, or None when too short.

    Args:
        sync: the :class:`~avssl.eval.sync_clip.ClipSync` of the model.
        path: the video (with its audio track).
        duration: where both its picture and its sound end (s):
            :func:`avssl.data.media.clip_end`.
        margin: largest shift (s) the scored audio windows must fit for.

    Raises:
        MediaError: a stretch cannot be decoded.
    """
    from avssl.eval.sync import best_offset, frame_times, model_pair_scorer, sync_curve

    d, a = sync.data, sync.args
    # the last frame may end a little before the container's declared end: keep a frame spare
    times = frame_times(duration - 1 / d.fps, d.fps, d.window, margin, a.times)
    if times is None:
        return None
    reach = margin + d.window / 2 + 1 / d.fps  # audio reach either side of a frame time
    if 2 * reach > MAX_WINDOW_S:  # a stretch would exceed what one decode reads
        most = MAX_WINDOW_S / 2 - d.window / 2 - 1 / d.fps
        raise AvsslError(
            f"--max-offset {margin:g}: a long video is read {2 * reach:.0f} s around each "
            f"scored time, more than the {MAX_WINDOW_S:g} s one decode may read; it must be at "
            f"most {most:g} s"
        )
    total = np.zeros(len(sync.offsets))
    for t in times:
        start = max(0, math.floor((t - reach) * d.fps)) / d.fps  # on the frame grid
        end = min(duration, t + reach)
        frames, wave = sync.decode(path, None, start, end - start)
        scorer = model_pair_scorer(
            sync.model, frames, wave, d.fps, d.sample_rate, d.window, d.frame_size,
            sync.device, a.precision, a.batch_size,
        )  # fmt: skip
        total += sync_curve(scorer, np.array([t - start]), sync.offsets)
    curve = total / len(times)
    return (*best_offset(curve, sync.offsets), curve, len(times))
