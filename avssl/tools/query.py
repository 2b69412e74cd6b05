"""Cross-modal search over an index: embed a query window, rank the stored windows.

Search is brute force by default: one float16 matrix-vector product over the stored windows and
``topk``, then the candidates re-scored in float32 (timings: ``benchmarks/query.py``); with
``per_file`` the candidates are all windows of the best files, so that each file's best window
and the files kept are chosen on the float32 scores. For
collections of millions of windows, ``approx=True`` (``avssl query --approx``, needs the optional
``faiss`` extra) takes the candidates from a cached faiss HNSW graph instead
(:mod:`avssl.tools.ann`) and re-scores them the same way; results keep the same format.
``avssl query --rerank N`` re-scores the N best by the evaluation's score
(:mod:`avssl.tools.query_rerank`).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from avssl.data.audio_header import truncation
from avssl.data.media import probe
from avssl.errors import AvsslError, MediaError
from avssl.eval.embed import embed_audio, embed_visual, frames_to_input
from avssl.tools.index import Index
from avssl.tools.stream_io import audio_end, iter_frames_at, read_audio_padded

FLAG = {"audio": "--audio", "visual": "--image"}


def query_window(path: str | os.PathLike, modality: str, at: float | None, flag: str):
    """Check a query file holds ``modality`` and pick the query time.

    Args:
        path: the query file.
        modality: "audio" or "visual".
        at: requested window centre (s), or None for the middle of the file.
        flag: the command-line flag that named the file (for messages).

    Returns:
        ``(info, time)``; ``time`` is None for a still image.

    Raises:
        MediaError: unreadable, a WAV or AIFF cut short, wrong modality, no known duration,
            ``at`` outside the file, or ``at`` given for a still image.
    """
    info = probe(path)
    if (cut := truncation(path)) is not None:  # as `avssl index` skips it: it reads as shorter
        raise MediaError(path, cut)
    if modality == "audio" and not info.has_audio:
        what = "a still image" if info.kind == "image" else "a file without an audio stream"
        raise MediaError(path, f"{what}; {flag} needs a sound")
    if modality == "visual" and not info.has_video:
        raise MediaError(path, f"an audio file without pictures; {flag} needs an image or a video")
    if info.kind == "image":
        if at is not None:  # one picture: no time to pick
            raise MediaError(path, f"a still image has no time; --at {at} applies to a video")
        return info, None
    if not info.duration or info.duration <= 0:  # as `avssl index` refuses it
        raise MediaError(path, "unknown or zero duration")
    duration = info.duration
    if at is None:
        return info, duration / 2
    if not (math.isfinite(at) and 0 <= at <= duration):
        raise MediaError(path, f"--at {at} s is outside the file (duration {duration:.2f} s)")
    return info, at


def query_input(
    cfg, path, modality: str, info, time: float | None, asked: str = "--at"
) -> torch.Tensor:
    """Model input of the query window, decoded as ``avssl index`` decodes a window.

    Args:
        cfg: the model's :class:`~avssl.config.Config`.
        path: the query file.
        modality: "audio" or "visual".
        info: its :func:`~avssl.data.media.probe`.
        time: the window centre (s; :func:`query_window`), None for a still image.
        asked: what chose ``time``, named when it lies after the decodable video.

    Returns:
        float ``[1, n]``, the ``window`` seconds of sound around ``time`` (audio), or float
        ``[1, 3, S, S]`` in ``[0, 1]``, the frame showing at ``time`` (visual).

    Raises:
        MediaError: unreadable, or ``time`` after the decodable picture (a truncated file whose
            header declares more).
    """
    d = cfg.data
    if modality == "audio":
        end = audio_end(path, info.duration)
        return read_audio_padded(path, time - d.window / 2, d.window, d.sample_rate, end)[None]
    size = (d.frame_size, d.frame_size)
    frame = next(iter_frames_at(path, [time or 0.0], size, asked=asked))
    return frames_to_input(torch.from_numpy(frame)[None], d.frame_size)


def unit_embedding(model, x: torch.Tensor, modality: str, device="cpu") -> torch.Tensor:
    """Unit-norm pooled embedding ``[D]`` of one :func:`query_input` ``x``."""
    emb = embed_audio(model, x, device) if modality == "audio" else embed_visual(model, x, device)
    return F.normalize(emb.float(), dim=1)[0]


def embed_query(model, cfg, path, modality: str, info, time: float | None, device="cpu"):
    """Unit-norm embedding ``[D]`` of the ``modality`` of ``path`` around ``time`` seconds."""
    return unit_embedding(model, query_input(cfg, path, modality, info, time), modality, device)


def _brute_candidates(x, files, n_files: int, query, k: int, per_file: bool) -> torch.Tensor:
    """Candidate rows from one float16 pass over all windows ``x`` ``[N, D]``.

    Without ``per_file`` the ``max(4k, 64)`` best windows; with it, every window of the
    ``max(4k, 64)`` files whose best window scores highest, so that the float32 re-score picks
    both each file's best window and the top files (near-ties in float16 reorder them).
    """
    rough = (x @ query.to(x.dtype)).float()  # [N], in the stored precision (float16)
    if not per_file:
        return rough.topk(min(max(4 * k, 64), rough.shape[0])).indices
    best = torch.full((n_files,), -math.inf).scatter_reduce(0, files, rough, reduce="amax")
    n = min(max(4 * k, 64), int(torch.isfinite(best).sum()))
    return torch.isin(files, best.topk(n).indices).nonzero().squeeze(1)


def _best_per_file(cand_files: torch.Tensor, exact: torch.Tensor, k: int) -> torch.Tensor:
    """Positions in the candidates of the ``k`` best files' best windows, best first.

    Args:
        cand_files: long ``[C]``, the file of each candidate window.
        exact: float ``[C]``, the candidates' float32 scores.
        k: number of files.

    Returns:
        long ``[min(k, files)]``; a file's tied windows resolve to the first candidate.
    """
    order = exact.argsort(descending=True, stable=True)
    n = order.shape[0]
    first = torch.full((int(cand_files.max()) + 1,), n).scatter_reduce(
        0, cand_files[order], torch.arange(n), reduce="amin"
    )  # each file's first (= best) place in the order
    return order[first[first < n].sort().values[:k]]


def ranked_rows(
    index: Index,
    query: torch.Tensor,
    target: str,
    k: int,
    per_file: bool = False,
    approx: bool = False,
    key: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the ``k`` best ``target`` windows and their float32 scores, best first.

    Args:
        index: a loaded :class:`~avssl.tools.index.Index`.
        query: float ``[D]``, unit norm.
        target: "audio" or "visual".
        k: number of rows (fewer when there are fewer windows, or files with ``per_file``).
        per_file: keep only each file's best window (always brute force).
        approx: candidates from the faiss HNSW index (see :func:`search`).
        key: the tensor of ``target`` windows searched (default ``target``; ``visual_cca`` or
            ``audio_cca``: the windows in an l3 index's CCA space, :mod:`avssl.tools.index_cca`).

    Returns:
        ``(rows, scores)``: long ``[k']`` rows of ``index.tensors[target]`` and float ``[k']``
        dot products with ``query``; ``k' <= k``.

    Raises:
        AvsslError: the query's width is not the stored ``target`` windows'.
    """
    key = key or target
    x, files = index.tensors[key], index.tensors[f"{target}_file"]
    if query.shape[-1] != x.shape[1]:
        raise AvsslError(
            f"{index.path}: its {target} windows are {x.shape[1]}-d, the query {query.shape[-1]}-d"
        )
    if approx and not per_file:
        from avssl.tools.ann import candidates

        cand = candidates(index, query, key, min(max(4 * k, 64), x.shape[0]))
    else:
        cand = _brute_candidates(x, files, len(index.files), query, k, per_file)
    exact = x[cand].float() @ query.float()  # re-score the candidates in float32
    if per_file:
        order = _best_per_file(files[cand], exact, k)
    else:
        order = exact.topk(min(k, cand.shape[0])).indices
    return cand[order], exact[order]


def results_of(index: Index, target: str, rows: torch.Tensor, scores: torch.Tensor) -> list[dict]:
    """``{"path", "time", "modality", "score"}`` dicts of ``target`` windows ``rows`` ``[R]``
    scored ``scores`` ``[R]``, in that order (``time`` None for a still image)."""
    files, times = index.tensors[f"{target}_file"], index.tensors[f"{target}_time"]
    results = []
    for r, score in zip(rows.tolist(), scores.tolist(), strict=True):
        t = float(times[r])
        results.append(
            {
                "path": index.files[int(files[r])]["path"],
                "time": None if math.isnan(t) else round(t, 3),
                "modality": target,
                "score": round(score, 6),
            }
        )
    return results


def search(
    index: Index,
    query: torch.Tensor,
    target: str,
    k: int,
    per_file: bool = False,
    approx: bool = False,
    key: str | None = None,
):
    """The ``k`` best ``target`` windows (or files) of ``index`` for a unit-norm query ``[D]``.

    Args:
        index: a loaded :class:`~avssl.tools.index.Index`.
        query: float ``[D]``.
        target: "audio" or "visual".
        k: number of results (at most the number of windows, or of files with ``per_file``).
        per_file: keep only each file's best window (always brute force).
        approx: take the candidates from a faiss HNSW index (:mod:`avssl.tools.ann`, built and
            cached on first use) instead of scanning every window; may miss some true matches.
        key: the tensor searched (default ``target``; see :func:`ranked_rows`).

    Returns:
        A list of ``{"path", "time", "modality", "score"}`` dicts, best first (``time`` None for
        a still image).

    Raises:
        AvsslError: the query's width is not the stored ``target`` windows'.
    """
    rows, scores = ranked_rows(index, query, target, k, per_file, approx, key)
    return results_of(index, target, rows, scores)
