"""The model-dependent parts of ``avssl report``: a retrieval gallery and heatmap overlays.

Each clip is represented as in ``evaluate.py retrieval`` (:mod:`avssl.eval.retrieval`): the
frame at its centre and the audio window centred on it, decoded the same way, so a pair of clips
scores exactly as there. Audio -> visual queries are ranked by
:func:`avssl.eval.retrieval.similarities` (location max for map models; CCA fitted on *training*
clips for methods without a shared space, as in Objects that Sound,
https://arxiv.org/abs/1712.06651). Overlays blend ``model.heatmap`` over the frame like
``avssl overlay``.

One difference remains for those CCA methods (``l3``): the report fits CCA on at most
``--max-clips`` evenly spread training clips, ``evaluate.py retrieval`` on the whole training
split (decoding all of it would make the report as slow as that evaluation), so their gallery
scores equal evaluate's only when the training split has no more clips than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avssl.config import DataConfig
from avssl.data.manifest import Row
from avssl.data.source import open_store
from avssl.data.transforms import eval_resize
from avssl.errors import AvsslError, CheckpointError, MediaError

THUMB = 96  # thumbnail side: the model's input frame resized (up or down) to it


@dataclass
class CentreClips:
    """Centre pairs of some clips: ``thumbs`` uint8 ``[N, T, T, 3]``, ``frames`` float
    ``[N, 3, S, S]`` in [0, 1] (model input), ``waves`` float ``[N, n]``; ``skipped`` lists
    ``(id, reason)`` of clips that could not be decoded."""

    rows: list[Row]
    thumbs: torch.Tensor
    frames: torch.Tensor
    waves: torch.Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)


def spread(n_total: int, n: int) -> list[int]:
    """``min(n, n_total)`` distinct indices evenly spread over ``range(n_total)``."""
    if n_total <= 0 or n <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n_total - 1, min(n, n_total)).round()})


def centre_clips(
    rows: list[Row], manifest: Path, data: DataConfig, limit: int, split: str = "test"
) -> CentreClips:
    """The centre pairs of up to ``limit`` evenly spread ``rows`` of ``split``, bad clips skipped.

    The model input is decoded as ``evaluate.py retrieval`` decodes it (``load_split(train=False)``
    then :func:`avssl.eval.retrieval.centre_pairs`): at ``data.frame_size``, from ``data.cache``
    when set, preloaded when ``data.preload``, so a clip scores exactly as it does there. The
    thumbnails are that input frame resized to :data:`THUMB` (what the model saw, not a sharper
    second decode).
    """
    rows = [rows[i] for i in spread(len(rows), limit)]
    size = data.frame_size
    store = open_store(rows, manifest, data, split, train=False)
    skipped = list(store.skipped)
    kept, frames, waves = [], [], []
    for i, (row, duration) in enumerate(zip(store.rows, store.durations, strict=True)):
        try:  # as centre_pairs, clip by clip: one undecodable clip is skipped, not fatal
            frame = eval_resize(store.frame(i, duration / 2), size)
            wave = store.audio(i, duration / 2)
        except MediaError as err:
            skipped.append((row.id, str(err)))
            continue
        kept.append(row)
        frames.append(frame)
        waves.append(wave)
    if not kept:
        return CentreClips([], torch.empty(0), torch.empty(0), torch.empty(0), skipped)
    thumbs = [eval_resize(f, THUMB).permute(1, 2, 0) for f in frames]
    return CentreClips(
        kept,
        torch.stack(thumbs),
        torch.stack(frames).float().div_(255),
        torch.stack(waves),
        skipped,
    )


def a2v_similarity(model, method: str, test: CentreClips, train: CentreClips | None, device):
    """``[N, N]`` audio (rows) -> visual (columns) similarities of the ``test`` clips.

    ``train`` clips are needed (and only used to fit CCA) when ``method`` has no shared space;
    ``evaluate.py retrieval`` fits it on every training clip (see the module docstring).

    Args:
        model: the model.
        method: ``model.method`` of its config.
        test: the clips ranked (``N`` of them).
        train: training clips for CCA, or None.
        device: where the model runs.

    Returns:
        float ``[N, N]`` array, row = audio query, column = visual item.
    """
    from avssl.eval.cca import cca_project, fit_cca
    from avssl.eval.retrieval import embed_pairs, similarities

    emb = embed_pairs(model, test.frames, test.waves, device)
    if not model.shared_space:
        if train is None or len(train.rows) < 2:
            raise AvsslError(f"{method}: fewer than 2 decodable training clips to fit CCA on")
        tr = embed_pairs(model, train.frames, train.waves, device)
        emb = cca_project(fit_cca(tr["audio"], tr["visual"]), emb)
    return similarities(emb)["a2v"]


def rank_queries(sim: np.ndarray, labels: list[list[str]], queries: list[int], k: int) -> list:
    """Top-``k`` visual matches of each audio query.

    Args:
        sim: ``[N, N]`` a2v similarities (row = audio query, column = visual item).
        labels: each clip's labels; a match is marked when it shares one with the query.
        queries: row indices to rank for.
        k: matches per query.

    Returns:
        one ``{"query": q, "matches": [{"index", "score", "same_label", "same_clip"}]}`` per
        query, best match first (ties broken by the lower index).
    """
    out = []
    for q in queries:
        order = np.argsort(-sim[q], kind="stable")[:k]
        qlab = set(labels[q])
        matches = [
            {
                "index": int(j),
                "score": float(sim[q, j]),
                "same_label": bool(qlab & set(labels[j])),
                "same_clip": int(j) == q,
            }
            for j in order
        ]
        out.append({"query": q, "matches": matches})
    return out


def overlay_frames(model, clips: CentreClips, n: int, device, alpha: float = 0.5):
    """Heatmaps of ``n`` evenly spread clips blended over their thumbnails.

    Returns:
        ``(indices, uint8 [n, T, T, 3])`` or None when the model has no map.
    """
    from avssl.eval.embed import heatmaps
    from avssl.tools.overlay import blend, colormap_lut

    idx = spread(len(clips.rows), n)
    maps = heatmaps(model, clips.frames[idx], clips.waves[idx], device)
    if maps is None:
        return None
    return idx, blend(clips.thumbs[idx], maps, colormap_lut("jet"), alpha)


def load_run_model(run_dir: Path, device) -> tuple[object, object, dict, str | None]:
    """The run's ``best.pt``, else its ``last.pt``: also when ``best.pt`` cannot be read.

    Returns:
        ``(model, cfg, state, note)``; ``note`` says which checkpoint could not be read, or
        that the run has no ``best.pt``, and that ``last.pt`` was used instead, else None.

    Raises:
        CheckpointError: no checkpoint, or none that loads (the last one's error).
    """
    from avssl.train.checkpoint import NO_BEST, load_model

    tried = [run_dir / n for n in ("best.pt", "last.pt") if (run_dir / n).is_file()]
    if not tried:
        raise CheckpointError(run_dir, "no best.pt or last.pt")
    failed = None
    for path in tried[:-1]:
        try:
            return (*load_model(path, device), None)
        except CheckpointError as err:
            failed = err
    model, cfg, state = load_model(tried[-1], device)
    if failed is None and tried[-1].name == "last.pt":
        return model, cfg, state, f"{run_dir}: {NO_BEST}"
    return model, cfg, state, (f"{failed}; {tried[-1].name} used instead" if failed else None)
