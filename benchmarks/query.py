"""Query latency of ``avssl query`` over large random indexes: brute force, and ``--approx``.

An index of N random unit-norm 128-d visual windows (100 files' worth of ids) is saved with
:func:`avssl.tools.index.save_index`, loaded back with :func:`~avssl.tools.index.load_index`
(timed) and searched with :func:`avssl.tools.query.search` (median ms over ``--queries``
random queries, k = 10). Target: under 50 ms per query at 1M windows on 2 CPU cores.

``--approx`` (needs faiss) also measures ``search(..., approx=True)``: the faiss HNSW build time
(``approx_build_s``, first query, cache written), the cached-index load time
(``approx_load_s``), the median ms per query (``approx_query_ms``) and the mean recall@10 of
the approximate results against the brute-force ones (``recall_at_10``). Random unit vectors
have no cluster structure, the hardest case for an approximate index; recall on real embeddings
is usually higher.

usage: python benchmarks/query.py [--quick] [--approx] [--queries 50]

``load_s`` reads a file the benchmark has just written, so it comes from the page cache.
``cold_s`` is what a fresh ``avssl query`` waits for on an index that is not in memory: the index
files are first evicted from the page cache (``posix_fadvise(DONTNEED)``, after ``fsync``; no
root needed), then the index is memory-mapped as ``avssl query`` does and the first query run,
which reads the pages it touches from disk. It is ``null`` where ``posix_fadvise`` is missing
(macOS, Windows), and depends on the disk as much as on the code.

``--quick`` measures 100k windows only (under 30 s without ``--approx``). The last stdout line
is one JSON object, e.g. ``{"100000": {"load_s": 0.05, "cold_s": 0.4, "query_ms": 2.1},
"1000000": {...}, "dim": 128}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from avssl.cli import ArgumentParser, int_at_least
from avssl.tools.index import FORMAT, Index, empty_tensors, load_index, save_index
from avssl.tools.query import search

DIM = 128


def _median_ms(index, qs, approx: bool) -> tuple[float, list]:
    search(index, qs[0], "visual", 10, approx=approx)  # warm-up
    times, results = [], []
    for q in qs:
        t0 = time.perf_counter()
        results.append(search(index, q, "visual", 10, approx=approx))
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2), results


def _keys(results: list[dict]) -> set:
    return {(r["path"], r["time"]) for r in results}


def measure_approx(index, qs, brute: list) -> dict:
    """Build (timed), reload from cache (timed) and query the faiss index; recall@10."""
    from avssl.tools import ann

    t0 = time.perf_counter()
    ann.load_or_build(index, "visual")
    build_s = time.perf_counter() - t0
    ann._LOADED.clear()  # time a fresh process reading the cache
    t0 = time.perf_counter()
    ann.load_or_build(index, "visual")
    load_s = time.perf_counter() - t0
    ms, approx = _median_ms(index, qs, approx=True)
    recall = statistics.mean(
        len(_keys(a) & _keys(b)) / len(b) for a, b in zip(approx, brute, strict=True)
    )
    return {
        "approx_build_s": round(build_s, 2),
        "approx_load_s": round(load_s, 3),
        "approx_query_ms": ms,
        "recall_at_10": round(recall, 4),
    }


def evict(folder: Path) -> bool:
    """Drop the files of ``folder`` from the page cache; False where the OS cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for f in folder.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def cold_query_s(path: Path, q: torch.Tensor) -> float | None:
    """Seconds to memory-map the index and answer one unit query ``q`` ``[D]`` with its files
    not in memory; None where the OS cannot drop them from the page cache."""
    if not evict(path):
        return None
    t0 = time.perf_counter()
    search(load_index(path), q, "visual", 10)
    return round(time.perf_counter() - t0, 3)


def measure(n: int, queries: int, folder: Path, approx: bool = False) -> dict:
    """Save an index of ``n`` random unit-norm visual windows under ``folder``, then time its
    load (s), a cold query (:func:`cold_query_s`) and ``queries`` random queries (median ms);
    with ``approx`` also the faiss HNSW search (:func:`measure_approx`)."""
    g = torch.Generator().manual_seed(n)
    t = empty_tensors(DIM)
    t["visual"] = F.normalize(torch.randn(n, DIM, generator=g), dim=1).to(t["visual"].dtype)
    t["visual_file"] = torch.arange(n) % 100
    t["visual_time"] = (torch.arange(n) // 100).float()
    files = [{"path": f"file{i}.mp4"} for i in range(100)]
    path = folder / f"idx{n}"
    # a random index, no model: the checkpoint record only names where it came from
    built = {"path": "benchmarks/query.py (random embeddings)", "sha256": "0" * 64}
    save_index(Index(path, {"format": FORMAT, "hop": 1.0, "checkpoint": built}, files, t))
    del t
    t0 = time.perf_counter()
    index = load_index(path, mmap=False)
    load_s = time.perf_counter() - t0
    qs = F.normalize(torch.randn(queries, DIM, generator=g), dim=1)
    cold_s = cold_query_s(path, qs[0])
    ms, brute = _median_ms(index, qs, approx=False)
    out = {"load_s": round(load_s, 3), "cold_s": cold_s, "query_ms": ms}
    if approx:
        out.update(measure_approx(index, qs, brute))
    return out


def main(argv=None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/query.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100k windows only")
    p.add_argument("--approx", action="store_true", help="also time the faiss HNSW search")
    p.add_argument("--queries", type=int_at_least(1, 100_000), default=50)
    args = p.parse_args(argv)
    result: dict = {"dim": DIM, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100_000,) if args.quick else (100_000, 1_000_000):
            result[str(n)] = measure(n, args.queries, Path(tmp), args.approx)
            print(f"{n} windows: {result[str(n)]}")
    print(json.dumps(result))
    return 0
