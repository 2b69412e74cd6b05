"""l3's cross-modal search: the CCA ``avssl index`` fits on the index's own window pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from bad_media import last_json
from conftest import MediaFactory, media_folder
from test_index_fixes import _checkpoint, _index, _one_line_error, _query

from avssl.cli import main as cli
from avssl.errors import AvsslError
from avssl.eval.cca import fit_cca
from avssl.tools import index_cca
from avssl.tools.index import Index, load_index, save_index
from avssl.tools.index_cca import cca_query, check_cca, fit_index_cca, window_pairs
from avssl.tools.query import search
from avssl.train.checkpoint import load_model


def _hand_index(tmp_path: Path, n_files: int = 40, seed: int = 0) -> tuple[Index, torch.Tensor]:
    """An index of ``n_files`` files of 3 to 8 windows each, whose 384-d audio and 128-d visual
    rows at one time share an 8-d latent (as l3's two towers would see one moment), with some
    audio-only and picture-only windows (a track that ends early); also returns the latents of
    the audio rows."""
    g = torch.Generator().manual_seed(seed)
    mix_a, mix_v = torch.randn(8, 384, generator=g), torch.randn(8, 128, generator=g)
    tensors: dict[str, list] = {k: [] for k in ("audio", "visual", "z")}
    ids: dict[str, list] = {"audio": [], "visual": []}
    times: dict[str, list] = {"audio": [], "visual": []}
    for f in range(n_files):
        n = int(torch.randint(3, 9, (1,), generator=g))
        t = 0.5 + 0.37 * torch.arange(n, dtype=torch.float64)
        z = torch.randn(n, 8, generator=g)
        na, nv = (n, n - 1) if f % 3 == 0 else (n - 1, n) if f % 3 == 1 else (n, n)
        tensors["audio"].append(z[:na] @ mix_a + 0.3 * torch.randn(na, 384, generator=g))
        tensors["visual"].append(z[:nv] @ mix_v + 0.3 * torch.randn(nv, 128, generator=g))
        tensors["z"].append(z[:na])
        for m, k in (("audio", na), ("visual", nv)):
            ids[m].append(torch.full((k,), f, dtype=torch.long))
            times[m].append(t[:k].float())
    out = {}
    for m in ("audio", "visual"):
        out[m] = F.normalize(torch.cat(tensors[m]), dim=1).half()
        out[f"{m}_file"], out[f"{m}_time"] = torch.cat(ids[m]), torch.cat(times[m])
    files = [{"path": f"/media/{f}.mp4"} for f in range(n_files)]
    meta = {"format": "avssl-index-v1", "checkpoint": {"path": "c.pt", "sha256": "0" * 64}}
    return Index(tmp_path / "idx", {**meta, "hop": 0.37}, files, out), torch.cat(tensors["z"])


def test_window_pairs_are_the_same_file_at_the_same_time(tmp_path):
    index, _ = _hand_index(tmp_path, 12)
    ra, rv = window_pairs(index)
    t = index.tensors
    brute = [
        (i, j)
        for i in range(index.count("audio"))
        for j in range(index.count("visual"))
        if t["audio_file"][i] == t["visual_file"][j] and t["audio_time"][i] == t["visual_time"][j]
    ]
    assert list(zip(ra.tolist(), rv.tolist(), strict=True)) == brute
    assert len(brute) < min(index.count("audio"), index.count("visual"))  # some have no partner


def test_index_cca_is_the_cca_of_the_pairs_and_finds_the_partner(tmp_path):
    index, _ = _hand_index(tmp_path)
    record = fit_index_cca(index, n_components=16)
    ra, rv = window_pairs(index)
    assert record == {"pairs": ra.numel(), "fit_pairs": ra.numel(), "components": 16,
                      "ridge": 1e-3}  # fmt: skip
    reference = fit_cca(
        index.tensors["audio"][ra].float(), index.tensors["visual"][rv].float(), 16, 1e-3
    )
    # every stored window: the reference variates, unit length, float16
    for m, side in (("audio", reference.audio), ("visual", reference.visual)):
        want = F.normalize(torch.from_numpy(side(index.tensors[m].double().numpy())).float(), dim=1)
        got = index.tensors[f"{m}_cca"]
        assert got.dtype == torch.float16 and got.shape == want.shape
        torch.testing.assert_close(got.float(), want, atol=2e-3, rtol=0)
    # an audio window's query ranks its own picture first, far above chance (1 of ~200)
    hits = 0
    for i, j in zip(ra.tolist()[:60], rv.tolist()[:60], strict=True):
        q = cca_query(index, index.tensors["audio"][i].float(), "audio")
        rows = search(index, q, "visual", 1, key="visual_cca")
        file_, time_ = int(index.tensors["visual_file"][j]), float(index.tensors["visual_time"][j])
        hits += rows[0]["path"] == index.files[file_]["path"] and rows[0]["time"] == round(time_, 3)
    assert hits >= 55, hits


def test_a_query_maps_as_the_stored_windows(tmp_path):
    index, _ = _hand_index(tmp_path)
    fit_index_cca(index)
    for m in ("audio", "visual"):
        q = cca_query(index, index.tensors[m][5].float(), m)
        assert q.dtype == torch.float32 and math.isclose(float(q.norm()), 1.0, rel_tol=1e-5)
        torch.testing.assert_close(q, index.tensors[f"{m}_cca"][5].float(), atol=2e-3, rtol=0)


def test_the_fit_is_capped_and_spread_over_the_index(tmp_path, monkeypatch):
    index, _ = _hand_index(tmp_path, 60)
    ra, rv = window_pairs(index)
    monkeypatch.setattr(index_cca, "MAX_FIT_PAIRS", 50)
    seen = {}
    real = index_cca.fit_cca

    def spy(a, v, *args):
        seen["a"] = a
        return real(a, v, *args)

    monkeypatch.setattr(index_cca, "fit_cca", spy)
    record = fit_index_cca(index)
    assert (record["pairs"], record["fit_pairs"]) == (ra.numel(), 50) and ra.numel() > 200
    keep = torch.linspace(0, ra.numel() - 1, 50, dtype=torch.float64).round().long()
    torch.testing.assert_close(seen["a"], index.tensors["audio"][ra[keep]].float())
    assert record["components"] == 49  # capped by the pairs: 50 - 1


def test_too_few_pairs_and_no_cca_are_refused(tmp_path):
    index, _ = _hand_index(tmp_path, 3)
    assert fit_index_cca(index)["components"] > 0 and "visual_cca" in index.tensors
    index.tensors["visual_time"] += 0.1  # no picture at a sound's time: the old fit must go
    assert fit_index_cca(index)["components"] == 0
    assert not [n for n in index.tensors if "cca" in n]
    with pytest.raises(AvsslError, match=r"holds 0 audio-visual window pairs .* at least 2"):
        check_cca(index, "UPDATE")
    index.meta.pop("cca")
    with pytest.raises(AvsslError, match=r"holds no CCA .* run UPDATE once"):
        check_cca(index, "UPDATE")


def test_the_ridge_reaches_the_fit(tmp_path):
    index, _ = _hand_index(tmp_path, 6)  # fewer pairs than dimensions: the ridge matters
    ra, rv = window_pairs(index)
    a, v = index.tensors["audio"][ra].float(), index.tensors["visual"][rv].float()
    assert fit_index_cca(index, 4, ridge=0.3)["ridge"] == 0.3
    want = fit_cca(a, v, 4, 0.3).linear("audio")[1]
    torch.testing.assert_close(index.tensors["cca_audio_proj"], want)
    assert not torch.allclose(want.abs(), fit_cca(a, v, 4, 1e-3).linear("audio")[1].abs())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m, t: m.pop("pairs"), "pairs None is not a count"),
        (lambda m, t: m.update(components=True), "components True is not a count"),
        (lambda m, t: m.update(ridge="0.001"), "ridge '0.001' is not a number"),
        (lambda m, t: m.update(components=3), "records 3 components, its tensors hold 8"),
        (
            lambda m, t: [t.pop(n) for n in list(t) if "cca" in n],
            "records 8 components, its tensor file holds no CCA",
        ),
    ],
)
def test_a_damaged_cca_record_is_one_error(tmp_path, change, reason):
    index, _ = _hand_index(tmp_path)
    fit_index_cca(index, 8)
    change(index.meta["cca"], index.tensors)
    with pytest.raises(AvsslError, match=f"damaged index metadata \\(cca: {reason}"):
        check_cca(index, "UPDATE")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.update(cca_audio_proj=t["cca_audio_proj"].long()), "is not a float tensor"),
        (lambda t: t.update(cca_visual_proj=t["cca_visual_proj"][:, :4],
                            visual_cca=t["visual_cca"][:, :4]), "of different widths"),
    ],
)  # fmt: skip
def test_damaged_cca_tensors_are_one_error_on_load(tmp_path, change, reason):
    index, _ = _hand_index(tmp_path)
    fit_index_cca(index, 8)
    save_index(index)
    tensors = dict(index.tensors)
    change(tensors)
    torch.save(tensors, index.path / index.meta["tensors"])
    with pytest.raises(AvsslError, match=reason):
        load_index(index.path)


def test_an_index_saves_and_checks_its_cca(tmp_path):
    index, _ = _hand_index(tmp_path)
    fit_index_cca(index, 8)
    save_index(index)
    loaded = load_index(index.path)
    assert loaded.meta["cca"]["components"] == 8
    for name in ("audio_cca", "cca_visual_proj"):
        torch.testing.assert_close(loaded.tensors[name], index.tensors[name])
    # a tensor file whose CCA does not fit its windows is refused on load, naming the tensor
    bad = dict(index.tensors, visual_cca=index.tensors["visual_cca"][1:])
    torch.save(bad, index.path / index.meta["tensors"])
    with pytest.raises(AvsslError, match="visual_cca is not one 8-d row per visual window"):
        load_index(index.path)
    del bad["cca_audio_mean"]
    torch.save(bad, index.path / index.meta["tensors"])
    with pytest.raises(AvsslError, match="no 'cca_audio_mean' tensor"):
        load_index(index.path)


# --- the commands, on a random-weight l3 checkpoint and small media


@pytest.fixture(scope="module")
def l3_ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("l3"), "l3")


@pytest.fixture
def media(media_factory: MediaFactory) -> Path:
    return media_folder(
        media_factory,
        {"still.png": {}, "tone.wav": {"duration": 2.0}, "clip.mp4": {"duration": 4.0},
         "other.webm": {"duration": 3.0}},
    )  # fmt: skip


def test_l3_searches_across_modalities_through_the_index_cca(l3_ckpt, media, tmp_path, capsys):
    out = tmp_path / "idx"
    assert _index(l3_ckpt, out, "--inputs", str(media)) == 0
    summary = last_json(capsys.readouterr().out)
    index = load_index(out)
    ra, rv = window_pairs(index)
    fitted = fit_cca(
        index.tensors["audio"][ra].float(), index.tensors["visual"][rv].float(), 128, 1e-3
    )
    k = len(fitted.correlations)  # capped by the 7 pairs and by each side's rank
    assert summary["cca"] == {"pairs": 4 + 3, "fit_pairs": 7, "components": k, "ridge": 1e-3}
    assert 1 < k <= 6
    model, cfg, _ = load_model(l3_ckpt)
    model.eval()
    from avssl.tools.query import embed_query, query_window

    for args, modality, target in [
        (["--audio", str(media / "clip.mp4")], "audio", "visual"),
        (["--image", str(media / "still.png")], "visual", "audio"),
        (["--video", str(media / "other.webm"), "--at", "1.5"], "audio", "visual"),
        (["--video", str(media / "clip.mp4"), "--target", "audio"], "visual", "audio"),
    ]:
        assert _query(index.path, l3_ckpt, *args, "-k", "3") == 0, args
        res = last_json(capsys.readouterr().out)
        assert res["cca"] == summary["cca"] and res["query"]["target"] == target
        assert [r["modality"] for r in res["results"]] == [target] * 3
        # brute force: the query and every window through the CCA of the index's pairs
        q_path = args[1]
        info, at = query_window(q_path, modality, res["query"]["time"], args[0])
        q = embed_query(model, cfg, q_path, modality, info, at)
        side = {"audio": fitted.audio, "visual": fitted.visual}
        qc = F.normalize(torch.from_numpy(side[modality](q[None].double().numpy())), dim=1)
        rows = index.tensors[target].double().numpy()
        xc = F.normalize(torch.from_numpy(side[target](rows)), dim=1)
        scores = (xc @ qc[0]).float()
        want = scores.sort(descending=True).values[:3]
        got = torch.tensor([r["score"] for r in res["results"]])
        torch.testing.assert_close(got, want, atol=3e-3, rtol=0)
    # the table and the page name the space; a same-modality query stays in l3's own space
    page = tmp_path / "page.html"
    assert _query(out, l3_ckpt, "--audio", str(media / "tone.wav"), "--html", str(page)) == 0
    assert f"visual (through the index&#x27;s CCA: {k}-d, 7 window pairs)</h1>" in page.read_text()
    assert cli(["query", "--index", str(out), "--checkpoint", str(l3_ckpt),
                "--audio", str(media / "tone.wav")]) == 0  # fmt: skip
    assert f"-> visual (through the index's CCA: {k}-d, 7 window pairs)" in capsys.readouterr().out
    assert _query(out, l3_ckpt, "--audio", str(media / "tone.wav"), "--target", "audio") == 0
    res = last_json(capsys.readouterr().out)
    assert "cca" not in res and res["results"][0]["score"] == pytest.approx(1.0, abs=2e-3)


def test_l3_per_file_and_approx_search_the_cca_space(l3_ckpt, media, tmp_path, capsys):
    pytest.importorskip("faiss")
    out = tmp_path / "idx"
    assert _index(l3_ckpt, out, "--inputs", str(media)) == 0
    capsys.readouterr()
    q = ["--audio", str(media / "tone.wav"), "-k", "3"]
    assert _query(out, l3_ckpt, *q, "--per-file") == 0
    per_file = last_json(capsys.readouterr().out)["results"]
    assert len({r["path"] for r in per_file}) == 3
    assert _query(out, l3_ckpt, *q) == 0
    exact = last_json(capsys.readouterr().out)["results"]
    assert _query(out, l3_ckpt, *q, "--approx") == 0
    approx = last_json(capsys.readouterr().out)["results"]
    # 8 windows: the graph finds every one (two videos show equal frames: ties may swap)
    assert [r["score"] for r in approx] == [r["score"] for r in exact]
    assert sorted(p.name for p in out.glob("hnsw-*")) == [
        f"hnsw-visual_cca-{load_index(out).meta['tensors'][11:23]}.faiss"
    ]


def test_l3_updates_refit_the_cca(l3_ckpt, media, tmp_path, capsys):
    out = tmp_path / "idx"
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("still.png", "tone.wav"):
        (alone / name).symlink_to(media / name)
    assert _index(l3_ckpt, out, "--inputs", str(alone)) == 0
    assert last_json(capsys.readouterr().out)["cca"]["pairs"] == 0
    assert _query(out, l3_ckpt, "--audio", str(media / "tone.wav")) == 2
    err = _one_line_error(capsys)
    assert "holds 0 audio-visual window pairs" in err and "--target audio" in err
    (alone / "clip.mp4").symlink_to(media / "clip.mp4")
    assert _index(l3_ckpt, out) == 0  # the recorded inputs, one new video
    assert last_json(capsys.readouterr().out)["cca"]["pairs"] == 4
    assert _query(out, l3_ckpt, "--audio", str(media / "tone.wav")) == 0
    (alone / "clip.mp4").unlink()
    assert _index(l3_ckpt, out) == 0
    assert last_json(capsys.readouterr().out)["cca"]["pairs"] == 0
    assert "visual_cca" not in load_index(out).tensors


def test_one_pair_is_too_few(l3_ckpt, media_factory, tmp_path, capsys):
    video = media_factory("one.mp4", duration=1.0)  # one window of each side
    out = tmp_path / "idx"
    assert _index(l3_ckpt, out, "--inputs", str(video)) == 0
    assert last_json(capsys.readouterr().out)["cca"] == {
        "pairs": 1, "fit_pairs": 1, "components": 0, "ridge": 1e-3
    }  # fmt: skip
    assert _query(out, l3_ckpt, "--video", str(video)) == 2
    assert "holds 1 audio-visual window pair (a video's" in _one_line_error(capsys)


def test_an_older_l3_index_is_told_how_to_add_the_cca(l3_ckpt, media, tmp_path, capsys):
    out = tmp_path / "idx"
    assert _index(l3_ckpt, out, "--inputs", str(media)) == 0
    capsys.readouterr()
    old = load_index(out, mmap=False)  # as avssl wrote it before the CCA was stored
    for name in [n for n in old.tensors if "cca" in n]:
        del old.tensors[name]
    old.meta.pop("cca")
    save_index(old)
    assert "cca" not in json.loads((out / "meta.json").read_text())
    assert _query(out, l3_ckpt, "--image", str(media / "still.png")) == 2
    err = _one_line_error(capsys)
    assert f"run avssl index --checkpoint {l3_ckpt} --out {out} once" in err, err
    assert _index(l3_ckpt, out) == 0  # nothing changed but the CCA
    assert last_json(capsys.readouterr().out)["unchanged"] == 4
    assert _query(out, l3_ckpt, "--image", str(media / "still.png")) == 0


def test_a_shared_space_index_holds_no_cca(media, tmp_path, capsys):
    path = _checkpoint(tmp_path, "contrastive")
    assert _index(path, tmp_path / "idx", "--inputs", str(media)) == 0
    assert "cca" not in last_json(capsys.readouterr().out)
    index = load_index(tmp_path / "idx")
    assert "cca" not in index.meta and not [n for n in index.tensors if "cca" in n]


def test_the_query_classes_benchmark_ranks_files_as_avssl_query(l3_ckpt, tmp_path, capsys):
    """``benchmarks/query_classes.py``'s R@1 and mAP are those of ``avssl query --per-file``'s
    rankings (four videos of two classes that differ in frame rate and length)."""
    from test_bench_flags import _benchmark

    folder = tmp_path / "media"
    folder.mkdir()
    mf = MediaFactory(folder)
    spec = [("a.mp4", 2.0, 25.0, "x"), ("b.mp4", 3.0, 10.0, "x"), ("c.mp4", 4.0, 15.0, "y"),
            ("d.mp4", 5.0, 20.0, "y")]  # fmt: skip
    rows = []
    for name, duration, fps, label in spec:
        mf(name, duration=duration, fps=fps)
        rows.append({"id": name, "video": f"../{name}", "start": 0.0, "end": duration,
                     "labels": [label], "split": "test"})  # fmt: skip
    (folder / "sub").mkdir()  # paths with "..", as the index never stores them
    manifest = folder / "sub" / "manifest.jsonl"
    (folder / "broken.mp4").write_bytes(b"not a video")  # a query skipped and counted
    broken = {"id": "broken", "video": "../broken.mp4", "start": 0.0, "end": 2.0,
              "labels": ["x"], "split": "test"}  # fmt: skip
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [*rows, broken]))
    out = tmp_path / "idx"
    assert _index(l3_ckpt, out, "--inputs", *(str(folder / s[0]) for s in spec)) == 0
    capsys.readouterr()
    args = ["--index", str(out), "--checkpoint", str(l3_ckpt), "--manifest", str(manifest)]
    assert _benchmark("query_classes").main(args) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (got["method"], got["queries"], got["files"], got["chance_R@1"]) == ("l3", 4, 4, 0.5)
    assert got["cca"]["pairs"] == 2 + 3 + 4 + 5
    assert got["n_skipped"] == 1 and got["skipped"][0]["id"] == "broken"
    hits, aps = [], []
    for name, duration, _, label in spec:
        video = str(folder / name)
        assert _query(out, l3_ckpt, "--video", video, "--at", str(duration / 2), "--per-file",
                      "-k", "4") == 0  # fmt: skip
        ranked = [Path(r["path"]).name for r in last_json(capsys.readouterr().out)["results"]]
        same = [dict((s[0], s[3]) for s in spec)[n] == label for n in ranked]
        hits.append(same[0])
        aps.append(sum(sum(same[: i + 1]) / (i + 1) for i in range(4) if same[i]) / 2)
    assert got["R@1"] == pytest.approx(sum(hits) / 4, abs=1e-4)
    assert got["mAP"] == pytest.approx(sum(aps) / 4, abs=1e-4)
    other = tmp_path / "other"
    assert _index(l3_ckpt, other, "--inputs", str(folder / "b.mp4")) == 0
    capsys.readouterr()
    args[1] = str(other)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] != "b.mp4"))
    with pytest.raises(AvsslError, match="holds none of the test videos of"):
        _benchmark("query_classes").main(args)
