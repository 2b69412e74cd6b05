"""Ranking metrics of retrieval: recall@K, mAP, median rank and graded nDCG@K.

Every function takes a similarity matrix ``sim`` ``[Q, G]`` (query ``q`` against gallery item
``g``, higher = more similar) and ranks each row.

Tie rule: a row is ranked by a *stable* sort on descending similarity, so gallery items with
equal scores keep their index order (lower gallery index first). This is deterministic and
neither optimistic nor pessimistic on average; a model that outputs a constant score gets the
gallery in its stored order.

``exclude`` ``[Q, G]`` bool removes items from a query's gallery before ranking (a2a / v2v: the
query itself); ranks count only the remaining items.
"""

from __future__ import annotations

import numpy as np

from avssl.data.audioset import Ontology


def _ranked(sim: np.ndarray, exclude: np.ndarray | None):
    """Sort order of each row and, per sorted position, whether the item is still in the gallery."""
    sim = np.asarray(sim, dtype=np.float64)
    order = np.argsort(-sim, axis=1, kind="stable")
    valid = np.ones(sim.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    return order, np.take_along_axis(valid, order, axis=1)


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
    of the first relevant item. Queries with no relevant item in their gallery are left out of
    every metric and counted in ``no_relevant``; ``n_queries`` counts the ones kept.

    Args:
        sim: float ``[Q, G]`` similarities.
        relevant: bool ``[Q, G]``, True where the gallery item is relevant to the query.
        exclude: optional bool ``[Q, G]``, True where the item is not in the query's gallery.
        ks: cut-offs K.

    Returns:
        dict with ``R@K`` for each K, ``mAP``, ``median_rank``, ``n_queries``, ``no_relevant``.
        Metrics are NaN when no query has a relevant item.
    """
    order, valid = _ranked(sim, exclude)
    hits = np.take_along_axis(np.asarray(relevant, bool), order, axis=1) & valid
    rank = np.cumsum(valid, axis=1)  # 1-based rank among the gallery at each sorted position
    n_rel = hits.sum(axis=1)
    keep = n_rel > 0
    hits, rank, n_rel = hits[keep], rank[keep], n_rel[keep]
    res: dict = {}
    if not keep.any():
        res.update({f"R@{k}": float("nan") for k in ks})
        res.update(mAP=float("nan"), median_rank=float("nan"))
    else:
        first = np.where(hits, rank, np.iinfo(np.int64).max).min(axis=1)
        for k in ks:
            res[f"R@{k}"] = float(np.mean(first <= k))
        precision = np.cumsum(hits, axis=1) / np.maximum(rank, 1)  # rank 0: excluded, no hit
        res["mAP"] = float(np.mean((precision * hits).sum(axis=1) / n_rel))
        res["median_rank"] = float(np.median(first))
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
    """
    gains = np.asarray(gains, dtype=np.float64)
    if exclude is not None:
        gains = np.where(exclude, 0.0, gains)
    order, valid = _ranked(sim, exclude)
    sorted_gains = np.take_along_axis(gains, order, axis=1)
    # drop excluded items, keep order: a stable sort on "not valid" moves them to the end
    compact = np.argsort(~valid, axis=1, kind="stable")
    top = np.take_along_axis(sorted_gains, compact, axis=1)[:, :k]
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = (top * discount).sum(axis=1)
    ideal = -np.sort(-gains, axis=1)[:, :k]
    idcg = (ideal * discount[: ideal.shape[1]]).sum(axis=1)
    keep = idcg > 0
    value = float(np.mean(dcg[keep] / idcg[keep])) if keep.any() else float("nan")
    return {f"nDCG@{k}": value, "n_queries": int(keep.sum()), "no_relevant": int((~keep).sum())}
