"""Brute-force query latency of ``avssl query`` over large random indexes, and index load time.

An index of N random unit-norm 128-d visual windows (100 files' worth of ids) is saved with
:func:`avssl.tools.index.save_index`, loaded back with :func:`~avssl.tools.index.load_index`
(timed) and searched with :func:`avssl.tools.query.search` (median ms over ``--queries``
random queries, k = 10). Target: under 50 ms per query at 1M windows on 2 CPU cores.

usage: python benchmarks/query.py [--quick] [--queries 50]

``--quick`` measures 100k windows only (under 30 s). The last stdout line is one JSON object,
e.g. ``{"100000": {"load_s": 0.05, "query_ms": 2.1}, "1000000": {...}, "dim": 128}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from avssl.tools.index import FORMAT, Index, empty_tensors, load_index, save_index
from avssl.tools.query import search

DIM = 128


def measure(n: int, queries: int, folder: Path) -> dict:
    g = torch.Generator().manual_seed(n)
    t = empty_tensors(DIM)
    t["visual"] = F.normalize(torch.randn(n, DIM, generator=g), dim=1).to(t["visual"].dtype)
    t["visual_file"] = torch.arange(n) % 100
    t["visual_time"] = (torch.arange(n) // 100).float()
    files = [{"path": f"file{i}.mp4"} for i in range(100)]
    path = folder / f"idx{n}"
    save_index(Index(path, {"format": FORMAT, "hop": 1.0}, files, t))
    del t
    t0 = time.perf_counter()
    index = load_index(path, mmap=False)
    load_s = time.perf_counter() - t0
    qs = F.normalize(torch.randn(queries, DIM, generator=g), dim=1)
    search(index, qs[0], "visual", 10)  # warm-up
    times = []
    for q in qs:
        t0 = time.perf_counter()
        search(index, q, "visual", 10)
        times.append(time.perf_counter() - t0)
    return {"load_s": round(load_s, 3), "query_ms": round(1000 * statistics.median(times), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100k windows only")
    p.add_argument("--queries", type=int, default=50)
    args = p.parse_args(argv)
    result: dict = {"dim": DIM, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100_000,) if args.quick else (100_000, 1_000_000):
            result[str(n)] = measure(n, args.queries, Path(tmp))
            print(f"{n} windows: {result[str(n)]}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
