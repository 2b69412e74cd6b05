"""``avssl query --rerank N``: the search's N best re-scored as ``evaluate.py retrieval`` scores.

The index holds one pooled unit vector per window, so the search ranks pictures for a sound by
the dot product of pooled vectors. A model with a map of locations (``model.has_map``:
``contrastive`` with ``model.spatial``, ``avolnet``) is evaluated by the best location instead:
:func:`avssl.eval.retrieval.cross_similarity` of the audio embedding
(:func:`avssl.eval.embed.embed_audio`) and the picture's map
(:func:`avssl.eval.embed.visual_maps`), ``max_l <audio, map[:, l]>``. That score is
symmetric (the evaluation's ``v2a`` is the transpose of its ``a2v``), so it re-ranks both an
audio query against pictures (the query's embedding against each candidate's map) and a
picture query against sounds (the query's map, computed once, against each candidate's
embedding). Candidates are decoded as ``avssl index`` decoded them (:mod:`avssl.tools.index_media`):
the frame showing at the window's centre, read by
:func:`~avssl.tools.stream_io.iter_frames_at` at ``data.frame_size`` (a still image's first
frame), and the ``data.window`` seconds of sound around the centre, silence past where the
sound stops.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from avssl.data.media import probe
from avssl.errors import AvsslError, MediaError
from avssl.eval.embed import embed_audio, frames_to_input, visual_maps
from avssl.eval.retrieval import cross_similarity
from avssl.tools.index import Index
from avssl.tools.index_media import BLOCK, stamp_change
from avssl.tools.query import ranked_rows, results_of
from avssl.tools.stream_io import audio_end, iter_frames_at, read_audio_padded


def check_rerank(model, method: str, ckpt: str, modality: str, target: str) -> None:
    """Refuse ``--rerank`` where the search's score already is the evaluation's.

    Args:
        model: the loaded :class:`~avssl.models.base.AVModel`.
        method: its ``model.method`` (for the message).
        ckpt: the checkpoint's path (for the message).
        modality: the query's modality, "audio" or "visual".
        target: the windows searched, "audio" or "visual".

    Raises:
        AvsslError: the model has no map of locations, or the query is not cross-modal.
    """
    if not model.has_map:
        spatial_off = " without model.spatial" if model.reads_spatial else ""
        what = f"the {method} method{spatial_off}"
        raise AvsslError(
            f"{ckpt}: --rerank needs a model that scores a picture by its best location "
            f"(contrastive, avolnet); {what} has no map of locations"
        )
    if modality == target:
        query = "an audio" if modality == "audio" else f"a {modality}"
        raise AvsslError(
            f"--rerank re-scores sounds against pictures only; {query} query for {target} "
            "windows is already scored as the evaluation scores it (pooled embeddings)"
        )


def rerank_scores(
    model, cfg, index: Index, target: str, rows: Tensor, query: Tensor, device="cpu"
) -> Tensor:
    """The evaluation's score of the query against each of the ``target`` windows ``rows``.

    Args:
        model: the model the index was built with.
        cfg: its config (``cfg.data``: window, sample rate, frame size).
        index: the index.
        target: "visual" (an audio query) or "audio" (a picture query).
        rows: long ``[R]`` rows of ``index.tensors[target]``.
        query: the query's model input (:func:`avssl.tools.query.query_input`): float ``[1, n]``
            waveform when ``target`` is "visual", float ``[1, 3, S, S]`` frame otherwise.
        device: where the model runs.

    Returns:
        float ``[R]``, entry ``i`` the score of ``rows[i]``.

    Raises:
        MediaError: a candidate's file changed since it was indexed (size or modification
            time) or can no longer be read.
    """
    if target == "visual":
        audio = embed_audio(model, query, device)  # [1, D]
    else:
        qmap = visual_maps(model, query, device)  # [1, D, h, w], computed once

    def score(x: Tensor) -> Tensor:  # [B] for a block of candidate inputs
        if target == "visual":
            return cross_similarity(audio, None, visual_maps(model, x, device))[0]
        return cross_similarity(embed_audio(model, x, device), None, qmap)[:, 0]

    files, times = index.tensors[f"{target}_file"][rows], index.tensors[f"{target}_time"][rows]
    out = torch.empty(rows.shape[0])
    for fid in files.unique().tolist():
        pos = (files == fid).nonzero().squeeze(1)
        pos = pos[times[pos].argsort()]  # ascending, as the frames are decoded in one pass
        path = index.files[fid]["path"]
        _check_unchanged(index.files[fid])
        try:
            for block, x in _inputs(cfg, path, target, times[pos].tolist()):
                out[pos[block]] = score(x)
        except MediaError as err:
            why = f"{err.reason} (an indexed file: run avssl index again)"
            raise MediaError(path, why) from err
    return out


def _check_unchanged(entry: dict) -> None:
    """Refuse to re-score an indexed file that changed (size or modification time) or went
    missing since it was indexed (:func:`~avssl.tools.index_media.stamp_change`, as the query's
    notes): its windows would be scored on other content than the search found."""
    why = stamp_change(entry)
    if why is not None:
        raise MediaError(entry["path"], f"{why}: run avssl index again")


def _inputs(cfg, path: str, target: str, centres: list[float]):
    """Yield ``(slice, model input)`` for blocks of the windows centred at ``centres`` (s,
    ascending; NaN for a still image): frames ``[B, 3, S, S]`` or waveforms ``[B, n]``."""
    d = cfg.data
    if target == "visual":
        frames = iter_frames_at(path, [t if t == t else 0.0 for t in centres], (d.frame_size,) * 2)
        try:
            for k in range(0, len(centres), BLOCK):
                c = centres[k : k + BLOCK]
                x = torch.from_numpy(np.stack([next(frames) for _ in c]))
                yield slice(k, k + len(c)), frames_to_input(x, d.frame_size)
        finally:
            frames.close()
        return
    end = audio_end(path, probe(path).duration)  # as index_media: the sound's own end
    for k in range(0, len(centres), BLOCK):
        c = centres[k : k + BLOCK]
        waves = [read_audio_padded(path, t - d.window / 2, d.window, d.sample_rate, end) for t in c]
        yield slice(k, k + len(c)), torch.stack(waves)


def rerank_search(
    model,
    cfg,
    index: Index,
    query: Tensor,
    x: Tensor,
    target: str,
    k: int,
    n: int,
    per_file: bool = False,
    approx: bool = False,
    device="cpu",
) -> tuple[list[dict], int]:
    """The ``k`` best of the search's ``n`` best ``target`` windows by the evaluation's score.

    Args:
        model: the model the index was built with (``has_map``; see :func:`check_rerank`).
        cfg: its config.
        index: the index.
        query: the query's unit-norm pooled embedding ``[D]`` (the search's query).
        x: the query's model input (:func:`~avssl.tools.query.query_input`), ``[1, n]`` or
            ``[1, 3, S, S]``.
        target: "visual" for an audio query, "audio" for a picture query.
        k: number of results, ``k <= n``.
        n: number of candidates taken from the search (brute force or ``approx``) and
            re-scored; with ``per_file`` the ``n`` best files' best windows.
        per_file: see :func:`~avssl.tools.query.search`.
        approx: see :func:`~avssl.tools.query.search`.
        device: where the model runs.

    Returns:
        ``(results, n_scored)``: :func:`~avssl.tools.query.search`'s dicts with ``score`` the
        evaluation's score, best first (ties in the search's order), and the number of
        candidates re-scored.
    """
    rows, _ = ranked_rows(index, query, target, n, per_file, approx)
    scores = rerank_scores(model, cfg, index, target, rows, x, device)
    order = scores.argsort(descending=True, stable=True)[:k]
    return results_of(index, target, rows[order], scores[order]), int(rows.shape[0])
