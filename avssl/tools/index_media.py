"""What ``avssl index`` embeds: media discovery and per-window embeddings of one file.

A file's windows are centred at ``window / 2 + k * hop`` seconds while they fit in the stream
they come from (one window centred on the middle of a stream shorter than a window). A video gives
one audio embedding per window of its sound (the ``window`` seconds around the centre) and one
visual embedding per window of its picture (the frame showing at the centre), so a video whose
sound stops before its picture has fewer audio windows than visual ones (and the other way round)
instead of windows of silence or of a frozen last frame; a stream ending within what decoders pad
of the file's end counts as lasting the whole file. An audio file gives audio embeddings only
and a still image one visual embedding (time ``NaN``). Embeddings are the model's pooled
``embed_audio`` / ``embed_visual`` outputs, L2-normalised so a dot product is a cosine similarity
(``avssl embed`` can keep them as they are).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avssl.data.audio_header import truncation
from avssl.data.extensions import INDEXABLE_EXTS
from avssl.data.manifest import read_manifest, resolve
from avssl.data.media import probe
from avssl.data.media_checks import DEFAULT_FRAME_S, TOLERANCE_S, broken_link
from avssl.data.walk import walk_files
from avssl.errors import MediaError
from avssl.eval.embed import embed_visual, frames_to_input
from avssl.eval.sliding import sliding_embeddings
from avssl.models import embedding_dims
from avssl.tools.stream_io import audio_end, iter_frames_at, read_audio_padded, video_end

BLOCK = 64  # windows decoded and embedded at a time: bounds memory for long files
MIN_HOP = 0.01  # seconds between windows: below, a window every few samples (memory, no use)
MAX_HOP = 3600.0  # every file under an hour has one window at this hop: longer is no use


def add_inputs_argument(parser, required: bool) -> None:
    """``--inputs PATH...`` of the commands that embed media files (``avssl index``, ``embed``)."""
    parser.add_argument(
        "--inputs",
        nargs="+",
        action="extend",
        required=required,
        help="media files, folders (searched recursively) or manifests (*.jsonl); "
        "--inputs -- NAMES... for names that start with a dash",
    )


def find_media(inputs: list[str], resolve_links: bool = True) -> tuple[list[Path], list[dict]]:
    """Media files under ``inputs``: files, folders (recursive, by extension) and manifests.

    A manifest (``*.jsonl``) contributes the visual and separate audio file of each row, resolved
    relative to the manifest's folder. Paths are absolute and deduplicated (by the file they lead
    to), in a stable order. A link in a folder that leads to nothing (its target is missing, or it
    loops) is missing whatever its name: it may have been a linked folder; so is a FIFO, socket
    or device named as media.

    Args:
        inputs: files, folders and manifests.
        resolve_links: give each file's real path (links followed); False gives the path it was
            found by (made absolute, ``..`` removed unless that leads elsewhere: ``a/link/..``
            is not ``a``, and such a file is named by its real path), the first of several
            that lead to one file.

    Returns:
        ``(paths, missing)`` where ``missing`` lists ``{"path", "reason"}`` of inputs not found.
    """
    found: dict[str, Path] = {}
    missing = []

    def add(path: Path) -> None:
        real = path.resolve()
        named = real
        if not resolve_links:  # ``..`` removed by text: wrong after a link (a/link/..)
            lexical = Path(os.path.abspath(path))
            named = lexical if os.path.realpath(lexical) == str(real) else real
        found.setdefault(str(real), named)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(walk_files(p)):  # linked folders too, each real one once
                if f.name.startswith("."):
                    continue
                if why := broken_link(f):  # absolute, as every other skipped file is named
                    missing.append({"path": os.path.abspath(f), "reason": why})
                elif f.suffix.lower() in INDEXABLE_EXTS:
                    if f.is_file():
                        add(f)
                    else:  # a FIFO, socket or device named as media holds none to read
                        missing.append({"path": os.path.abspath(f), "reason": "not a regular file"})
        elif p.suffix.lower() == ".jsonl" and p.is_file():
            for row in read_manifest(p):
                for rel in (row.visual, row.audio):
                    media = resolve(p, rel)
                    if media is None:
                        continue
                    if media.is_file():
                        add(media)
                    else:
                        missing.append({"path": str(media), "reason": "no such file"})
        elif p.is_file():
            add(p)
        else:  # a device, a FIFO or a socket exists but holds no media to index
            why = "not a regular file or folder" if p.exists() else "no such file or folder"
            missing.append({"path": str(p), "reason": why})
    return list(found.values()), missing


def lost_under(link: Path, indexed: list[str]) -> int:
    """How many of the ``indexed`` paths are the missing target of ``link`` or lie under it (a
    linked file or folder on a disk no longer mounted); 0 unless ``link`` is a link to nothing."""
    if not link.is_symlink() or link.exists():
        return 0
    target = os.path.realpath(link)
    return sum(p == target or p.startswith(target + os.sep) for p in indexed)


def file_stamp(path: Path) -> dict:
    """Size and modification time (ns) of a file: what tells a changed file from an unchanged."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def same_stamp(entry: dict, stamp: dict) -> bool:
    """Whether an index entry records ``stamp`` (:func:`file_stamp`): the file is unchanged."""
    return all(entry.get(key) == value for key, value in stamp.items())


MISSING = "missing (moved or deleted since it was indexed)"


def stamp_change(entry: dict) -> str | None:
    """What became of an index entry's file since it was indexed, by one ``os.stat``.

    Args:
        entry: an index's file entry (``path``, and the :func:`file_stamp` it was indexed at).

    Returns:
        None when the file is unchanged (:func:`same_stamp`), else why its windows may no
        longer be what it holds: changed, missing, or the ``stat`` error.
    """
    try:
        stamp = file_stamp(Path(entry["path"]))
    except (FileNotFoundError, NotADirectoryError):  # the file, or a folder on its path, gone
        return MISSING
    except OSError as err:
        return f"not readable since it was indexed ({err.strerror})"
    return None if same_stamp(entry, stamp) else "changed since it was indexed"


def window_centres(duration: float, window: float, hop: float) -> np.ndarray:
    """Centres (s) of the windows of a file lasting ``duration`` s (at least one)."""
    if duration <= window:
        return np.array([duration / 2])
    n = int(math.floor((duration - window) / hop + 1e-6)) + 1
    return window / 2 + hop * np.arange(n)


@dataclass
class FileEmbeddings:
    """Embeddings of one file: ``audio`` ``[Wa, Da]`` at ``audio_time`` ``[Wa]`` (s), likewise
    ``visual`` ``[Wv, Dv]`` (a side the file lacks: ``[0, D]`` of that side's width); ``kind``
    is "video", "audio" or "image"; ``duration`` in s (0 for an image)."""

    kind: str
    duration: float
    audio: torch.Tensor
    audio_time: torch.Tensor
    visual: torch.Tensor
    visual_time: torch.Tensor


def embed_file(
    model, cfg, path: Path, hop: float, device="cpu", unit: bool = True, dims=None
) -> FileEmbeddings:
    """Embed every window of one media file (see the module docstring).

    Args:
        model: an :class:`~avssl.models.base.AVModel` in eval mode.
        cfg: its :class:`~avssl.config.Config` (``cfg.data`` gives the input sizes).
        path: a video, audio file or still image.
        hop: seconds between window centres (rounded to a whole number of audio samples).
        device: where the model runs.
        unit: L2-normalise each embedding (a dot product is then a cosine similarity); False
            keeps the model's outputs as they are (``avssl embed`` without ``--unit``).
        dims: the model's ``(audio, visual)`` widths, the width of a side the file lacks
            (default: :func:`~avssl.models.embedding_dims`, one forward pass, when needed).

    Raises:
        MediaError: the file cannot be used.
        ValueError: ``hop`` is not a positive finite number of seconds.
    """
    if not _positive(hop):  # 0 or below was one sample, a window for every sample of the file
        raise ValueError(f"hop must be a positive number of seconds, got {hop!r}")
    norm = _unit if unit else _float
    info = probe(path)
    d = cfg.data
    empty = torch.zeros(0, dtype=torch.float32)
    if info.kind == "image":
        frame = next(iter_frames_at(path, [0.0], (d.frame_size, d.frame_size)))
        v = norm(
            embed_visual(
                model, frames_to_input(torch.from_numpy(frame)[None], d.frame_size), device
            )
        )
        audio = _none((dims or embedding_dims(model, d))[0])
        return FileEmbeddings("image", 0.0, audio, empty, v, torch.tensor([math.nan]))
    if not info.duration or info.duration <= 0:
        raise MediaError(path, "unknown or zero duration")
    if (cut := truncation(path)) is not None:  # a WAV cut short reads as a shorter whole file
        raise MediaError(path, cut)
    # the audio windows start a whole number of samples apart, so the centres must too: with a
    # hop of 0.3333 s at 16 kHz (5,332.8 samples) a block of windows would hold one too few
    hop = max(1, round(hop * d.sample_rate)) / d.sample_rate
    audio = visual = None
    if info.has_audio:
        a_end = audio_end(path, info.duration)
        a_times = window_centres(_span(a_end, info.duration, TOLERANCE_S), d.window, hop)
        audio = _audio_windows(model, d, path, a_times, a_end, hop, device, norm)
    if info.has_video:
        pad = max(TOLERANCE_S, 1 / info.fps if info.fps else DEFAULT_FRAME_S)
        v_end = _span(video_end(path, info.duration), info.duration, pad)
        v_times = window_centres(v_end, d.window, hop)
        visual = _visual_windows(model, d, path, v_times, device, norm)
    if audio is None or visual is None:  # the side a file lacks, [0, D] of that side's width
        dims = dims or embedding_dims(model, d)
    return FileEmbeddings(
        "video" if info.has_video else "audio",
        float(info.duration),
        _none(dims[0]) if audio is None else audio,
        empty if audio is None else torch.from_numpy(a_times.astype(np.float32)),
        _none(dims[1]) if visual is None else visual,
        empty if visual is None else torch.from_numpy(v_times.astype(np.float32)),
    )


def _positive(x) -> bool:
    """Whether ``x`` is a real number above 0 and finite (not a bool, a text, NaN or an
    infinity; numpy's floats are real numbers)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _span(end: float | None, duration: float, pad: float) -> float:
    """Seconds a stream ending at ``end`` lasts for placing windows: the file's ``duration`` when
    the end is unknown or within ``pad`` of it (as equal-length tracks end), else ``end``."""
    return duration if end is None or end >= duration - pad else end


def _audio_windows(model, d, path, centres, end, hop, device, norm) -> torch.Tensor:
    """Embeddings ``[W, D]`` of the sound around each of ``centres`` (s), through ``norm``
    (:func:`_unit` or :func:`_float`); silence past ``end`` (s), where the sound stops."""
    out = []
    for k0 in range(0, len(centres), BLOCK):
        c = centres[k0 : k0 + BLOCK]
        start = c[0] - d.window / 2
        span = (c[-1] - c[0]) + d.window
        wave = read_audio_padded(path, start, span, d.sample_rate, end)
        emb = sliding_embeddings(model, wave, d.sample_rate, d.window, hop, device)
        if emb.shape[0] < len(c):  # would pair every later window with another's time
            raise RuntimeError(f"{path}: {emb.shape[0]} audio windows for {len(c)} centres")
        out.append(norm(emb[: len(c)]))
    return torch.cat(out)


def _visual_windows(model, d, path, centres, device, norm) -> torch.Tensor:
    """Embeddings ``[W, D]`` of the frame showing at each of ``centres`` (s), through ``norm``."""
    # a window past the last decodable frame is a file cut short: skipped, not padded
    size = (d.frame_size, d.frame_size)
    frames_iter = iter_frames_at(path, centres, size, asked="the window centred at")
    out = []
    try:
        for k0 in range(0, len(centres), BLOCK):
            c = centres[k0 : k0 + BLOCK]
            frames = torch.from_numpy(np.stack([next(frames_iter) for _ in c]))
            out.append(norm(embed_visual(model, frames_to_input(frames, d.frame_size), device)))
    finally:
        frames_iter.close()  # closes the file now, not when the generator is collected
    return torch.cat(out)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=1)


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float()


def _none(dim: int) -> torch.Tensor:
    return torch.zeros(0, dim)
