"""Audio-visual offset estimation by searching a grid of shifts (SyncNet-style).

Chung & Zisserman, "Out of time: automated lip sync in the wild" (ACCV workshops 2016),
https://www.robots.ox.ac.uk/~vgg/publications/2016/Chung16a/chung16a.pdf: score the frames
against the audio shifted by every offset of a grid, average over several moments of the clip,
take the best offset; the confidence is how far the best score stands above the median.

Sign convention: a positive offset ``d`` means the audio **lags** the video: the sound of what
is seen at time ``t`` is heard at ``t + d``. The search scores frame ``t`` against the audio
window centred on ``t + d``; :func:`shift_audio` with ``d > 0`` delays a waveform by ``d``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avssl.errors import AvsslError
from avssl.eval.embed import frames_to_input
from avssl.train.runtime import autocast

# pair_score(t_frame [M], t_audio [M]) -> scores [M]: frame at t_frame vs audio centred on t_audio.
PairScore = Callable[[np.ndarray, np.ndarray], np.ndarray]

MAX_OFFSETS = 10_000  # offsets one search may score (200 s either way at 25 fps)
MAX_PAIRS = 1_000_000  # (frame, audio) pairs one clip's search may score: times x offsets


def check_pairs(times: int, n_offsets: int) -> None:
    """Refuse a search of more than :data:`MAX_PAIRS` pairs per clip: ``--times`` and the grid
    are each bounded, but their product (1e8 pairs at both bounds) would build gigabytes of
    index arrays before the first model call and then take days.

    Raises:
        AvsslError: naming both flags.
    """
    if times * n_offsets > MAX_PAIRS:
        raise AvsslError(
            f"--times {times} x {n_offsets} offsets (--max-offset): {times * n_offsets} pairs "
            f"to score per clip, more than {MAX_PAIRS}; lower --times or --max-offset"
        )


def offset_grid(max_offset: float, fps: float) -> np.ndarray:
    """Offsets ``k / fps`` with ``|k / fps| <= max_offset``: float ``[2K + 1]`` s, ascending.

    Args:
        max_offset: largest shift searched (s).
        fps: video frame rate; the grid step is one frame.

    Raises:
        AvsslError: the grid would hold more than :data:`MAX_OFFSETS` offsets (``1e308`` would
            otherwise overflow, and a merely huge grid would take hours and any memory).
    """
    k = np.floor(max_offset * fps + 1e-6)
    if not 2 * k + 1 <= MAX_OFFSETS:  # also nan
        most = (MAX_OFFSETS - 1) // 2 / fps
        raise AvsslError(
            f"--max-offset {max_offset:g}: more than {MAX_OFFSETS} offsets of one frame at "
            f"{fps:g} fps to search; it must be at most {most:g} s"
        )
    k = int(k)
    return np.arange(-k, k + 1) / fps


def frame_times(
    duration: float, fps: float, window: float, margin: float, n: int = 8
) -> np.ndarray | None:
    """Up to ``n`` evenly spread frame times ``t`` whose audio windows fit for every shift.

    Each time is the middle of a frame's display interval, ``(i + 0.5) / fps``: training pairs
    frame ``i`` with audio centred anywhere in ``[i / fps, (i + 1) / fps)`` (the frame showing at
    a uniformly drawn time), so a trained model's score of frame ``i`` peaks with the audio
    centred half a frame after ``i / fps``; centring it on ``i / fps`` put the true offset
    between two grid steps. Every audio window centred on ``t + s`` with ``|s| <= margin`` lies
    inside ``[0, duration]``.

    Args:
        duration: clip length (s).
        fps: video frame rate.
        window: audio window length (s).
        margin: largest shift (s) every audio window must still fit for.
        n: how many times at most (fewer when frames are scarce).

    Returns:
        float ``[n']`` times in seconds, or None when the clip is too short.
    """
    lo = _first_frame(fps, window, margin)
    hi = int(np.floor((duration - margin - window / 2) * fps - 0.5 + 1e-6))
    hi = min(hi, int(round(duration * fps)) - 1)  # an existing frame
    if hi < lo:
        return None
    idx = np.unique(np.round(np.linspace(lo, hi, n)).astype(int))
    return (idx + 0.5) / fps


def _first_frame(fps: float, window: float, margin: float) -> int:
    """The first frame whose middle keeps every window shifted by up to ``margin`` inside."""
    return int(np.ceil((margin + window / 2) * fps - 0.5 - 1e-6))


def min_clip_s(fps: float, window: float, margin: float) -> float:
    """The shortest clip :func:`frame_times` finds a time in (its first frame's middle, then the
    same reach after it)."""
    return (_first_frame(fps, window, margin) + 0.5) / fps + margin + window / 2


def sync_curve(pair_score: PairScore, times: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean score over ``times`` of every offset: float ``[K]``, one scorer call in total.

    Args:
        pair_score: the scorer, called once on all ``M * K`` (frame, audio) time pairs.
        times: ``[M]`` frame times (s), e.g. from :func:`frame_times`.
        offsets: ``[K]`` audio shifts (s), e.g. from :func:`offset_grid`.
    """
    tf = np.tile(times, len(offsets))
    ta = tf + np.repeat(offsets, len(times))
    return np.asarray(pair_score(tf, ta), dtype=np.float64).reshape(len(offsets), -1).mean(axis=1)


class NonFiniteCurve(AvsslError):
    """The model scored some offsets NaN or infinite (an overflow, e.g. under bf16)."""


def best_offset(curve: np.ndarray, offsets: np.ndarray) -> tuple[float, float]:
    """``(offset, confidence)``: the arg-max offset and ``max - median`` of the curve.

    Among equal maxima (a flat curve: silent or constant sound) the offset nearest 0 wins, so a
    tie says "in sync" rather than the most negative offset searched; of two as near, ``-d`` and
    ``+d``, the negative one (the first in ``offsets``, which ascend).

    Args:
        curve: ``[K]`` mean scores from :func:`sync_curve`.
        offsets: ``[K]`` the offsets (s) they were scored at.

    Raises:
        NonFiniteCurve: the curve holds a NaN or an infinity (its maximum would mean nothing).
    """
    bad = int((~np.isfinite(curve)).sum())
    if bad:
        raise NonFiniteCurve(
            f"the model's scores are not finite (NaN or infinity) at {bad} of {len(curve)} offsets"
        )
    top = np.flatnonzero(curve == curve.max())
    i = int(top[np.argmin(np.abs(offsets[top]))])
    return float(offsets[i]), float(curve[i] - np.median(curve))


def tie_scores(
    curve: np.ndarray, offsets: np.ndarray, true: float, step: float
) -> tuple[float, float, float]:
    """How one estimate scores against the true offset, each measure the mean over the offsets
    tied at the curve's maximum (the expected score of a maximum drawn among them, as
    ``pointing`` scores tied pixels): a flat curve then scores exactly a uniform guess's
    chance, where :func:`best_offset`'s choice of the tie nearest 0 would earn it credit.

    Args:
        curve: ``[K]`` finite mean scores from :func:`sync_curve`.
        offsets: ``[K]`` the offsets (s) they were scored at.
        true: the known offset (s).
        step: one video frame (s).

    Returns:
        ``(within one frame, within half a frame, absolute error in s)``.
    """
    err = np.abs(offsets[curve == curve.max()] - true)
    return float(np.mean(err <= step + 1e-6)), float(np.mean(err <= step / 2)), float(err.mean())


def shift_audio(wave: Tensor, offset: float, sample_rate: int) -> Tensor:
    """Delay (``offset > 0``) or advance float ``[N]`` audio by ``|offset|`` s, zero-filled.

    Args:
        wave: float ``[N]`` mono audio.
        offset: shift (s), rounded to whole samples.
        sample_rate: rate of ``wave`` (Hz).

    Returns:
        float ``[N]``, a new tensor.
    """
    s = int(round(offset * sample_rate))
    if s == 0:
        return wave.clone()
    if s > 0:
        return F.pad(wave[: max(wave.shape[0] - s, 0)], (s, 0))[: wave.shape[0]]
    return F.pad(wave[-s:], (0, min(-s, wave.shape[0])))[: wave.shape[0]]


def window_at(wave: Tensor, centre: float, window: float, sample_rate: int) -> Tensor:
    """The ``window``-s stretch of float ``[N]`` audio centred on ``centre`` s, ``[n]``.

    Args:
        wave: float ``[N]`` mono audio, ``N >= n``.
        centre: centre of the window (s); a window reaching past either end is moved inside.
        window: window length (s), ``n = round(window * sample_rate)``.
        sample_rate: rate of ``wave`` (Hz).
    """
    n = int(round(window * sample_rate))
    i = int(round((centre - window / 2) * sample_rate))
    i = max(0, min(i, wave.shape[0] - n))
    return wave[i : i + n]


def model_pair_scorer(
    model,
    frames: Tensor,
    wave: Tensor,
    fps: float,
    sample_rate: int,
    window: float,
    frame_size: int,
    device="cpu",
    precision: str = "fp32",
    batch_size: int = 64,
) -> PairScore:
    """A :data:`PairScore` from a model's ``score`` on one decoded clip.

    Args:
        model: an :class:`~avssl.models.base.AVModel`.
        frames: uint8 ``[T, H, W, 3]`` decoded at ``fps``.
        wave: float ``[N]`` mono audio at ``sample_rate``.
        fps: frame rate of ``frames``.
        sample_rate: rate of ``wave`` (the model's).
        window: the model's audio window (s).
        frame_size: the model's input side length.
        device: where the model runs.
        precision: ``fp32`` or ``bf16``.
        batch_size: pairs per forward pass.

    Returns:
        ``score(t_frame [M], t_audio [M]) -> [M]``: the model's score of the frame showing at
        each ``t_frame`` against the audio window centred on each ``t_audio`` (float32 numpy).
    """
    model.eval()
    device = torch.device(device)

    def score(tf: np.ndarray, ta: np.ndarray) -> np.ndarray:
        fi = np.minimum(np.floor(tf * fps + 1e-6).astype(int), frames.shape[0] - 1)
        uniq, inv = np.unique(fi, return_inverse=True)
        imgs = frames_to_input(frames[torch.as_tensor(uniq)], frame_size)
        out = []
        with torch.no_grad():
            for lo in range(0, len(tf), batch_size):
                sl = slice(lo, lo + batch_size)
                f = imgs[torch.as_tensor(inv[sl])].to(device)
                a = torch.stack([window_at(wave, t, window, sample_rate) for t in ta[sl]])
                with autocast(precision, device):
                    out.append(model.score(f, a.to(device)).float().cpu())
        return torch.cat(out).numpy()

    return score
