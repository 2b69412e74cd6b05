"""Retrieval metrics against slow python-loop references, and the CLI end to end (incl. L3+CCA)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_media import last_json

import evaluate
import train
from avssl.data.audioset import Node, Ontology
from avssl.data.source import manifest_path
from avssl.eval import cca, retrieval
from avssl.eval.retrieval_metrics import (
    ndcg_at_k,
    ontology_gains,
    ranking_metrics,
    shared_label_relevance,
)
from avssl.train.checkpoint import checkpoint_config, load_checkpoint
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


# ---- slow, obviously-correct references -------------------------------------------------------


def ref_ranking(sim, rel, exclude=None, ks=(1, 5, 10)):
    firsts, aps, none = [], [], 0
    for q in range(sim.shape[0]):
        gallery = [g for g in range(sim.shape[1]) if exclude is None or not exclude[q, g]]
        ranked = sorted(gallery, key=lambda g: -sim[q, g])  # untied scores
        rel_ranks = [r + 1 for r, g in enumerate(ranked) if rel[q, g]]
        if not rel_ranks:
            none += 1
            continue
        firsts.append(rel_ranks[0])
        aps.append(np.mean([(i + 1) / r for i, r in enumerate(rel_ranks)]))
    out = {f"R@{k}": np.mean([f <= k for f in firsts]) for k in ks}
    out.update(mAP=np.mean(aps), median_rank=np.median(firsts), no_relevant=none)
    return out


def _tie_orders(sim_row, gallery):
    """Every order of ``gallery`` by descending score (each order of each block of ties)."""
    from itertools import permutations, product

    values = sorted({sim_row[g] for g in gallery}, reverse=True)
    blocks = [[g for g in gallery if sim_row[g] == v] for v in values]
    for parts in product(*(permutations(b) for b in blocks)):
        yield [g for part in parts for g in part]


def ref_ranking_ties(sim, rel, exclude=None, ks=(1, 5, 10)):
    """The expectation over every order of tied items of the plain metrics, by enumeration
    (``median_rank``: the median over queries of each query's expected first rank)."""
    firsts, aps, recalls, none = [], [], {k: [] for k in ks}, 0
    for q in range(sim.shape[0]):
        gallery = [g for g in range(sim.shape[1]) if exclude is None or not exclude[q, g]]
        if not any(rel[q, g] for g in gallery):
            none += 1
            continue
        first, ap, hit = [], [], {k: [] for k in ks}
        for ranked in _tie_orders(sim[q], gallery):
            rel_ranks = [r + 1 for r, g in enumerate(ranked) if rel[q, g]]
            first.append(rel_ranks[0])
            ap.append(np.mean([(i + 1) / r for i, r in enumerate(rel_ranks)]))
            for k in ks:
                hit[k].append(rel_ranks[0] <= k)
        firsts.append(np.mean(first))
        aps.append(np.mean(ap))
        for k in ks:
            recalls[k].append(np.mean(hit[k]))
    out = {f"R@{k}": np.mean(recalls[k]) for k in ks}
    out.update(mAP=np.mean(aps), median_rank=np.median(firsts), no_relevant=none)
    return out


def ref_ndcg_ties(sim, gains, exclude=None, k=30):
    vals = []
    for q in range(sim.shape[0]):
        gallery = [g for g in range(sim.shape[1]) if exclude is None or not exclude[q, g]]
        best = sorted((gains[q, g] for g in gallery), reverse=True)[:k]
        idcg = sum(x / np.log2(r + 2) for r, x in enumerate(best))
        if idcg > 0:
            dcgs = [
                sum(gains[q, g] / np.log2(r + 2) for r, g in enumerate(ranked[:k]))
                for ranked in _tie_orders(sim[q], gallery)
            ]
            vals.append(np.mean(dcgs) / idcg)
    return np.mean(vals)


def ref_ndcg(sim, gains, exclude=None, k=30):
    vals = []
    for q in range(sim.shape[0]):
        gallery = [g for g in range(sim.shape[1]) if exclude is None or not exclude[q, g]]
        ranked = sorted(gallery, key=lambda g: -sim[q, g])[:k]
        dcg = sum(gains[q, g] / np.log2(r + 2) for r, g in enumerate(ranked))
        best = sorted((gains[q, g] for g in gallery), reverse=True)[:k]
        idcg = sum(x / np.log2(r + 2) for r, x in enumerate(best))
        if idcg > 0:
            vals.append(dcg / idcg)
    return np.mean(vals)


def _random_case(seed, q=13, g=17):
    rng = np.random.default_rng(seed)
    sim = rng.random((q, g))  # no ties (tied scores: see the tie test below)
    rel = rng.random((q, g)) < 0.2
    rel[0] = False  # a query with nothing relevant
    exclude = rng.random((q, g)) < 0.1
    return sim, rel, exclude


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_exclude", [False, True])
def test_ranking_metrics_match_reference(seed, with_exclude):
    sim, rel, exclude = _random_case(seed)
    exclude = exclude if with_exclude else None
    got, want = ranking_metrics(sim, rel, exclude), ref_ranking(sim, rel, exclude)
    for key in ("R@1", "R@5", "R@10", "mAP", "median_rank"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["no_relevant"] == want["no_relevant"] >= 1
    assert got["n_queries"] == sim.shape[0] - want["no_relevant"]


def test_perfect_and_reversed_ranking():
    n = 8
    rel = np.eye(n, dtype=bool)
    perfect = ranking_metrics(np.eye(n), rel)
    assert perfect["R@1"] == perfect["mAP"] == 1.0 and perfect["median_rank"] == 1.0
    worst = ranking_metrics(-np.eye(n), rel)
    assert worst["R@1"] == worst["R@5"] == 0.0 and worst["R@10"] == 1.0
    assert worst["median_rank"] == n and worst["mAP"] == pytest.approx(1 / n)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("with_exclude", [False, True])
def test_tied_scores_are_the_expectation_over_every_order_of_them(seed, with_exclude):
    rng = np.random.default_rng(200 + seed)
    sim = rng.integers(0, 3, size=(6, 7)).astype(float)  # blocks of up to 7 tied items
    rel = rng.random((6, 7)) < 0.35
    exclude = (rng.random((6, 7)) < 0.15) if with_exclude else None
    got, want = (
        ranking_metrics(sim, rel, exclude, ks=(1, 2, 5)),
        ref_ranking_ties(sim, rel, exclude, ks=(1, 2, 5)),
    )
    for key in ("R@1", "R@2", "R@5", "mAP", "median_rank"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    gains = rng.choice([0.0, 0.25, 1.0], size=(6, 7))
    for k in (1, 3, 30):
        got = ndcg_at_k(sim, gains, exclude, k)[f"nDCG@{k}"]
        assert got == pytest.approx(ref_ndcg_ties(sim, gains, exclude, k), abs=1e-12), k


def test_a_constant_score_gets_a_random_orders_expectation_whatever_the_gallery_order():
    # ranking ties in gallery order gave a constant-score model twice the mAP of random scores
    # on a gallery stored by class (the relevant items first)
    rel = np.zeros((1, 6), bool)
    rel[0, 3] = True
    res = ranking_metrics(np.zeros((1, 6)), rel)
    assert res["median_rank"] == 3.5 and res["R@1"] == pytest.approx(1 / 6)
    assert res["mAP"] == pytest.approx(np.mean(1 / np.arange(1, 7)))
    by_class = np.repeat(np.eye(3, dtype=bool), 4, axis=1)  # 3 queries, 12 items in class order
    flat = ranking_metrics(np.zeros((3, 12)), by_class)
    shuffled = ranking_metrics(np.zeros((3, 12)), by_class[:, ::-1])
    assert flat == shuffled and flat["R@1"] == pytest.approx(4 / 12)


def test_query_excluded_from_own_gallery():
    sim = np.array([[9.0, 1.0, 2.0], [1.0, 9.0, 2.0], [0.0, 0.0, 9.0]])
    rel = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]], bool)  # each query relevant to itself
    res = ranking_metrics(sim, rel, exclude=np.eye(3, dtype=bool))
    # without itself, query 0 finds item 2 first; queries 1 and 2 have nothing relevant left
    assert res["n_queries"] == 1 and res["no_relevant"] == 2 and res["R@1"] == 1.0


def test_no_relevant_anywhere_is_nan_and_counted():
    res = ranking_metrics(np.zeros((3, 4)), np.zeros((3, 4), bool))
    assert np.isnan(res["mAP"]) and res["no_relevant"] == 3 and res["n_queries"] == 0


def test_shared_label_relevance():
    rel = shared_label_relevance([["a", "b"], ["c"], []], [["b"], ["a", "c"], ["d"]])
    assert rel.tolist() == [[True, True, False], [False, True, False], [False, False, False]]


@pytest.mark.parametrize("seed", range(4))
def test_ndcg_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    sim = rng.random((9, 40))
    gains = rng.choice([0.0, 0.25, 0.5, 1.0], size=(9, 40))
    exclude = rng.random((9, 40)) < 0.1
    for k in (5, 30):
        for ex in (None, exclude):
            got = ndcg_at_k(sim, gains, ex, k)[f"nDCG@{k}"]
            assert got == pytest.approx(ref_ndcg(sim, gains, ex, k), abs=1e-12)


def test_ndcg_known_answers():
    gains = np.array([[1.0, 0.5, 0.0]])
    assert ndcg_at_k(np.array([[3.0, 2.0, 1.0]]), gains)["nDCG@30"] == pytest.approx(1.0)
    # reversed: DCG = 0 + 0.5/log2(3) + 1/log2(4); IDCG = 1 + 0.5/log2(3)
    want = (0.5 / np.log2(3) + 0.5) / (1 + 0.5 / np.log2(3))
    assert ndcg_at_k(np.array([[1.0, 2.0, 3.0]]), gains)["nDCG@30"] == pytest.approx(want)
    none = ndcg_at_k(np.zeros((1, 3)), np.zeros((1, 3)))
    assert none["no_relevant"] == 1 and np.isnan(none["nDCG@30"])


def _shape_ontology(names):
    return Ontology([Node("shape", "Shape", child_ids=list(names))] + [Node(n, n) for n in names])


def test_ontology_gains():
    onto = _shape_ontology(["circle", "cross"])
    gains = ontology_gains([["circle"], ["shape"], ["nope"]], [["circle"], ["cross"]], onto)
    np.testing.assert_allclose(gains, [[1.0, 0.25], [0.5, 0.5], [0.0, 0.0]])


def test_max_location_similarity_matches_loops():
    g = torch.Generator().manual_seed(0)
    audio, maps = torch.randn(5, 4, generator=g), torch.randn(7, 4, 3, 2, generator=g)
    got = retrieval.max_location_similarity(audio, maps, chunk=2)
    for q in range(5):
        for j in range(7):
            best = max(float(audio[q] @ maps[j, :, y, x]) for y in range(3) for x in range(2))
            assert float(got[q, j]) == pytest.approx(best, abs=1e-5)


def test_retrieval_results_every_direction_matches_brute_force():
    # a2a / v2v drop the query from its own gallery; instance relevance is the partner alone
    from avssl.eval.retrieval_cli import retrieval_results

    labels = [["a"], ["b"], ["a"], ["c"], ["b", "c"], ["a"], ["d"]]
    n = len(labels)
    rng = np.random.default_rng(7)
    sims = {d: rng.integers(0, 5, size=(n, n)).astype(float) for d in ("a2v", "v2a", "a2a", "v2v")}
    for d in ("a2a", "v2v"):
        np.fill_diagonal(sims[d], 9.0)  # a clip is most similar to itself, as with cosines
    res = retrieval_results(sims, labels)
    rel = np.array([[bool(set(p) & set(q)) for q in labels] for p in labels])
    own = np.array([[i == j for j in range(n)] for i in range(n)])
    for d in ("a2v", "v2a", "a2a", "v2v"):
        want = ref_ranking_ties(sims[d], rel, own if d in ("a2a", "v2v") else None)
        for key in ("R@1", "R@5", "R@10", "mAP", "median_rank", "no_relevant"):
            assert res[d][key] == pytest.approx(want[key]), (d, key)
    for d in ("a2v", "v2a"):
        want = ref_ranking_ties(sims[d], own)
        for key in ("R@1", "R@5", "R@10", "median_rank"):
            assert res["instance"][d][key] == pytest.approx(want[key]), (d, key)
    assert res["n"] == n


@pytest.mark.parametrize("with_map", [False, True])
def test_similarities_match_loops_in_every_direction(with_map):
    # v2a row i: visual item i as the query against every sound (the transpose of a2v)
    g = torch.Generator().manual_seed(1)
    a, v, maps = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), None
    if with_map:
        maps = torch.randn(5, 4, 2, 3, generator=g)
    got = retrieval.similarities({"audio": a, "visual": v, "map": maps})

    def cos(x, y):
        return float(x @ y / (x.norm() * y.norm()))

    def cross(sound, item):  # audio index, visual index
        if maps is None:
            return cos(a[sound], v[item])
        return max(float(a[sound] @ maps[item, :, y, x]) for y in range(2) for x in range(3))

    for i in range(5):
        for j in range(5):
            assert got["a2v"][i, j] == pytest.approx(cross(i, j), abs=1e-5)
            assert got["v2a"][i, j] == pytest.approx(cross(j, i), abs=1e-5)
            assert got["a2a"][i, j] == pytest.approx(cos(a[i], a[j]), abs=1e-5)
            assert got["v2v"][i, j] == pytest.approx(cos(v[i], v[j]), abs=1e-5)


# ---- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory):
    """Tiny trained contrastive and l3 run directories (2 training steps each)."""
    out = {}
    base = tmp_path_factory.mktemp("retrieval-runs")
    for method in ("contrastive", "l3"):
        sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={base / method}"]
        args = ["--config", str(ROOT / f"configs/{method}.yaml"), "--no-progress"]
        assert train.main(args + [a for s in sets for a in ("--set", s)]) == 0
        out[method] = next((base / method).iterdir())
    return out


@pytest.fixture
def cca_fits(monkeypatch):
    """The number of training pairs of each CCA fitted while the test runs."""
    fitted = []
    real_fit = cca.fit_cca
    monkeypatch.setattr(
        cca, "fit_cca", lambda a, v, *k: fitted.append(len(a)) or real_fit(a, v, *k)
    )
    return fitted


def test_cli_contrastive_with_ontology(runs, tmp_path, capsys):
    cfg = checkpoint_config(load_checkpoint(runs["contrastive"]))
    manifest = manifest_path(cfg.data, progress=False)
    names = sorted(
        {lab for line in manifest.read_text().splitlines() for lab in json.loads(line)["labels"]}
    )
    onto = tmp_path / "ontology.json"
    entries = [{"id": "shape", "name": "Shape", "child_ids": names}]
    onto.write_text(json.dumps(entries + [{"id": n, "name": n} for n in names]))
    code = evaluate.main(
        ["retrieval", "--checkpoint", str(runs["contrastive"]), "--ontology", str(onto),
         "--no-progress", "--out", str(tmp_path / "r.json")]
    )  # fmt: skip
    assert code == 0
    res = last_json(capsys.readouterr().out)
    assert {"a2v", "v2a", "a2a", "v2v", "instance", "n"} <= set(res)
    assert res["n"] == 4 and res["cca"] is False
    for d in ("a2v", "v2a"):
        assert {"R@1", "R@5", "R@10", "mAP", "median_rank", "nDCG@30"} <= set(res[d])
        assert 0 < res[d]["nDCG@30"] <= 1  # every clip is a sibling of every other: gain >= 1/4
        assert {"R@1", "R@5", "R@10", "median_rank"} == set(res["instance"][d])
        assert res["instance"][d]["R@10"] == 1.0  # 4 clips: the partner is always in the top 10
    assert json.loads((tmp_path / "r.json").read_text()) == res
    assert "Retrieval (test)" in (runs["contrastive"] / "report.md").read_text()


@pytest.mark.parametrize(
    "flags,named",
    [
        (["--cca-dim", "3"], "--cca-dim"),
        (["--cca-dim", "3", "--cca-ridge", "0.5"], "--cca-dim, --cca-ridge"),
    ],
)
def test_cli_cca_flags_are_refused_for_a_shared_space(runs, capsys, cca_fits, flags, named):
    # contrastive fits no CCA: the flags were ignored ("cca": false) without a word
    argv = ["retrieval", "--checkpoint", str(runs["contrastive"]), "--no-progress", *flags]
    assert evaluate.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and cca_fits == []
    assert err.startswith(f"error: {named}: apply to methods without a shared space (l3) only")
    assert err.rstrip().endswith("is 'contrastive'")


def test_cli_l3_goes_through_cca_fitted_on_train(runs, capsys, cca_fits):
    fitted = cca_fits
    assert evaluate.main(["retrieval", "--checkpoint", str(runs["l3"]), "--no-progress"]) == 0
    res = last_json(capsys.readouterr().out)
    assert res["cca"] is True and res["method"] == "l3" and res["n"] == 4
    assert fitted == [12]  # the 12 training clips, never the 4 test clips
    assert res["cca_fit_on"] == res["data"] and res["own_data"] is True
    assert res["cca_components"] == 11 and res["cca_ridge"] == 1e-3  # 12 pairs: at most 11
    assert 0 <= res["instance"]["a2v"]["R@1"] <= 1
    argv = ["retrieval", "--checkpoint", str(runs["l3"]), "--no-progress", "--cca-ridge", "0"]
    assert evaluate.main([*argv, "--cca-dim", "3"]) == 0
    res = last_json(capsys.readouterr().out)
    assert res["cca_components"] == 3 and res["cca_ridge"] == 0.0


def test_cli_l3_on_other_data_fits_its_cca_on_its_own_training_pairs(
    runs, tmp_path, capsys, cca_fits
):
    # the CCA was fitted on --data's train split: a test-only manifest (VGG-SS, Flickr) was
    # refused, and one whose "train" rows were the gallery's pictures projected them in-sample
    fitted = cca_fits
    manifest, test = _test_rows(runs["l3"])
    rows = [{**r, "video": str(manifest.parent / r["video"])} for r in test]
    other = _write_jsonl(tmp_path / "test_only.jsonl", rows)
    args = ["retrieval", "--checkpoint", str(runs["l3"]), "--no-progress", "--data", str(other)]
    assert evaluate.main(args) == 0
    res = last_json(capsys.readouterr().out)
    assert fitted == [12] and res["n"] == 4  # the checkpoint's 12 training pairs
    assert res["cca_fit_on"] == str(manifest) and res["data"] == str(other)
    assert res["own_data"] is False


def test_cli_missing_ontology_is_one_line(runs, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code = evaluate.main(
        ["retrieval", "--checkpoint", str(runs["contrastive"]), "--ontology", str(missing)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and str(missing) in err
    assert len(err.strip().splitlines()) == 1


def test_cli_an_ontology_knowing_no_test_label_is_refused(runs, tmp_path, capsys):
    # every gain would be 0 and nDCG null, for a reason the JSON did not show
    onto = tmp_path / "ontology.json"
    onto.write_text(json.dumps([{"id": "/m/09x0r", "name": "Speech"}]))
    argv = ["retrieval", "--checkpoint", str(runs["contrastive"]), "--ontology", str(onto)]
    assert evaluate.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {onto}: none of the test split's ") and "is a class id" in err


# ---- a separate visual gallery ----------------------------------------------------------------


def test_gallery_results_relevance_uses_labels():
    # 3 queries x 4 gallery items; gallery order by similarity is the index order for every query
    sim = np.tile([4.0, 3.0, 2.0, 1.0], (3, 1))
    res = _gallery_results(sim, [["a"], ["b"], ["z"]], [["b"], ["x"], ["a"], ["a", "b"]])
    assert res["n_gallery"] == 4 and res["n_queries"] == 2 and res["no_relevant"] == 1
    # query a: relevant at ranks 3, 4 -> AP (1/3 + 2/4) / 2; query b: ranks 1, 4 -> (1 + 2/4) / 2
    assert res["R@1"] == 0.5 and res["R@5"] == 1.0 and res["median_rank"] == 2.0
    assert res["mAP"] == pytest.approx(((1 / 3 + 1 / 2) / 2 + (1 + 1 / 2) / 2) / 2)


def _gallery_results(*args):
    from avssl.eval.retrieval_cli import gallery_results

    return gallery_results(*args)


def test_gallery_frames_centre_frame_images_and_skips(media_factory):
    from avssl.data.manifest import Row

    video = media_factory("v.mp4", duration=2.0, fps=25.0, size=(48, 64))
    media_factory("still.png", size=(48, 64))
    manifest = media_factory.folder / "gallery.jsonl"
    rows = [
        Row("whole", video="v.mp4", audio=None, labels=["a"]),  # no end: probed, centre 1.0 s
        Row("window", video=str(video), start=0.4, end=1.2, labels=["b"]),  # centre 0.8 s
        Row("img", image="still.png", labels=["c"]),
        Row("gone", image="missing.png", labels=["d"]),
    ]
    gallery = retrieval.gallery_frames(rows, manifest, frame_size=64, fps=25.0)
    assert [r.id for r in gallery.rows] == ["whole", "window", "img"]
    assert gallery.skipped[0][0] == "gone" and "missing.png" in gallery.skipped[0][1]
    assert gallery.frames.shape == (3, 3, 64, 64) and gallery.frames.dtype == torch.float32
    as_uint8 = (gallery.frames * 255).round().byte().permute(0, 2, 3, 1)
    assert media_factory.frame_index(as_uint8[0]) == 25
    assert media_factory.frame_index(as_uint8[1]) == 20
    img = gallery.frames[2]
    assert img[0, :28].mean() > 0.95 and img[2, :28].mean() < 0.05  # red top half
    assert img[2, 36:].mean() > 0.95 and img[0, 36:].mean() < 0.05  # blue bottom half


def _test_rows(run_dir):
    cfg = checkpoint_config(load_checkpoint(run_dir))
    manifest = manifest_path(cfg.data, progress=False)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return manifest, [r for r in rows if r["split"] == "test"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_gallery_of_the_test_videos_equals_class_level_a2v(runs, tmp_path, capsys):
    manifest, test = _test_rows(runs["contrastive"])
    # the test clips' own videos, audio dropped: the same centre frames as the a2v gallery
    rows = [
        {**r, "id": f"g{i}", "video": str(manifest.parent / r["video"]), "audio": None}
        for i, r in enumerate(test)
    ]
    gallery = _write_jsonl(tmp_path / "gallery.jsonl", rows)
    args = ["retrieval", "--checkpoint", str(runs["contrastive"]), "--no-progress"]
    assert evaluate.main([*args, "--gallery", str(gallery)]) == 0
    res = last_json(capsys.readouterr().out)
    got = res["a2v_gallery"]
    assert got["n_gallery"] == len(rows) == res["n"] and got["n_skipped"] == 0
    assert got["gallery_splits"] == ["test"]  # a score against test pictures says so
    for key in ("R@1", "R@5", "R@10", "mAP", "median_rank", "n_queries", "no_relevant"):
        assert got[key] == pytest.approx(res["a2v"][key]), key


def test_cli_l3_gallery_of_images_goes_through_the_training_cca(
    runs, media_factory, capsys, cca_fits
):
    fitted = cca_fits
    _, test = _test_rows(runs["l3"])
    labels = [r["labels"][0] for r in test]
    present = sorted(set(labels))[:2]
    media_factory("img.png")
    rows = [{"id": f"i{k}", "image": "img.png", "labels": [lab]} for k, lab in enumerate(present)]
    rows += [{"id": "other", "image": "img.png", "labels": ["no-such-class"]}]
    rows += [{"id": "bad", "image": "broken.png", "labels": [present[0]]}]
    gallery = _write_jsonl(media_factory.folder / "gallery.jsonl", rows)
    args = ["retrieval", "--checkpoint", str(runs["l3"]), "--no-progress"]
    assert evaluate.main([*args, "--gallery", str(gallery)]) == 0
    res = last_json(capsys.readouterr().out)
    got = res["a2v_gallery"]
    assert fitted == [12]  # one CCA, on the 12 training pairs; the gallery is only projected
    assert got["n_gallery"] == 3 and got["n_skipped"] == 1
    assert got["gallery_splits"] == ["train"]  # rows without a split are "train"
    assert got["skipped"][0]["id"] == "bad"
    n_rel = sum(lab in present for lab in labels)
    assert got["n_queries"] == n_rel and got["no_relevant"] == len(labels) - n_rel
    assert got["R@5"] == 1.0 and 1 / 3 <= got["mAP"] <= 1 and 0 <= got["R@1"] <= 1
    # --strict turns the broken gallery item into a one-line error
    assert evaluate.main([*args, "--gallery", str(gallery), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after "synthetic world: reused"
    assert err.startswith("error: ") and "broken.png" in err and "row 'bad'" in err


def test_cli_a_gallery_of_training_pictures_is_refused(runs, tmp_path, capsys):
    # an l3 gallery of its own manifest scored R@1 1.0 (its test split 0.19): every top-1 was
    # a training picture, projected in-sample by the CCA fitted on those pairs
    cfg = checkpoint_config(load_checkpoint(runs["l3"]))
    manifest = manifest_path(cfg.data, progress=False)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    n_train = sum(r["split"] == "train" for r in rows)
    gallery = _write_jsonl(
        tmp_path / "own.jsonl",
        [{**r, "video": str(manifest.parent / r["video"]), "audio": None} for r in rows],
    )
    args = ["retrieval", "--checkpoint", str(runs["l3"]), "--no-progress"]
    assert evaluate.main([*args, "--gallery", str(gallery)]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()[-1]
    assert cap.out == "" and err.startswith(f"error: {gallery}: {n_train} of its {len(rows)} ")
    assert "come from the checkpoint's training split" in err
