"""The span of a clip decoded on demand, measured from headers as preloading would decode it.

A :class:`~avssl.data.dataset.ClipStore` that decodes on demand only probes its media up front.
These helpers turn the headers into the rows :func:`~avssl.data.media.read_clip` (preloading,
the shard cache) would keep and the lengths it would decode, so that every loading mode keeps
and skips the same rows and the :class:`~avssl.data.pairs.PairSampler` draws the same times.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from avssl.data import media
from avssl.data.manifest import Row
from avssl.data.media_checks import TOLERANCE_S, secs
from avssl.data.video_io import check_start, first_frame_s
from avssl.errors import MediaError

MediaPair = tuple[Path, Path | None]


@dataclass(frozen=True)
class Probed:
    """Headers of one (video, audio) pair.

    Attributes:
        end: :func:`~avssl.data.media.clip_end`, where read_clip stops (``inf``: not declared).
        first: :func:`~avssl.data.video_io.first_frame_s` of the video (``None``: a still
            image, or no declared start).
        audio_start: where the sound starts (:func:`~avssl.data.media.clip_bounds`), in
            ``sound``, the file holding it.
    """

    end: float
    first: tuple[float, float] | None
    audio_start: float | None = None
    sound: Path | None = None


def probe_pairs(pairs: list[MediaPair], progress: bool) -> dict[MediaPair, Probed | MediaError]:
    """:class:`Probed` headers of each distinct media pair (a MediaError in its place), probed
    two at a time."""

    def one(paths: MediaPair) -> Probed | MediaError:
        try:
            end, audio_start = media.clip_bounds(*paths, unknown=math.inf)
            return Probed(end, first_frame_s(paths[0]), audio_start, paths[1] or paths[0])
        except MediaError as err:
            return err

    pairs = list(dict.fromkeys(pairs))
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = tqdm(pool.map(one, pairs), total=len(pairs), desc="probe",
                     disable=not progress, file=sys.stderr)  # fmt: skip
        return dict(zip(pairs, found, strict=True))


def decoded_span(
    row: Row, video: Path, probed: Probed | MediaError, fps: float, sample_rate: int
) -> tuple[int, int, float]:
    """What read_clip would decode of ``row``, without decoding it.

    Args:
        row: a manifest row.
        video: its video (or image) file, named in errors.
        probed: the headers of its media (:func:`probe_pairs`).
        fps: frame rate clips are decoded at.
        sample_rate: audio rate clips are decoded at (Hz).

    Returns:
        ``(T, N, seconds)``: the ``T = round(d * fps)`` frames and ``N = round(d * sample_rate)``
        samples read_clip decodes for a row spanning ``d`` s, and the span a preloaded clip
        has, ``min(T / fps, N / sample_rate)``.

    Raises:
        MediaError: read_clip would refuse the row (it is skipped in every loading mode).
    """
    if isinstance(probed, MediaError):
        raise probed
    end = probed.end
    if row.end is None:
        if math.isinf(end):
            raise MediaError(video, "unknown duration: pass a duration")
        if row.start >= end:
            raise MediaError(video, f"clip start {row.start:.2f} s is beyond the end ({end:.2f} s)")
        span = end - row.start
    elif row.end > end + TOLERANCE_S:  # read_clip refuses such a row too (it pads less)
        raise MediaError(video, f"ends at {end:.2f} s, before the row's end {row.end:.2f} s")
    else:
        span = row.end - row.start
    if probed.first is not None:
        first, frame_s = probed.first
        check_start(video, first, row.start, frame_s)
    if probed.audio_start is not None and probed.audio_start > row.start + TOLERANCE_S:
        start = secs(probed.audio_start)  # read_audio refuses it; preloading skips the row
        raise MediaError(
            probed.sound or video, f"audio starts at {start} s, after the window start "
            f"{secs(row.start)} s"
        )  # fmt: skip
    n_frames, n_samples = round(span * fps), round(span * sample_rate)
    return n_frames, n_samples, min(n_frames / fps, n_samples / sample_rate)
