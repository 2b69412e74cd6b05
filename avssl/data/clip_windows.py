"""Cutting decoded clips into training items: the frame showing at a time, the audio window
centred on it, the classes each manifest row shows and the media it shares with other rows
(shared by the in-memory :mod:`avssl.data.dataset` and the streaming
:mod:`avssl.data.stream_pairs`)."""

from __future__ import annotations

import math
import os

import torch

from avssl.data.extensions import IMAGE_EXTS
from avssl.data.manifest import Row, resolve
from avssl.data.media_checks import frame_time_slack_s


def frame_at(frames: torch.Tensor, t: float, fps: float) -> torch.Tensor:
    """The frame of decoded ``frames`` (uint8 ``[T, H, W, 3]``) showing at ``t`` s.

    Args:
        frames: uint8 ``[T, H, W, 3]``, decoded at ``fps`` from time 0.
        t: time in seconds from the first frame (past the end: the last frame); a frame due
            within :func:`~avssl.data.media_checks.frame_time_slack_s` after ``t`` counts as
            showing, as when :func:`~avssl.data.media.read_frames` decodes it on demand.
        fps: frame rate of ``frames``.

    Returns:
        uint8 ``[3, H, W]`` (a view).
    """
    return frames[min(frame_index(t, fps), len(frames) - 1)].permute(2, 0, 1)


def frame_index(t: float, fps: float) -> int:
    """The index of the frame showing at ``t`` s in frames decoded at ``fps`` from time 0.

    Clips are decoded on a grid of ``fps`` frames (preloaded, cached), so the frame showing at
    ``t`` is the grid frame ``k / fps`` at or before it (within
    :func:`~avssl.data.media_checks.frame_time_slack_s`), itself the source frame showing at
    ``k / fps``. A clip decoded on demand reads that same grid time.
    """
    return math.floor((t + frame_time_slack_s(1.0 / fps)) * fps)


def audio_window(
    wave: torch.Tensor, centre: float, window: float, sample_rate: int
) -> torch.Tensor:
    """The ``window``-s audio of decoded ``wave`` (float32 ``[L]``) centred on ``centre`` s.

    Args:
        wave: float32 ``[L]`` mono audio at ``sample_rate``, from time 0.
        centre: centre of the window in seconds.
        window: window length in seconds.
        sample_rate: rate of ``wave`` in Hz.

    Returns:
        float32 ``[N]`` (a view), ``N = round(window * sample_rate) <= L``; a window reaching past
        either end of the wave is moved inside it.
    """
    i, n = window_start(centre, window, sample_rate, wave.shape[0])
    return wave[i : i + n]


def window_start(centre: float, window: float, sample_rate: int, length: int) -> tuple[int, int]:
    """Where :func:`audio_window` cuts a clip's wave, without the wave (decoding on demand).

    Args:
        centre: centre of the window in seconds from the clip's start.
        window: window length in seconds.
        sample_rate: rate of the wave in Hz.
        length: samples the clip's wave holds.

    Returns:
        ``(i, n)``: the window's first sample and its length, ``n = round(window * sample_rate)``
        samples from ``i``, moved inside ``[0, length)``.
    """
    n = int(round(window * sample_rate))
    i = int(round((centre - window / 2) * sample_rate))
    return max(0, min(i, length - n)), n


def label_table(rows: list[Row], classes: list[str]) -> tuple[list[int], torch.Tensor]:
    """Each row's class and the classes its frames show.

    Args:
        rows: manifest rows.
        classes: label names; a label's position in the list is its class index.

    Returns:
        ``labels``: the index in ``classes`` of each row's first label (-1: none or unknown);
        ``visible``: bool ``[len(rows), len(classes)]``, the row's ``frame_labels`` when given,
        else its first label.
    """
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(r.labels[0], -1) if r.labels else -1 for r in rows]
    visible = torch.zeros(len(rows), len(classes), dtype=torch.bool)
    for i, r in enumerate(rows):
        names = r.frame_labels if r.frame_labels is not None else r.labels[:1]
        visible[i, [index[n] for n in names if n in index]] = True
    return labels, visible


class NotNegatives:
    """Which clips' sounds are no easy negative for a clip's picture: those of a row sharing a
    media file with it (two segments of one whole video, the canvases of one AV-Digits
    recording: a matching pair labelled a mismatch) and, with ``unseen``
    (``data.unseen_negatives``), those of a class its picture shows. The one rule of the
    in-memory and the streamed easy negatives.

    Args:
        rows: manifest rows; paths are compared as written (relative to one manifest).
        labels: the ``labels`` of :func:`label_table` of ``rows`` (each row's class, -1: none).
        visible: its ``visible``, bool ``[len(rows), len(classes)]`` (the classes each row's
            picture shows).
        unseen: also exclude a sound whose class the picture shows.
    """

    def __init__(self, rows: list[Row], labels: list[int], visible: torch.Tensor, unseen: bool):
        ids: dict[str, int] = {}

        def key(path: str) -> int:
            return ids.setdefault(os.path.normpath(path), len(ids))

        self.visual = [key(r.visual) for r in rows]
        self.sound = [key(r.audio or r.visual) for r in rows]
        self.labels, self.visible, self.unseen = labels, visible, unseen

    def __call__(self, frame_clip: int, audio_clip: int) -> bool:
        """Whether ``audio_clip``'s sound is no easy negative for ``frame_clip``'s picture."""
        a, b = frame_clip, audio_clip
        if self.visual[a] == self.visual[b] or self.sound[a] == self.sound[b]:
            return True
        label = self.labels[b]
        return self.unseen and label >= 0 and bool(self.visible[a, label])


def too_short(manifest: str | os.PathLike, row: Row, seconds: float, window: float) -> str:
    """Why ``row``'s clip of ``seconds`` is skipped for a ``window``-s training or evaluation
    window, naming the file that sets its length: the sound beside a still image, else the
    video (and its separate sound)."""
    video, audio = resolve(manifest, row.visual), resolve(manifest, row.audio)
    if audio is not None:
        video = audio if video.suffix.lower() in IMAGE_EXTS else f"{video} with {audio}"
    shown = round(seconds, 2)
    if shown >= window:  # 0.999 s is not "1.00 s, shorter than the 1-s window": cut, not round
        shown = math.floor(seconds * 100) / 100
    return f"{video}: {shown:.2f} s, shorter than the {window:g}-s window"
