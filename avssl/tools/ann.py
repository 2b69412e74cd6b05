"""Approximate nearest-neighbour search over an index with faiss (``avssl query --approx``).

The approximate index is an HNSW graph over the unit-norm embeddings with inner-product metric
(``faiss.IndexHNSWFlat``, `Malkov & Yashunin 2018 <https://arxiv.org/abs/1603.09320>`_). HNSW
was chosen over IVF because it needs no training step (so it works for any collection size,
including one that grows by re-indexing) and gives the best recall per query time of the
in-memory methods on ann-benchmarks; query time grows roughly with log N instead of N. The price
is a slow build, done once (30 s for 100k 128-d windows on one core, so several minutes per
million), and about ``2 * M * 4`` bytes of graph per window on top of the float32 vectors.
Recall is tuned at query time by ``efSearch`` (the breadth of the graph walk); IVF would build
faster but needs k-means training and an ``nprobe`` chosen per collection. At 100k windows the
graph is no faster than brute force (both ~3 ms a query, ``benchmarks/query.py --approx``); it
pays off from about a million windows, where brute force grows tenfold and the graph does not.

The faiss index is built once per index and searched tensor (a modality's windows, or their
CCA variates in an l3 index: ``visual_cca``, ``audio_cca``) and cached beside the index files as
``hnsw-<tensor>-<token>.faiss``, where ``<token>`` is taken from the tensor file name recorded in
``meta.json``. :func:`avssl.tools.index.save_index` writes every change under a fresh tensor
file name, so a changed index never matches an old cache: it is rebuilt (and the stale cache
removed) on the next ``--approx`` query. Caches are written atomically (temporary file, then
``os.replace``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import torch

from avssl.atomic_write import replacing
from avssl.errors import AvsslError
from avssl.tools.index import Index

HNSW_M = 32  # graph degree: recall vs memory and build time
EF_CONSTRUCTION = 64  # build-time breadth: a better graph for a slower build
# query-time breadth (raised to the number of candidates asked for); on random 128-d unit
# vectors, the worst case, recall@10 at 100k windows is 0.58 / 0.89 / 0.97 at 128 / 512 / 1024
EF_SEARCH = 512
_LOADED: dict[Path, object] = {}  # the faiss indexes in use by this process, by cache path


def import_faiss(where: str | os.PathLike):
    """The ``faiss`` module, or a one-line :class:`AvsslError` naming ``where`` if missing."""
    try:
        import faiss
    except ImportError:
        raise AvsslError(f"{where}: --approx needs faiss (pip install -e '.[faiss]')") from None
    return faiss


def cache_path(index: Index, key: str) -> Path | None:
    """Where the faiss index of ``key`` is cached, or None for an index never saved."""
    tensors = index.meta.get("tensors")
    if not tensors:
        return None
    token = Path(tensors).stem.removeprefix("embeddings-")
    return index.path / f"hnsw-{key}-{token}.faiss"


def build(index: Index, key: str):
    """A new ``faiss.IndexHNSWFlat`` (inner product) over the ``key`` embeddings ``[N, D]``."""
    faiss = import_faiss(index.path)
    x = index.tensors[key].float().numpy()
    ann = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    ann.hnsw.efConstruction = EF_CONSTRUCTION
    ann.add(x)
    return ann


def _write(ann, path: Path, key: str) -> None:
    faiss = import_faiss(path.parent)
    try:
        with replacing(path) as tmp:
            faiss.write_index(ann, str(tmp))
    except (OSError, RuntimeError) as err:  # e.g. a read-only index: search anyway, uncached
        print(f"warning: {path}: cannot cache the approximate index ({err})", file=sys.stderr)
        return
    for stale in path.parent.glob(f"hnsw-{key}-*.faiss"):
        if stale != path:
            stale.unlink(missing_ok=True)


def load_or_build(index: Index, key: str):
    """The cached faiss index of ``key`` if it matches ``index``, else a new one (cached)."""
    faiss = import_faiss(index.path)
    path = cache_path(index, key)
    if path in _LOADED:
        return _LOADED[path]
    ann = None
    if path is not None and path.is_file():
        with contextlib.suppress(RuntimeError):  # a damaged cache is rebuilt like a stale one
            ann = faiss.read_index(str(path))
    if ann is None or ann.ntotal != index.count(key):
        ann = build(index, key)
        if path is not None:
            _write(ann, path, key)
    if path is not None:
        _LOADED.clear()  # keep one graph in memory: they are as large as the index
        _LOADED[path] = ann
    return ann


def candidates(index: Index, query: torch.Tensor, key: str, n: int) -> torch.Tensor:
    """Rows ``[<=n]`` of the ``n`` approximately best ``key`` windows for a query ``[D]``."""
    ann = load_or_build(index, key)
    ann.hnsw.efSearch = max(EF_SEARCH, n)
    _, rows = ann.search(query.float().reshape(1, -1).contiguous().numpy(), n)
    rows = torch.from_numpy(rows[0])
    return rows[rows >= 0]  # faiss pads with -1 when it finds fewer than n
