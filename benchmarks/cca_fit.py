"""Seconds to fit the CCA of ``l3`` retrieval, closed form against scikit-learn's NIPALS ``CCA``.

``evaluate.py retrieval`` fits CCA on every training pair of an ``l3`` checkpoint
(:func:`avssl.eval.cca.fit_cca`). This times that fit on random pairs shaped like l3's 512-d tower
features (``--pairs`` of them, sharing 16 latent factors), and with ``--nipals`` also
:class:`sklearn.cross_decomposition.CCA` with the settings avssl used until 2026-12-06
(``max_iter=1000``; minutes at 2,000 pairs), and the largest gap between the two fits' canonical
correlations on the training pairs (the first 16, the shared factors, and all).

usage: python benchmarks/cca_fit.py [--pairs 2000] [--dim 512] [--components 128] [--nipals]

The last stdout line is one JSON object, e.g.
``{"pairs": 2000, "dim": 512, "components": 128, "closed_form_s": 0.45, "nipals_s": 105.6, ...}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json
import time
import warnings

import numpy as np
import torch

from avssl.cli import ArgumentParser, int_at_least
from avssl.eval.cca import fit_cca


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/cca_fit.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int_at_least(2, 10**6), default=2000)
    p.add_argument("--dim", type=int_at_least(1, 8192), default=512)
    p.add_argument("--components", type=int_at_least(1, 8192), default=128)
    p.add_argument("--nipals", action="store_true", help="also time sklearn's CCA (slow)")
    args = p.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    z = torch.randn(args.pairs, 16, generator=g)
    a = z @ torch.randn(16, args.dim, generator=g) + torch.randn(args.pairs, args.dim, generator=g)
    v = z @ torch.randn(16, args.dim, generator=g) + torch.randn(args.pairs, args.dim, generator=g)
    fit_cca(a[:50], v[:50], 2)  # imports and thread pools outside the timing
    t = time.perf_counter()
    ours = fit_cca(a, v, args.components)
    out = {
        "pairs": args.pairs,
        "dim": args.dim,
        "components": len(ours.correlations),
        "closed_form_s": round(time.perf_counter() - t, 3),
    }
    if args.nipals:
        from sklearn.cross_decomposition import CCA
        from sklearn.exceptions import ConvergenceWarning

        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = CCA(n_components=out["components"], max_iter=1000).fit(a.double(), v.double())
        out["nipals_s"] = round(time.perf_counter() - t, 3)
        out["nipals_capped_components"] = int((np.asarray(ref.n_iter_) >= 1000).sum())
        ref_a, ref_v = ref.transform(a.double().numpy(), v.double().numpy())
        theirs = [np.corrcoef(ref_a[:, j], ref_v[:, j])[0, 1] for j in range(ref_a.shape[1])]
        gap = np.abs(np.asarray(theirs) - ours.correlations)
        out["correlation_gap_first_16"] = round(float(gap[:16].max()), 4)
        out["correlation_gap_max"] = round(float(gap.max()), 4)
    print(json.dumps(out))
    return 0
