"""``search(per_file=True)``: the files and their best windows are chosen on float32 scores."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from avssl.tools.index import FORMAT, Index, empty_tensors
from avssl.tools.query import search


def _near_tie_index(gen: torch.Generator, n_files: int, per_file: int, dim: int, query):
    """Windows whose scores against ``query`` are spread over [0.5, 0.505]: neighbours differ by
    far less than float16's resolution there (4.9e-4), so their rough scores tie or swap and only
    the float32 re-score ranks them; the 64th best file still trails the 7th by well over it."""
    n = n_files * per_file
    other = torch.randn(n, dim, generator=gen)
    other = F.normalize(other - (other @ query)[:, None] * query, dim=1)  # orthogonal to query
    cos = 0.5 + 0.005 * torch.rand(n, generator=gen)
    t = empty_tensors(dim)
    t["visual"] = (cos[:, None] * query + (1 - cos**2).sqrt()[:, None] * other).half()
    t["visual_file"] = torch.arange(n_files).repeat_interleave(per_file)
    t["visual_time"] = torch.arange(per_file).float().repeat(n_files)
    files = [{"path": f"f{i}"} for i in range(n_files)]
    return Index(Path("x"), {"format": FORMAT}, files, t)


def _brute_force(index: Index, query: torch.Tensor, k: int) -> list[tuple[str, float]]:
    """``(path, time)`` of each file's best window (first on ties), the ``k`` best files first."""
    t = index.tensors
    exact = (t["visual"].float() @ query).tolist()
    best: dict[int, tuple[float, int]] = {}
    for row, score in enumerate(exact):
        f = int(t["visual_file"][row])
        if f not in best or score > best[f][0]:
            best[f] = (score, row)
    top = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [(index.files[f]["path"], float(t["visual_time"][row])) for f, (_, row) in top]


def test_per_file_search_matches_float32_brute_force():
    wrong = []
    for seed in range(60):
        gen = torch.Generator().manual_seed(seed)
        dim, n_files, k = 32, 10 + 3 * seed, 1 + seed % 7  # up to 187 files: beyond the overscan
        query = F.normalize(torch.randn(dim, generator=gen), dim=0)
        index = _near_tie_index(gen, n_files, 1 + seed % 5, dim, query)
        got = search(index, query, "visual", k, per_file=True)
        if [(r["path"], r["time"]) for r in got] != _brute_force(index, query, k):
            wrong.append(seed)
        scores = [r["score"] for r in got]
        assert scores == sorted(scores, reverse=True)
        assert len({r["path"] for r in got}) == len(got) == k
    assert wrong == []


def test_windows_tied_in_float16_are_ranked_by_their_float32_scores():
    # 0.70715 and 0.70706 round to the same float16 query component: the rough pass ties the
    # two windows, and only the float32 re-score puts the better one (stored second) first
    t = empty_tensors(2)
    t["visual"] = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float16)
    t["visual_file"] = torch.tensor([0, 1])
    t["visual_time"] = torch.zeros(2)
    index = Index(Path("x"), {"format": FORMAT}, [{"path": "b"}, {"path": "a"}], t)
    query = torch.tensor([0.70715, 0.70706])
    assert query[0].half() == query[1].half()
    got = search(index, query, "visual", 2)
    assert [r["path"] for r in got] == ["a", "b"] and got[0]["score"] > got[1]["score"]
