"""Class-level quality of ``avssl query``'s cross-modal search: files of the query's class first.

``evaluate.py retrieval`` scores clips against clips under its protocol; this scores the search
tool as a user meets it. Each row of the manifest's ``--split`` is a query: its sound at the
middle of its window (``avssl query --video F --at T``; with ``--target audio`` its picture
there), decoded and embedded as ``avssl query`` does, mapped through the index's CCA for a model
without a shared space (l3: :mod:`avssl.tools.index_cca`). Every file of the index is ranked by
its best window (``avssl query --per-file``, here exact over all windows), and a file is
relevant when its manifest row shares a label with the query's. R@K and mAP are
:func:`avssl.eval.retrieval_metrics.ranking_metrics` (ties as the average over their orders).
``chance_R@1`` is the mean share of relevant files: what a random ranking scores. This measures
the tool, not a protocol: the query's own file is in the gallery (and relevant), and for l3 the
CCA was fitted on the indexed windows, the query's among them (``evaluate.py retrieval`` fits it
on training pairs only).

usage: python benchmarks/query_classes.py --index INDEX --checkpoint CKPT --manifest M
       [--split test] [--target visual]

The index is made first with ``avssl index --checkpoint CKPT --inputs FOLDERS... --out INDEX``;
files it holds that the manifest does not name are never relevant. A query video that cannot be
read is skipped and counted (``n_skipped``, ``skipped``). The last stdout line is one JSON
object, e.g. ``{"method": "l3", "queries": 64, "files": 64, "R@1": 0.5, ..., "cca": {...}}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json

import torch

from avssl.cli import ArgumentParser
from avssl.cli_checkpoint import load_command_model
from avssl.errors import AvsslError, MediaError, skip_fields


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/query_classes.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="an index made by avssl index")
    p.add_argument("--checkpoint", required=True, help="the checkpoint it was built with")
    p.add_argument("--manifest", required=True, help="manifest naming the files and labels")
    p.add_argument("--split", default="test", help="the manifest split whose rows query")
    p.add_argument("--target", choices=("audio", "visual"), default="visual")
    args = p.parse_args(argv)

    from avssl.data.manifest import read_manifest, resolve
    from avssl.eval.retrieval_metrics import ranking_metrics, shared_label_relevance
    from avssl.tools.index import load_index, weights_hash
    from avssl.tools.index_cca import cca_query, check_cca
    from avssl.tools.query import query_input, query_window, unit_embedding

    index = load_index(args.index)
    model, cfg, state = load_command_model(args.checkpoint)
    model.eval()
    index.check_checkpoint(weights_hash(model), state["path"], cfg)
    target, modality = args.target, "visual" if args.target == "audio" else "audio"
    key, cca = target, None
    if not model.shared_space:
        cca, key = check_cca(index, "avssl index on it"), f"{target}_cca"
    rows = read_manifest(args.manifest)
    # the index holds resolved paths (links and ".." followed): compare them so
    labels_of = {
        str(resolve(args.manifest, r.video or r.audio or r.image).resolve()): r.labels for r in rows
    }
    queries = [r for r in rows if r.split == args.split and r.video is not None]
    if not queries:
        raise AvsslError(f"{args.manifest}: no {args.split} row with a video to query")
    indexed = {f["path"] for f in index.files}
    if not any(str(resolve(args.manifest, r.video).resolve()) in indexed for r in queries):
        raise AvsslError(
            f"{args.index}: holds none of the {args.split} videos of {args.manifest}; index them "
            "(avssl index --inputs FOLDER)"
        )

    x = index.tensors[key].float()  # [N, D] every target window
    files = index.tensors[f"{target}_file"]
    n_files = len(index.files)
    sims, kept, skipped = [], [], []
    for row in queries:
        path = resolve(args.manifest, row.video)
        at = None if row.end is None else (row.start + row.end) / 2
        try:  # an unreadable query video is skipped and counted, as dataset commands do
            info, t = query_window(path, modality, at, "--video")
            q = unit_embedding(model, query_input(cfg, path, modality, info, t), modality)
        except MediaError as err:
            skipped.append({"id": row.id, "reason": err.reason})
            continue
        if cca is not None:
            q = cca_query(index, q, modality)
        best = torch.full((n_files,), -float("inf"))
        sims.append(best.scatter_reduce_(0, files, x @ q, reduce="amax"))
        kept.append(row)
    if not kept:
        first = f"; first: {skipped[0]['id']}: {skipped[0]['reason']}"
        raise AvsslError(f"{args.manifest}: no readable {args.split} video to query{first}")
    queries, sim = kept, torch.stack(sims)
    has = torch.zeros(n_files, dtype=torch.bool)
    has[files] = True  # files without a target window are not in the gallery
    relevant = shared_label_relevance(
        [r.labels for r in queries], [labels_of.get(f["path"], []) for f in index.files]
    )
    exclude = (~has)[None].expand(len(queries), -1).numpy()
    res = ranking_metrics(sim.numpy(), relevant, exclude)
    chance = (relevant & ~exclude).sum(1) / max(1, int(has.sum()))
    out = {
        "method": cfg.model.method,
        "target": target,
        "queries": len(queries),
        "files": int(has.sum()),
        **{k: round(v, 4) for k, v in res.items() if isinstance(v, float)},
        "chance_R@1": round(float(chance.mean()), 4),
        "cca": cca,
        **skip_fields(skipped),
    }
    print(json.dumps(out))
    return 0
