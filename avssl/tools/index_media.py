"""What ``avssl index`` embeds: media discovery and per-window embeddings of one file.

A file's windows are centred at ``window / 2 + k * hop`` seconds while they fit in the file
(one window centred on the middle of a file shorter than a window). Per window a video gives one
audio embedding (the ``window`` seconds of sound around the centre) and one visual embedding (the
frame showing at the centre); an audio file gives audio embeddings only and a still image one
visual embedding (time ``NaN``). Embeddings are the model's pooled ``embed_audio`` /
``embed_visual`` outputs, L2-normalised so a dot product is a cosine similarity.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avssl.data.manifest import read_manifest, resolve
from avssl.data.media import probe
from avssl.data.media_checks import IMAGE_EXTS, SOUNDFILE_EXTS
from avssl.errors import MediaError
from avssl.eval.embed import embed_visual, frames_to_input
from avssl.eval.sliding import sliding_embeddings
from avssl.tools.stream_io import audio_end, iter_frames_at, read_audio_padded

VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv"})
AUDIO_EXTS = SOUNDFILE_EXTS | {".mp3", ".m4a", ".aac", ".opus", ".wma"}
MEDIA_EXTS = VIDEO_EXTS | AUDIO_EXTS | IMAGE_EXTS
BLOCK = 64  # windows decoded and embedded at a time: bounds memory for long files


def find_media(inputs: list[str]) -> tuple[list[Path], list[dict]]:
    """Media files under ``inputs``: files, folders (recursive, by extension) and manifests.

    A manifest (``*.jsonl``) contributes the visual and separate audio file of each row, resolved
    relative to the manifest's folder. Paths are absolute and deduplicated, in a stable order.

    Returns:
        ``(paths, missing)`` where ``missing`` lists ``{"path", "reason"}`` of inputs not found.
    """
    found: dict[str, Path] = {}
    missing = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() in MEDIA_EXTS and f.is_file() and not f.name.startswith("."):
                    found.setdefault(str(f.resolve()), f.resolve())
        elif p.suffix.lower() == ".jsonl" and p.is_file():
            for row in read_manifest(p):
                for rel in (row.visual, row.audio):
                    media = resolve(p, rel)
                    if media is None:
                        continue
                    if media.is_file():
                        found.setdefault(str(media.resolve()), media.resolve())
                    else:
                        missing.append({"path": str(media), "reason": "no such file"})
        elif p.is_file():
            found.setdefault(str(p.resolve()), p.resolve())
        else:
            missing.append({"path": str(p), "reason": "no such file or folder"})
    return list(found.values()), missing


def file_stamp(path: Path) -> dict:
    """Size and modification time (ns) of a file: what tells a changed file from an unchanged."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def window_centres(duration: float, window: float, hop: float) -> np.ndarray:
    """Centres (s) of the windows of a file lasting ``duration`` s (at least one)."""
    if duration <= window:
        return np.array([duration / 2])
    n = int(math.floor((duration - window) / hop + 1e-6)) + 1
    return window / 2 + hop * np.arange(n)


@dataclass
class FileEmbeddings:
    """Embeddings of one file: ``audio`` ``[Wa, D]`` at ``audio_time`` ``[Wa]`` (s), likewise
    ``visual`` ``[Wv, D]``; ``kind`` is "video", "audio" or "image"; ``duration`` in s (0 for
    an image)."""

    kind: str
    duration: float
    audio: torch.Tensor
    audio_time: torch.Tensor
    visual: torch.Tensor
    visual_time: torch.Tensor


def embed_file(model, cfg, path: Path, hop: float, device="cpu") -> FileEmbeddings:
    """Embed every window of one media file (see the module docstring).

    Args:
        model: an :class:`~avssl.models.base.AVModel` in eval mode.
        cfg: its :class:`~avssl.config.Config` (``cfg.data`` gives the input sizes).
        path: a video, audio file or still image.
        hop: seconds between window centres (rounded to a whole number of audio samples).
        device: where the model runs.

    Raises:
        MediaError: the file cannot be used.
    """
    info = probe(path)
    d = cfg.data
    empty = torch.zeros(0, dtype=torch.float32)
    if info.kind == "image":
        frame = next(iter_frames_at(path, [0.0], (d.frame_size, d.frame_size)))
        v = _unit(
            embed_visual(
                model, frames_to_input(torch.from_numpy(frame)[None], d.frame_size), device
            )
        )
        return FileEmbeddings("image", 0.0, _none(v.shape[1]), empty, v, torch.tensor([math.nan]))
    if not info.duration or info.duration <= 0:
        raise MediaError(path, "unknown or zero duration")
    # the audio windows start a whole number of samples apart, so the centres must too: with a
    # hop of 0.3333 s at 16 kHz (5,332.8 samples) a block of windows would hold one too few
    hop = max(1, round(hop * d.sample_rate)) / d.sample_rate
    centres = window_centres(info.duration, d.window, hop)
    kind = "video" if info.has_video else "audio"
    a_end = audio_end(path, info.duration) if info.has_audio else None
    frames_iter = (
        iter_frames_at(path, centres, (d.frame_size, d.frame_size)) if info.has_video else None
    )
    audio, visual = [], []
    for k0 in range(0, len(centres), BLOCK):
        c = centres[k0 : k0 + BLOCK]
        if a_end is not None:
            start = c[0] - d.window / 2
            span = (c[-1] - c[0]) + d.window
            wave = read_audio_padded(path, start, span, d.sample_rate, a_end)
            emb = sliding_embeddings(model, wave, d.sample_rate, d.window, hop, device)
            if emb.shape[0] < len(c):  # would pair every later window with another's time
                raise RuntimeError(f"{path}: {emb.shape[0]} audio windows for {len(c)} centres")
            audio.append(_unit(emb[: len(c)]))
        if frames_iter is not None:
            frames = torch.from_numpy(np.stack([next(frames_iter) for _ in c]))
            visual.append(_unit(embed_visual(model, frames_to_input(frames, d.frame_size), device)))
    times = torch.from_numpy(centres.astype(np.float32))
    dim = (audio or visual)[0].shape[1]
    return FileEmbeddings(
        kind,
        float(info.duration),
        torch.cat(audio) if audio else _none(dim),
        times if audio else empty,
        torch.cat(visual) if visual else _none(dim),
        times if visual else empty,
    )


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=1)


def _none(dim: int) -> torch.Tensor:
    return torch.zeros(0, dim)
