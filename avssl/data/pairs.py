"""Pair sampling for audio-visual correspondence.

A *positive* is the frame at time ``t`` of a clip with the audio window centred on ``t`` of the
same clip (with ``jitter`` > 0, centred up to ``jitter * window / 2`` from ``t``). An *easy
negative* takes the audio of another clip. A *hard* (synchronisation) negative takes the audio
of the same clip centred on ``t'`` with ``|t' - t| >= min_shift``. Positives and easy negatives
are Look, Listen and Learn's (https://arxiv.org/abs/1705.08168), whose positive audio is any
1-s clip overlapping the frame (``jitter`` 1); the time-shifted negatives are the "hard
negatives" of AVTS (https://arxiv.org/abs/1807.00230) and of Owens and Efros's multisensory
features (https://arxiv.org/abs/1804.03641).

Every draw is a pure function of ``(seed, epoch, index)``, so sampling is deterministic, needs no
state to resume, and gives the same pairs in any ``DataLoader`` worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# The audio entries of a training item: the positive, the easy negative, the hard negative (the
# easy one when the clip has no room for a shift) and the binary objectives' negative.
AUDIO_KEYS = ("audio", "audio_easy", "audio_hard", "audio_neg")
# Rounding slack (s): a clip exactly window + min_shift long (2 s at the defaults) has room for
# a hard negative, at its other end.
_EPS = 1e-9


def centre_range(duration: float, window: float) -> tuple[float, float]:
    """Smallest and largest window centre (s) that keep a ``window``-s window inside the clip.

    Args:
        duration: clip length in seconds.
        window: window length in seconds.
    """
    half = window / 2
    return half, duration - half


def frame_time(rng: np.random.Generator, duration: float, window: float, min_shift: float) -> float:
    """A centre ``t`` that leaves room for a hard negative when the clip allows one.

    Args:
        rng: the item's random generator.
        duration: clip length in seconds.
        window: window length in seconds (``t`` stays in :func:`centre_range`).
        min_shift: smallest shift in seconds of a hard negative from ``t``.

    Returns:
        ``t`` in seconds from the clip's start, uniform over the centres that leave room for a
        hard negative, or over all centres when the clip is too short for one.
    """
    lo, hi = centre_range(duration, window)
    m = min_shift
    if duration - window < m - _EPS or hi - lo >= 2 * m:
        return float(rng.uniform(lo, hi))
    # Valid centres are [lo, hi - m] U [lo + m, hi]; pick from their union uniformly.
    left, right = max(0.0, hi - m - lo), max(0.0, hi - (lo + m))
    if left + right <= _EPS:  # a clip exactly window + min_shift long: only its two ends
        return float(lo if rng.random() < 0.5 else hi)
    u = rng.uniform(0, left + right)
    return float(lo + u) if u < left else float(lo + m + (u - left))


def shifted_time(
    rng: np.random.Generator, duration: float, window: float, min_shift: float, t: float
) -> float:
    """A hard negative's centre, at least ``min_shift`` s from ``t``; NaN when none fits.

    Args:
        rng: the item's random generator.
        duration: clip length in seconds.
        window: window length in seconds (the centre stays in :func:`centre_range`).
        min_shift: smallest distance in seconds from ``t``.
        t: the positive's centre in seconds.
    """
    lo, hi = centre_range(duration, window)
    m = min_shift
    left = max(0.0, (t - m) - lo)
    right = max(0.0, hi - (t + m))
    if left + right <= _EPS:  # at most one centre fits, exactly min_shift away
        if t - m >= lo - _EPS:
            return float(lo)
        return float(hi) if t + m <= hi + _EPS else float("nan")
    u = rng.uniform(0, left + right)
    return float(lo + u) if u < left else float(t + m + (u - left))


def positive_time(
    rng: np.random.Generator, t: float, duration: float, window: float, jitter: float
) -> float:
    """The centre of the positive's audio window for the frame at ``t``.

    Args:
        rng: the item's random generator (not drawn from when ``jitter`` is 0).
        t: the frame time (s).
        duration: clip length in seconds.
        window: window length in seconds.
        jitter: largest offset from ``t`` as a share of half the window: 0 centres the window on
            the frame; 1 draws any window that holds the frame (Look, Listen and Learn's
            positives: a 1-s clip overlapping the frame).

    Returns:
        a centre uniform over those within ``jitter * window / 2`` of ``t`` that keep the window
        inside the clip.
    """
    if jitter <= 0:
        return t
    lo, hi = centre_range(duration, window)
    half = jitter * window / 2
    return float(rng.uniform(max(lo, t - half), min(hi, t + half)))


@dataclass(frozen=True)
class Pair:
    """One sampled item: a frame time plus its positive, easy and hard negative audio.

    Times are window centres in seconds, relative to the clip's own start; ``audio_t`` is the
    positive's (``t`` unless the sampler jitters it).
    """

    clip: int
    t: float
    easy_clip: int
    easy_t: float
    hard_t: float
    neg_hard: bool  # which negative the binary objectives use for this item
    audio_t: float


class PairSampler:
    """Draws :class:`Pair` items over clips of the given durations.

    Args:
        durations: seconds of each clip (usable span, ``end - start``).
        window: audio window length in seconds (frames are taken at the window centre).
        min_shift: smallest shift in seconds of a hard negative.
        hard_fraction: probability that ``neg_hard`` is True for an item.
        seed: base seed.
        excluded: optional predicate ``excluded(frame_clip, audio_clip) -> bool``, True when
            clip ``audio_clip``'s sound is no mismatch for clip ``frame_clip``'s picture: the
            picture shows what it sounds like (e.g. an AV-Digits canvas holding the spoken
            digit), or the two clips share a media file. Easy negatives are then drawn among
            the clips it is False for (up to 64 draws, then any other clip): real mismatches.
        jitter: the positive's window offset from its frame (:func:`positive_time`; 0: centred).

    Item ``index`` refers to clip ``index % len(durations)``, so a dataset of
    ``k * len(durations)`` items visits every clip ``k`` times per epoch.
    """

    def __init__(
        self,
        durations: Sequence[float],
        window: float,
        min_shift: float,
        hard_fraction: float = 0.5,
        seed: int = 0,
        excluded=None,
        jitter: float = 0.0,
    ):
        if len(durations) < 2:
            raise ValueError("pair sampling needs at least two clips (easy negatives)")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.window = float(window)
        self.min_shift = float(min_shift)
        self.hard_fraction = float(hard_fraction)
        self.seed = int(seed)
        self.excluded = excluded
        self.jitter = float(jitter)
        span = self.durations - self.window
        if (span < 0).any():
            bad = int(np.argmin(span))
            raise ValueError(f"clip {bad} ({self.durations[bad]:.2f} s) is shorter than the window")

    def __len__(self) -> int:
        return len(self.durations)

    def sample(self, index: int, epoch: int = 0) -> Pair:
        """The pair for ``index`` in ``epoch`` (deterministic).

        Args:
            index: item index; the frame's clip is ``index % len(durations)``.
            epoch: training epoch, which changes the draw.
        """
        n = len(self.durations)
        clip = index % n
        rng = np.random.default_rng([self.seed, epoch & 0x7FFFFFFF, index])
        d = float(self.durations[clip])
        t = frame_time(rng, d, self.window, self.min_shift)
        easy_clip = int((clip + rng.integers(1, n)) % n)
        if self.excluded is not None:
            for _ in range(64):
                if not self.excluded(clip, easy_clip):
                    break
                easy_clip = int((clip + rng.integers(1, n)) % n)
        lo, hi = centre_range(float(self.durations[easy_clip]), self.window)
        easy_t = float(rng.uniform(lo, hi))
        hard_t = shifted_time(rng, d, self.window, self.min_shift, t)
        neg_hard = bool(rng.random() < self.hard_fraction) and not np.isnan(hard_t)
        # drawn last: without jitter every earlier draw, and so every pair, is as before
        audio_t = positive_time(rng, t, d, self.window, self.jitter)
        return Pair(clip, t, easy_clip, easy_t, hard_t, neg_hard, audio_t)


def check_audio_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """``keys`` as a tuple, each one of :data:`AUDIO_KEYS` and ``audio`` among them."""
    keys = tuple(keys)
    unknown = [k for k in keys if k not in AUDIO_KEYS]
    if unknown or "audio" not in keys:
        raise ValueError(f"audio keys {keys}: need 'audio' and only {AUDIO_KEYS}")
    return keys


def pair_audio(
    keys: Sequence[str],
    positive: Callable[[], torch.Tensor],
    easy: Callable[[], torch.Tensor],
    hard: Callable[[], torch.Tensor],
    hard_valid: bool,
    neg_hard: bool,
) -> dict[str, torch.Tensor]:
    """The audio entries ``keys`` of one item, reading each window at most once and only if a
    key needs it (a method that never looks at the easy negative does not decode it).

    Args:
        keys: which of :data:`AUDIO_KEYS` to return.
        positive: reads the positive window (float ``[N]``).
        easy: reads the easy negative's window (float ``[N]``).
        hard: reads the hard negative's window (float ``[N]``).
        hard_valid: whether the clip has a hard window; if not, ``audio_hard`` is the easy one.
        neg_hard: whether ``audio_neg`` is the hard window (else the easy one).

    Returns:
        ``{key: float [N]}`` for each of ``keys``, in their order.
    """
    read: dict[str, torch.Tensor] = {}

    def once(name, fn):
        if name not in read:
            read[name] = fn()
        return read[name]

    def easy_():
        return once("easy", easy)

    def hard_():
        return once("hard", hard) if hard_valid else easy_()

    source = {
        "audio": positive,
        "audio_easy": easy_,
        "audio_hard": hard_,
        "audio_neg": hard_ if neg_hard else easy_,
    }
    return {k: source[k]() for k in keys}
