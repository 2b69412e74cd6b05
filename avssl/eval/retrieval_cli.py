"""``evaluate.py retrieval``: class-level and instance retrieval across and within modalities.

Class level (directions a2v, v2a, a2a, v2v): a gallery item is relevant when it shares a label
with the query; in a2a / v2v the query itself is removed from its gallery. Instance level (a2v,
v2a): the query's own partner clip is the single relevant item. Metrics and the tie rule are
those of :mod:`avssl.eval.retrieval_metrics`; similarities those of :mod:`avssl.eval.retrieval`.

With ``--gallery OTHER.jsonl`` the test clips' audio (one centre window each) also queries the
visual items of another manifest (e.g. AV-Digits' single-digit ``gallery.jsonl``: every row, any
split, audio not needed), class level, reported under ``a2v_gallery``.
"""

from __future__ import annotations

import copy
import os

import numpy as np

from avssl.cli import ArgumentParser, positive_int, share
from avssl.cli_checkpoint import load_command_model
from avssl.errors import AvsslError
from avssl.eval.cca import DEFAULT_COMPONENTS, DEFAULT_RIDGE
from avssl.eval.cli import (
    SUBCOMMANDS,
    add_adapt,
    add_common,
    add_strict,
    add_tta,
    apply_tta,
    check_outputs,
    emit,
    skip_report,
    use_data,
)

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


def gallery_results(
    sim: np.ndarray, labels: list[list[str]], gallery_labels: list[list[str]]
) -> dict:
    """Class-level metrics of audio queries ``[Q]`` against a separate visual gallery ``[G]``.

    Args:
        sim: float ``[Q, G]`` similarities (rows: the queries' audio).
        labels: each query's labels.
        gallery_labels: each gallery item's labels; relevant = shares a label with the query.

    Returns:
        ``R@1/5/10``, ``mAP``, ``median_rank``, ``n_queries``, ``no_relevant`` (queries whose
        class the gallery lacks) and ``n_gallery``.
    """
    from avssl.eval.retrieval_metrics import ranking_metrics, shared_label_relevance

    res = ranking_metrics(sim, shared_label_relevance(labels, gallery_labels))
    res["n_gallery"] = len(gallery_labels)
    return res


def refuse_training_pictures(gallery, rows, data, progress: bool = True) -> None:
    """Refuse a ``--gallery`` holding pictures from the videos of the checkpoint's training
    split: the model (and a CCA fitted on those pairs, in-sample) has seen them, and they crowd
    the top of every ranking (an l3 gallery of its own manifest scored R@1 1.0, its test split
    0.19).

    Args:
        gallery: the gallery manifest.
        rows: its rows.
        data: the checkpoint's own data settings (before ``--data``).
        progress: show progress if the synthetic world has to be built.

    Raises:
        AvsslError: naming the gallery, the count and a first row.
    """
    from avssl.data.manifest import read_manifest, resolve
    from avssl.data.source import manifest_path

    own = manifest_path(data, progress=progress)
    seen = {os.path.realpath(resolve(own, r.visual)) for r in read_manifest(own, "train")}
    hits = [r for r in rows if os.path.realpath(resolve(gallery, r.visual)) in seen]
    if hits:
        raise AvsslError(
            f"{gallery}: {len(hits)} of its {len(rows)} pictures come from the checkpoint's "
            f"training split (e.g. {hits[0].id!r}); a gallery must hold pictures it has not "
            "trained on"
        )


def check_ontology(path: str, ontology, data) -> None:
    """Refuse an ``--ontology`` that knows none of the test split's labels: every gain would be
    0, so nDCG would be reported as null for a reason the JSON would not show.

    Args:
        path: ``--ontology``.
        ontology: the loaded :class:`~avssl.data.audioset.Ontology`.
        data: the evaluated data's config (its manifest's ``test`` rows are read, not decoded).

    Raises:
        AvsslError: naming the file, and a few of the labels it does not know.
    """
    from avssl.data.manifest import read_manifest
    from avssl.data.source import manifest_path

    labels = {
        x for r in read_manifest(manifest_path(data, announce=False), "test") for x in r.labels
    }
    if labels and not any(x in ontology for x in labels):
        shown = ", ".join(repr(x) for x in sorted(labels)[:3])
        raise AvsslError(
            f"{path}: none of the test split's {len(labels)} labels ({shown}, ...) is a class id "
            "of this ontology, so nDCG is undefined (AudioSet ids look like /m/09x0r)"
        )


def check_cca_flags(args, model, method: str, path) -> None:
    """Refuse ``--cca-dim`` / ``--cca-ridge`` given for a method with a shared space (no CCA is
    fitted, so they would be ignored); fill in their defaults otherwise.

    Args:
        args: the parsed ``retrieval`` arguments (``cca_dim``, ``cca_ridge``: None unless given).
        model: the loaded model (its ``shared_space``).
        method: its ``model.method``.
        path: the checkpoint, for the message.

    Raises:
        AvsslError: naming the flags given, the methods they apply to and the checkpoint's.
    """
    from avssl.models import METHODS

    given = [
        f
        for f, v in (("--cca-dim", args.cca_dim), ("--cca-ridge", args.cca_ridge))
        if v is not None
    ]
    if given and model.shared_space:
        without = ", ".join(n for n, c in METHODS.items() if not c.shared_space)
        raise AvsslError(
            f"{', '.join(given)}: apply to methods without a shared space ({without}) only; the "
            f"method of {path} is {method!r}"
        )
    args.cca_dim = DEFAULT_COMPONENTS if args.cca_dim is None else args.cca_dim
    args.cca_ridge = DEFAULT_RIDGE if args.cca_ridge is None else args.cca_ridge


def run(argv: list[str]) -> int:
    """``evaluate.py retrieval --checkpoint CKPT [--data MANIFEST] [--ontology ontology.json]
    [--gallery GALLERY.jsonl] [--audio-tta R] [--adapt-bn]``."""
    p = ArgumentParser(prog="evaluate.py retrieval", description=SUBCOMMANDS["retrieval"][1])
    add_common(p)
    p.add_argument("--data", help="manifest (default: the data the checkpoint was trained on)")
    p.add_argument("--ontology", help="AudioSet ontology.json: adds graded nDCG@30")
    p.add_argument(
        "--gallery", help="manifest of visual items (all rows, audio not needed): adds a2v_gallery"
    )
    p.add_argument(
        "--cca-dim",
        type=positive_int,
        help=f"CCA components (l3 only; default {DEFAULT_COMPONENTS})",
    )
    p.add_argument(
        "--cca-ridge",
        type=share,
        help="ridge on each side's covariance, relative to its mean variance, in [0, 1] (l3 only; "
        f"default {DEFAULT_RIDGE:g})",
    )
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    add_tta(p)
    add_adapt(p)
    add_strict(p)
    args = p.parse_args(argv)
    check_outputs(args)

    from avssl.data.audioset import Ontology
    from avssl.data.manifest import read_manifest
    from avssl.data.source import load_split
    from avssl.errors import ManifestError
    from avssl.eval.adapt_bn import adapt_on_waves
    from avssl.eval.cca import cca_project, fit_cca
    from avssl.eval.provenance import provenance
    from avssl.eval.retrieval import (
        centre_pairs,
        cross_similarity,
        embed_frames,
        embed_pairs,
        gallery_frames,
        similarities,
    )
    from avssl.train.runtime import resolve_device

    ontology = Ontology.load(args.ontology) if args.ontology else None
    gallery_rows = read_manifest(args.gallery) if args.gallery else None  # fail before decoding
    device = resolve_device(args.device, "--device")
    model, cfg, state = load_command_model(args.checkpoint, device)
    check_cca_flags(args, model, cfg.model.method, state["path"])
    tta = apply_tta(model, args)
    if gallery_rows is not None:  # against the checkpoint's own data, before --data replaces it
        refuse_training_pictures(args.gallery, gallery_rows, cfg.data, not args.no_progress)
    own = copy.deepcopy(cfg.data)  # the training data: l3's CCA is fitted on its train split
    use_data(cfg, args.data)
    if ontology is not None:
        check_ontology(args.ontology, ontology, cfg.data)
    kw = dict(device=device, precision=args.precision, batch_size=cfg.train.batch_size)
    gallery = None
    if gallery_rows is not None:  # decoded first: a bad gallery fails before the long part
        gallery = gallery_frames(gallery_rows, args.gallery, cfg.data.frame_size, cfg.data.fps)
        gallery_skips = skip_report(gallery, args.strict)
        if not gallery.rows:
            n = gallery_skips["n_skipped"]
            first = f"; first: {gallery.skipped[0][1]}" if gallery.skipped else ""
            raise ManifestError(f"{args.gallery}: no decodable gallery item ({n} skipped{first})")

    def split_embeddings(data, split: str, adapt: bool = False):
        ds = load_split(data, split, train=False, progress=not args.no_progress)
        skip_report(ds.store, args.strict)
        frames, waves = centre_pairs(ds.store, cfg.data.frame_size)
        info = adapt_on_waves(model, waves, **kw) if adapt else {}
        return ds.store, embed_pairs(model, frames, waves, **kw), info

    use_cca = not model.shared_space
    cca = None
    if use_cca:  # fitted on the checkpoint's training clips (never --data's), training statistics
        train_store, train_emb, _ = split_embeddings(own, "train")
        try:
            cca = fit_cca(train_emb["audio"], train_emb["visual"], args.cca_dim, args.cca_ridge)
        except AvsslError as err:  # a training split of one decodable clip
            raise AvsslError(f"{train_store.manifest}: {err}") from None
    store, emb, adapt = split_embeddings(cfg.data, "test", args.adapt_bn)
    if cca is not None:
        emb = cca_project(cca, emb)
    labels = [list(r.labels) for r in store.rows]
    result = retrieval_results(similarities(emb), labels, ontology)
    if gallery is not None:
        g_emb = embed_frames(model, gallery.frames, **kw)
        if cca is not None:  # the projection fitted on training pairs, applied to the gallery too
            g_emb = cca_project(cca, g_emb)
        sim = cross_similarity(emb["audio"], g_emb["visual"], g_emb["map"]).numpy()
        res = gallery_results(sim, labels, [list(r.labels) for r in gallery.rows])
        # which split's pictures: a gallery of test images scores a test, not a validation
        splits = sorted({r.split for r in gallery.rows})
        result["a2v_gallery"] = {
            **res, "gallery": str(args.gallery), "gallery_splits": splits, **gallery_skips
        }  # fmt: skip
    result.update(
        method=cfg.model.method,
        cca=use_cca,
        checkpoint=state["path"],
        cca_fit_on=str(train_store.manifest) if use_cca else None,
        cca_components=len(cca.correlations) if use_cca else None,
        cca_ridge=args.cca_ridge if use_cca else None,
        **tta,
        **adapt,
        **skip_report(store),
        **provenance(model, state, store.manifest),
    )
    emit(result, args, "Retrieval (test)")
    return 0
