"""Clip embeddings and the similarity matrices of cross-modal and within-modal retrieval.

Each clip is represented by one pair taken at its centre time: the frame showing at
``duration / 2`` and the ``data.window``-second audio centred on it.

Similarities (higher = more similar):

* a2v / v2a, model with a spatial map (``model.has_map``): the maximum over locations of the
  scalar product between the audio embedding and each location's visual embedding, the rule the
  MIL models score pairs with (it beat pooled embeddings in our experiments);
* a2v / v2a otherwise: the dot product of L2-normalised audio and visual embeddings;
* a2a / v2v: the dot product of L2-normalised audio (resp. pooled visual) embeddings.

Methods whose two towers share no space (``shared_space`` False, ``l3``: each tower's own
features) go through CCA (:mod:`avssl.eval.cca`) fitted on the *training* split's embeddings,
as in the "L3 + CCA" baseline of Objects that Sound (https://arxiv.org/abs/1712.06651); every
direction is then scored in the CCA space (normalised dot product).

A separate *gallery* (:func:`gallery_frames`) is a list of visual items of another manifest
(images or videos, audio not needed), each represented by the frame at its centre time; audio
queries are scored against it with :func:`cross_similarity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avssl.data import media
from avssl.data.dataset import ClipStore
from avssl.data.manifest import Row, resolve
from avssl.data.transforms import eval_resize
from avssl.errors import MediaError
from avssl.eval import embed


def centre_pairs(store: ClipStore, frame_size: int) -> tuple[Tensor, Tensor]:
    """The centre frame and centre audio window of every clip of ``store``.

    Args:
        store: the clips (each taken at ``duration / 2``).
        frame_size: side length ``S`` the frames are resized to (no crop).

    Returns:
        ``(frames, waves)``: float ``[N, 3, S, S]`` in ``[0, 1]`` and float ``[N, n]``.
    """
    frames, waves = [], []
    for i, duration in enumerate(store.durations):
        t = duration / 2
        frames.append(eval_resize(store.frame(i, t), frame_size))
        waves.append(store.audio(i, t))
    return torch.stack(frames).float().div_(255), torch.stack(waves)


@dataclass
class Gallery:
    """Decoded visual items of a gallery manifest.

    ``frames`` is float ``[G, 3, S, S]`` in ``[0, 1]``, one per kept row; ``skipped`` lists
    ``(id, reason)`` of the rows that could not be decoded.
    """

    rows: list[Row]
    frames: Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)


def centre_time(row: Row, path: Path, fps: float) -> float:
    """Seconds into ``path`` of the row clip's centre frame (its ``start`` for a still image).

    The centre is snapped down to the clip's ``fps`` frame grid, the frame the (preloaded)
    :class:`ClipStore` shows at ``duration / 2`` for the evaluated clips.

    Args:
        row: the manifest row (its ``start`` and ``end``).
        path: the row's resolved video or image, probed when the row has no ``end``.
        fps: frame rate of the grid.

    Raises:
        MediaError: the file cannot be probed.
    """
    if row.end is not None:
        duration = row.end - row.start
    else:
        info = media.probe(path)
        if info.duration is None:  # a still image (or an unknown length): its first frame
            return row.start
        duration = max(0.0, info.duration - row.start)
    return row.start + math.floor(duration / 2 * fps + 1e-6) / fps


def gallery_frames(rows: list[Row], manifest: str | Path, frame_size: int, fps: float) -> Gallery:
    """The centre frame of each row's video or image, decoded like the evaluated clips.

    Frames are read at ``frame_size`` (no crop) with :func:`avssl.data.media.read_frames` and
    turned into model input by :func:`avssl.eval.embed.frames_to_input`; audio is never read.

    Args:
        rows: manifest rows (``audio`` may be null).
        manifest: the manifest's path (media paths are relative to it).
        frame_size: model input side length.
        fps: frame rate the window is read at (one frame of ``1 / fps`` s).

    Returns:
        a :class:`Gallery` of the decodable rows.
    """
    kept, frames, skipped = [], [], []
    for row in rows:
        path = resolve(manifest, row.visual)
        try:
            t = centre_time(row, path, fps)
            frame = media.read_frames(path, t, 1.0 / fps, fps, frame_size)[:1]
        except MediaError as err:
            skipped.append((row.id, str(err)))
            continue
        kept.append(row)
        frames.append(embed.frames_to_input(frame, frame_size)[0])
    stacked = torch.stack(frames) if frames else torch.zeros(0, 3, frame_size, frame_size)
    return Gallery(kept, stacked, skipped)


def embed_frames(
    model, frames: Tensor, device="cpu", precision="fp32", batch_size=64
) -> dict[str, Tensor | None]:
    """Pooled visual ``[G, D]`` and, for map models, ``map`` ``[G, D, h, w]``; ``audio`` None.

    Args:
        model: the model.
        frames: float ``[G, 3, H, W]`` in ``[0, 1]`` (e.g. :attr:`Gallery.frames`).
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward pass.

    Returns:
        ``{"audio": None, "visual": [G, D], "map": [G, D, h, w] or None}``, float32 on the CPU.
    """
    kw = dict(device=device, precision=precision, batch_size=batch_size)
    return {
        "audio": None,
        "visual": embed.embed_visual(model, frames, **kw),
        "map": embed.visual_maps(model, frames, **kw),
    }


def embed_pairs(
    model, frames: Tensor, waves: Tensor, device="cpu", precision="fp32", batch_size=64
) -> dict[str, Tensor | None]:
    """Audio ``[N, D]``, pooled visual ``[N, D]`` and, for map models, ``map`` ``[N, D, h, w]``.

    Args:
        model: the model.
        frames: float ``[N, 3, H, W]`` in ``[0, 1]``.
        waves: float ``[N, n]``, the sound of each frame (e.g. from :func:`centre_pairs`).
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward pass.

    Returns:
        ``{"audio": [N, D], "visual": [N, D], "map": [N, D, h, w] or None}``, float32 on the
        CPU.
    """
    kw = dict(device=device, precision=precision, batch_size=batch_size)
    return {
        "audio": embed.embed_audio(model, waves, **kw),
        "visual": embed.embed_visual(model, frames, **kw),
        "map": embed.visual_maps(model, frames, **kw),
    }


def max_location_similarity(audio: Tensor, maps: Tensor, chunk: int = 64) -> Tensor:
    """``[Q, D]`` audio embeddings against ``[G, D, h, w]`` visual maps -> ``[Q, G]``.

    Entry ``(q, g)`` is ``max_l <audio[q], maps[g, :, l]>`` (computed in query chunks to bound
    memory at ``chunk * G * h * w`` floats).

    Args:
        audio: ``[Q, D]`` audio embeddings.
        maps: ``[G, D, h, w]`` per-location visual embeddings.
        chunk: queries scored at once.
    """
    flat = maps.flatten(2).float()  # [G, D, L]
    rows = [
        torch.einsum("qd,gdl->qgl", audio[i : i + chunk].float(), flat).amax(dim=2)
        for i in range(0, audio.shape[0], chunk)
    ]
    return torch.cat(rows)


def _cosine(x: Tensor, y: Tensor) -> Tensor:
    return F.normalize(x.float(), dim=1) @ F.normalize(y.float(), dim=1).T


def cross_similarity(audio: Tensor, visual: Tensor, maps: Tensor | None = None) -> Tensor:
    """Audio ``[Q, D]`` against visual items -> ``[Q, G]``: max over locations of ``maps``
    ``[G, D, h, w]`` when given, else the cosine with pooled ``visual`` ``[G, D]``.

    Args:
        audio: ``[Q, D]`` audio embeddings.
        visual: ``[G, D]`` pooled visual embeddings (unused when ``maps`` is given).
        maps: ``[G, D, h, w]`` per-location visual embeddings, or None.
    """
    return max_location_similarity(audio, maps) if maps is not None else _cosine(audio, visual)


def similarities(emb: dict[str, Tensor | None]) -> dict[str, np.ndarray]:
    """The four ``[N, N]`` similarity matrices ``a2v`` (rows: audio queries), ``v2a``, ``a2a``,
    ``v2v`` of :func:`embed_pairs` (or :func:`avssl.eval.cca.cca_project`) output; see the
    module docstring."""
    a, v = emb["audio"], emb["visual"]
    a2v = cross_similarity(a, v, emb.get("map"))
    return {
        "a2v": a2v.numpy(),
        "v2a": a2v.T.contiguous().numpy(),
        "a2a": _cosine(a, a).numpy(),
        "v2v": _cosine(v, v).numpy(),
    }
