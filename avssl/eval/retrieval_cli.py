"""``evaluate.py retrieval``: class-level and instance retrieval across and within modalities.

Class level (directions a2v, v2a, a2a, v2v): a gallery item is relevant when it shares a label
with the query; in a2a / v2v the query itself is removed from its gallery. Instance level (a2v,
v2a): the query's own partner clip is the single relevant item. Metrics and the tie rule are
those of :mod:`avssl.eval.retrieval_metrics`; similarities those of :mod:`avssl.eval.retrieval`.
"""

from __future__ import annotations

import argparse

import numpy as np

from avssl.eval.cli import SUBCOMMANDS, add_common, add_strict, emit, skip_report

DIRECTIONS = ("a2v", "v2a", "a2a", "v2v")


def retrieval_results(
    sims: dict[str, np.ndarray], labels: list[list[str]], ontology=None, ndcg_k: int = 30
) -> dict:
    """All retrieval metrics of the four ``[N, N]`` similarity matrices of N clips.

    Args:
        sims: ``a2v``, ``v2a``, ``a2a``, ``v2v`` similarities (rows: queries).
        labels: each clip's labels.
        ontology: optional :class:`avssl.data.audioset.Ontology`; adds ``nDCG@{ndcg_k}``.
        ndcg_k: nDCG cut-off.

    Returns:
        ``{"a2v": {...}, "v2a": {...}, "a2a": {...}, "v2v": {...}, "instance": {"a2v": {...},
        "v2a": {...}}, "n": N}``; metrics without any query are NaN (None in the CLI's JSON).
    """
    from avssl.eval.retrieval_metrics import (
        ndcg_at_k,
        ontology_gains,
        ranking_metrics,
        shared_label_relevance,
    )

    n = len(labels)
    relevant = shared_label_relevance(labels, labels)
    gains = ontology_gains(labels, labels, ontology) if ontology is not None else None
    self_mask = np.eye(n, dtype=bool)
    out: dict = {}
    for d in DIRECTIONS:
        exclude = self_mask if d in ("a2a", "v2v") else None
        out[d] = ranking_metrics(sims[d], relevant, exclude)
        if gains is not None:
            nd = ndcg_at_k(sims[d], gains, exclude, ndcg_k)
            out[d][f"nDCG@{ndcg_k}"] = nd[f"nDCG@{ndcg_k}"]
            out[d]["ndcg_no_relevant"] = nd["no_relevant"]
    out["instance"] = {}
    for d in ("a2v", "v2a"):
        res = ranking_metrics(sims[d], self_mask)
        out["instance"][d] = {k: res[k] for k in ("R@1", "R@5", "R@10", "median_rank")}
    out["n"] = n
    return out


def run(argv: list[str]) -> int:
    """``evaluate.py retrieval --checkpoint CKPT [--data MANIFEST] [--ontology ontology.json]``."""
    p = argparse.ArgumentParser(
        prog="evaluate.py retrieval", description=SUBCOMMANDS["retrieval"][1]
    )
    add_common(p)
    p.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument("--ontology", help="AudioSet ontology.json: adds graded nDCG@30")
    p.add_argument("--cca-dim", type=int, default=128, help="CCA components (l3 only)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    add_strict(p)
    args = p.parse_args(argv)

    from avssl.data.audioset import Ontology
    from avssl.data.source import load_split
    from avssl.eval.retrieval import (
        NO_SHARED_SPACE,
        cca_project,
        centre_pairs,
        embed_pairs,
        fit_cca,
        similarities,
    )
    from avssl.train.checkpoint import load_model
    from avssl.train.runtime import resolve_device

    ontology = Ontology.load(args.ontology) if args.ontology else None
    device = resolve_device(args.device)
    model, cfg, state = load_model(args.checkpoint, device)
    if args.data:
        cfg.data.root = args.data
    kw = dict(device=device, precision=args.precision, batch_size=cfg.train.batch_size)

    def split_embeddings(split: str):
        ds = load_split(cfg.data, split, train=False, progress=not args.no_progress)
        skip_report(ds.store, args.strict)
        frames, waves = centre_pairs(ds.store, cfg.data.frame_size)
        return ds.store, embed_pairs(model, frames, waves, **kw)

    store, emb = split_embeddings("test")
    use_cca = cfg.model.method in NO_SHARED_SPACE
    if use_cca:
        _, train_emb = split_embeddings("train")  # CCA is fitted on training clips only
        emb = cca_project(fit_cca(train_emb["audio"], train_emb["visual"], args.cca_dim), emb)
    labels = [list(r.labels) for r in store.rows]
    result = retrieval_results(similarities(emb), labels, ontology)
    result.update(
        method=cfg.model.method,
        cca=use_cca,
        checkpoint=state["path"],
        **skip_report(store),
    )
    emit(result, args, "Retrieval (test)")
    return 0
