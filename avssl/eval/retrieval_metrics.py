"""Ranking metrics of retrieval: recall@K, mAP, median rank and graded nDCG@K.

Every function takes a similarity matrix ``sim`` ``[Q, G]`` (query ``q`` against gallery item
``g``, higher = more similar) and ranks each row.

Tie rule: gallery items with equal scores are scored by the expectation over every order of
them (McSherry and Najork, "Computing information retrieval performance measures efficiently in
the presence of tied scores", ECIR 2008, https://doi.org/10.1007/978-3-540-78646-7_38), as
``pointing`` and ``sync`` score their ties; ``median_rank`` is the median over queries of each
query's expected first rank (not the expectation of the median). Without ties this is the plain
ranking; a model that outputs a constant score gets what a random order gets on average,
whatever order the gallery is stored in (ranking tied items in gallery order credited it when
the gallery was sorted by class, until 2026-12-06).

``exclude`` ``[Q, G]`` bool removes items from a query's gallery before ranking (a2a / v2v: the
query itself); ranks count only the remaining items.
"""

from __future__ import annotations

import numpy as np

from avssl.data.audioset import Ontology

__all__ = ["ndcg_at_k", "ontology_gains", "ranking_metrics", "shared_label_relevance"]


def _check_shapes(sim, **others) -> None:
    """A ValueError unless ``sim`` is 2-D ``[Q, G]`` and every other given array has its shape:
    a ``[1, G]`` relevance broadcast one query's over every row, and other shapes failed deep
    in numpy's indexing."""
    shape = np.shape(sim)
    if len(shape) != 2:
        raise ValueError(f"sim must be [Q, G] (queries x gallery), got shape {list(shape)}")
    for name, value in others.items():
        if value is not None and np.shape(value) != shape:
            raise ValueError(
                f"{name} must have sim's shape {list(shape)}, got {list(np.shape(value))}"
            )


def _blocks(sim: np.ndarray, exclude: np.ndarray | None):
    """Each row sorted by descending score, excluded items last, and its blocks of ties.

    Returns:
        ``(order, valid, start, size)``, each ``[Q, G]`` per sorted position: the gallery
        index, whether it is in the query's gallery, and the first position (0-based) and the
        length of the block of equal scores it belongs to (excluded items form their own).
    """
    sim = np.asarray(sim, dtype=np.float64)
    valid = np.ones(sim.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    order = np.lexsort((-sim, ~valid), axis=-1)  # valid first, then by score
    s, v = np.take_along_axis(sim, order, axis=1), np.take_along_axis(valid, order, axis=1)
    new = np.ones(sim.shape, bool)
    new[:, 1:] = (s[:, 1:] != s[:, :-1]) | (v[:, 1:] != v[:, :-1])
    pos = np.broadcast_to(np.arange(sim.shape[1]), sim.shape)
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    last = np.ones(sim.shape, bool)
    last[:, :-1] = new[:, 1:]
    end = np.minimum.accumulate(np.where(last, pos + 1, sim.shape[1])[:, ::-1], axis=1)[:, ::-1]
    return order, v, start, end - start


def _block_sums(x: np.ndarray, start: np.ndarray, size: np.ndarray):
    """Per sorted position: the sum of ``x`` before its block and within its block."""
    csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    before = np.take_along_axis(csum, start, axis=1)
    return before, np.take_along_axis(csum, start + size, axis=1) - before


def _p_hit_within(t: int, r: int, m: int) -> float:
    """Chance that ``m`` items drawn from ``t`` (``r`` of them relevant) hold a relevant one."""
    if m <= 0:
        return 0.0
    if m > t - r:
        return 1.0
    return 1.0 - float(np.prod((t - r - np.arange(m)) / (t - np.arange(m))))


def ranking_metrics(
    sim: np.ndarray,
    relevant: np.ndarray,
    exclude: np.ndarray | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict:
    """Recall@K, mean average precision and median rank of the first relevant item.

    ``R@K`` is the share of queries with at least one relevant item among the first K;
    ``mAP`` the mean over queries of the average precision (mean of precision@rank over the
    ranks of all relevant items); ``median_rank`` the median over queries of the 1-based rank
    of the first relevant item (each expected over the orders of tied items). Queries with no
    relevant item in their gallery are left out of every metric and counted in
    ``no_relevant``; ``n_queries`` counts the ones kept.

    Args:
        sim: float ``[Q, G]`` similarities.
        relevant: bool ``[Q, G]``, True where the gallery item is relevant to the query.
        exclude: optional bool ``[Q, G]``, True where the item is not in the query's gallery.
        ks: cut-offs K.

    Returns:
        dict with ``R@K`` for each K, ``mAP``, ``median_rank``, ``n_queries``, ``no_relevant``.
        Metrics are NaN when no query has a relevant item.

    Raises:
        ValueError: ``sim`` is not 2-D, or ``relevant`` or ``exclude`` is not of its shape.
    """
    _check_shapes(sim, relevant=relevant, exclude=exclude)
    order, valid, start, size = _blocks(sim, exclude)
    hits = np.take_along_axis(np.asarray(relevant, bool), order, axis=1) & valid
    c, r = _block_sums(hits.astype(np.float64), start, size)  # hits before / in the block
    n_rel = hits.sum(axis=1)
    keep = n_rel > 0
    res: dict = {}
    if not keep.any():
        res.update({f"R@{k}": float("nan") for k in ks})
        res.update(mAP=float("nan"), median_rank=float("nan"))
    else:
        # expected precision at each position, times the chance it holds a relevant item
        j = np.arange(sim.shape[1]) - start  # 0-based place within the block
        hits_above = c + j * np.maximum(r - 1, 0) / np.maximum(size - 1, 1)
        precision = (hits_above + 1) / (np.arange(sim.shape[1]) + 1)
        ap = (np.where(valid, r / size * precision, 0.0)).sum(axis=1)[keep] / n_rel[keep]
        first = np.argmax(r > 0, axis=1)[keep]  # a position of the first block with a hit
        rows = np.flatnonzero(keep)
        s0, t, rr = (a[rows, first] for a in (start, size, r.astype(np.int64)))
        first_rank = s0 + (t + 1) / (rr + 1)  # expected rank of the first relevant item
        for k in ks:
            drawn = zip(t.tolist(), rr.tolist(), (k - s0).tolist(), strict=True)
            hit = [_p_hit_within(*z) for z in drawn]
            res[f"R@{k}"] = float(np.mean(hit))
        res["mAP"] = float(np.mean(ap))
        res["median_rank"] = float(np.median(first_rank))
    res.update(n_queries=int(keep.sum()), no_relevant=int((~keep).sum()))
    return res


def shared_label_relevance(labels_q: list[list[str]], labels_g: list[list[str]]) -> np.ndarray:
    """bool ``[Q, G]``: True where query and gallery item share at least one label.

    Args:
        labels_q: the labels of each of the Q queries.
        labels_g: the labels of each of the G gallery items.
    """
    sets_g = [set(g) for g in labels_g]
    return np.array([[bool(set(q) & g) for g in sets_g] for q in labels_q], dtype=bool).reshape(
        len(labels_q), len(labels_g)
    )


def ontology_gains(
    labels_q: list[list[str]], labels_g: list[list[str]], ontology: Ontology
) -> np.ndarray:
    """Graded relevance ``[Q, G]`` from the distance of the labels in the AudioSet ontology.

    ``gain(q, g) = 2 ** -d`` where ``d = Ontology.min_distance`` is the fewest ontology edges
    between any label of ``q`` and any label of ``g`` (0: a shared class -> gain 1; parent and
    child -> 1/2; siblings -> 1/4; ...). Labels missing from the ontology are ignored; an item
    with no known label has gain 0 with everything. This follows the graded evaluation of
    Objects that Sound (https://arxiv.org/abs/1712.06651); the exact gain function is ours.

    Args:
        labels_q: the ontology class ids of each of the Q queries.
        labels_g: the ontology class ids of each of the G gallery items.
        ontology: the AudioSet ontology.

    Returns:
        float64 ``[Q, G]`` gains in [0, 1].
    """
    known_q = [[x for x in q if x in ontology] for q in labels_q]
    known_g = [[x for x in g if x in ontology] for g in labels_g]
    gains = np.zeros((len(labels_q), len(labels_g)))
    for i, q in enumerate(known_q):
        for j, g in enumerate(known_g):
            if q and g:
                gains[i, j] = 2.0 ** -ontology.min_distance(q, g)
    return gains


def ndcg_at_k(
    sim: np.ndarray, gains: np.ndarray, exclude: np.ndarray | None = None, k: int = 30
) -> dict:
    """Normalised discounted cumulative gain at K with graded gains.

    ``DCG@K = sum_{r=1..K} gain(item at rank r) / log2(r + 1)``; ``nDCG@K = DCG@K / IDCG@K``,
    where ``IDCG@K`` is the DCG of the query's gallery sorted by descending gain. Queries whose
    gallery has no positive gain are left out and counted in ``no_relevant``.

    Args:
        sim: float ``[Q, G]`` similarities (ranked with the module's tie rule).
        gains: float ``[Q, G]`` non-negative gains, e.g. :func:`ontology_gains`.
        exclude: optional bool ``[Q, G]`` items removed from each query's gallery.
        k: cut-off.

    Returns:
        dict with ``nDCG@K``, ``n_queries``, ``no_relevant``.

    Raises:
        ValueError: ``sim`` is not 2-D, or ``gains`` or ``exclude`` is not of its shape.
    """
    _check_shapes(sim, gains=gains, exclude=exclude)
    gains = np.asarray(gains, dtype=np.float64)
    if exclude is not None:
        gains = np.where(exclude, 0.0, gains)
    order, valid, start, size = _blocks(sim, exclude)
    sorted_gains = np.where(valid, np.take_along_axis(gains, order, axis=1), 0.0)
    _, in_block = _block_sums(sorted_gains, start, size)
    top = (in_block / size)[:, :k]  # a tied block's items each get its mean gain
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = (top * discount).sum(axis=1)
    ideal = -np.sort(-gains, axis=1)[:, :k]
    idcg = (ideal * discount[: ideal.shape[1]]).sum(axis=1)
    keep = idcg > 0
    value = float(np.mean(dcg[keep] / idcg[keep])) if keep.any() else float("nan")
    return {f"nDCG@{k}": value, "n_queries": int(keep.sum()), "no_relevant": int((~keep).sum())}
