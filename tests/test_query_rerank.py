"""``avssl query --rerank N``: the search's best windows re-scored by the best location, as
``evaluate.py retrieval`` scores a sound against a picture."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import MediaFactory
from test_index_fixes import _checkpoint, _index, _one_line_error, _query

from avssl.data.media import probe
from avssl.eval.embed import frames_to_input
from avssl.tools.index import load_index
from avssl.tools.query import unit_embedding
from avssl.tools.stream_io import audio_end, iter_frames_at, read_audio_padded
from avssl.train.checkpoint import load_model

HOP = "0.5"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """Pictures that differ from window to window (frame rates and shapes differ, so no two
    windows show the same picture), a still image and a sound."""
    folder = tmp_path_factory.mktemp("media")
    mf = MediaFactory(folder)
    mf("a.mp4", duration=3.0)
    mf("b.mp4", duration=2.0, fps=10.0, size=(64, 48))
    mf("still.png")
    mf("tone.wav", duration=2.0)
    return folder


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, media):
    """``{method: (checkpoint, index)}`` of random-weight map models, indexed with hop 0.5 s."""
    root = tmp_path_factory.mktemp("rerank")
    out = {}
    for method in ("contrastive", "avolnet"):
        torch.manual_seed(0)
        ckpt = _checkpoint(root, method)
        assert _index(ckpt, root / method, "--inputs", str(media), "--hop", HOP) == 0
        out[method] = (ckpt, root / method)
    return out


def _evaluation_scores(ckpt, index_dir, query: list[str], target: str) -> dict:
    """``{(path, time): score}`` of every ``target`` window, computed directly with the model on
    the frames and sounds ``avssl index`` read: the best location of the picture's map
    (``max_l <audio, map[:, l]>``, unnormalised embeddings as the evaluation takes them), and
    checked against the model's own decision rule (:meth:`cross_scores`). The windows decoded
    here are checked to be the indexed ones: each one's unit pooled embedding is the stored row."""
    model, cfg, _ = load_model(ckpt)
    model.eval()
    index = load_index(index_dir)
    d, t = cfg.data, index.tensors
    _, path, at = query
    keys = [
        (index.files[int(f)]["path"], None if tt != tt else round(tt, 3))
        for f, tt in zip(t[f"{target}_file"].tolist(), t[f"{target}_time"].tolist(), strict=True)
    ]

    def frame(p, time):
        img = next(iter_frames_at(p, [time if time is not None else 0.0], (d.frame_size,) * 2))
        return frames_to_input(torch.from_numpy(img)[None], d.frame_size)

    def sound(p, time):
        end = audio_end(p, probe(p).duration)
        return read_audio_padded(p, time - d.window / 2, d.window, d.sample_rate, end)[None]

    with torch.no_grad():
        if target == "visual":
            wave, frames = sound(path, at), torch.cat([frame(p, tt) for p, tt in keys])
            maps = model.visual_map(frames).flatten(2)  # [G, D, L]
            scores = torch.einsum("d,gdl->gl", model.embed_audio(wave)[0], maps).amax(1)
            rule = model.cross_scores(model.visual_codes(frames), model.audio_codes(wave))[0]
        else:
            waves, picture = torch.cat([sound(p, tt) for p, tt in keys]), frame(path, at)
            qmap = model.visual_map(picture)[0].flatten(1)  # [D, L]
            scores = torch.einsum("ad,dl->al", model.embed_audio(waves), qmap).amax(1)
            rule = model.cross_scores(model.visual_codes(picture), model.audio_codes(waves))[:, 0]
    # the model's decision rule is a rising function of that score (avolnet calibrates it)
    assert rule.argsort().tolist() == scores.argsort().tolist()
    stored = t[target].float()
    atol = 2e-3 if t[target].dtype == torch.float16 else 1e-4
    decode = frame if target == "visual" else sound
    for row, (p, tt) in enumerate(keys):
        again = unit_embedding(model, decode(p, tt), target)
        assert torch.allclose(again, stored[row], atol=atol), (p, tt)
    return dict(zip(keys, scores.tolist(), strict=True))


QUERIES = {  # (flag, file, time) -> target
    "audio": (("--audio", "a.mp4", 1.0), "visual"),
    "picture": (("--video", "b.mp4", 1.0), "audio"),
}


@pytest.mark.parametrize("method", ["contrastive", "avolnet"])
@pytest.mark.parametrize("direction", ["audio", "picture"])
def test_rerank_of_all_windows_is_the_evaluation_ranking(indexes, media, method, direction, capsys):
    ckpt, index = indexes[method]
    (flag, name, at), target = QUERIES[direction]
    n = load_index(index).count(target)
    args = [flag, str(media / name), "--at", str(at), "-k", str(n)]
    if direction == "picture":
        args += ["--target", "audio"]
    assert _query(index, ckpt, *args, "--rerank", str(n)) == 0
    res = last_json(capsys.readouterr().out)
    assert list(res) == ["query", "rerank", "results"] and res["rerank"] == n
    reference = _evaluation_scores(ckpt, index, [flag, media / name, at], target)
    got = [((r["path"], r["time"]), r["score"]) for r in res["results"]]
    assert {key for key, _ in got} == set(reference)  # every window, once
    for key, score in got:
        assert score == pytest.approx(reference[key], rel=1e-4, abs=1e-5), key
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)

    # without --rerank the pooled search ranks them otherwise: re-ranking changed something
    assert _query(index, ckpt, *args) == 0
    pooled = last_json(capsys.readouterr().out)
    assert [r["score"] for r in pooled["results"]] != scores
    assert [(r["path"], r["time"]) for r in pooled["results"]] != [key for key, _ in got]


def _pooled(index, ckpt, capsys, *args) -> list[tuple]:
    """``(path, time)`` of the windows the search (no ``--rerank``) answers, best first."""
    assert _query(index, ckpt, *args) == 0
    return [(r["path"], r["time"]) for r in last_json(capsys.readouterr().out)["results"]]


def _by_location(keys, reference: dict) -> list[tuple]:
    """``keys`` best first by the evaluation's score (ties in the search's order)."""
    return sorted(keys, key=lambda key: -reference[key])


def test_rerank_keeps_the_best_k_of_the_top_n(indexes, media, capsys):
    ckpt, index = indexes["contrastive"]
    args = ["--audio", str(media / "a.mp4"), "--at", "1.0"]
    k = 2
    pooled = _pooled(index, ckpt, capsys, *args, "-k", str(load_index(index).count("visual")))
    reference = _evaluation_scores(ckpt, index, ["--audio", media / "a.mp4", 1.0], "visual")
    best = _by_location(pooled, reference)[:k]
    # the largest N whose pooled N best miss one of the k best by location: N must matter
    n = max(pooled.index(key) for key in best)
    assert n >= k, f"the k best by location are among the search's {k} best: N cannot matter"
    assert _query(index, ckpt, *args, "-k", str(k), "--rerank", str(n)) == 0
    res = last_json(capsys.readouterr().out)
    assert res["rerank"] == n and len(res["results"]) == k
    got = [(r["path"], r["time"]) for r in res["results"]]
    assert got == _by_location(pooled[:n], reference)[:k] and got != best
    assert [r["score"] for r in res["results"]] == pytest.approx(
        [reference[key] for key in got], rel=1e-4, abs=1e-5
    )


def test_rerank_with_approx_rescores_the_approximate_search(indexes, media, tmp_path, capsys):
    pytest.importorskip("faiss", reason="--approx needs the optional faiss extra")
    ckpt = indexes["avolnet"][0]
    index = shutil.copytree(indexes["avolnet"][1], tmp_path / "idx")  # the cache is written here
    args = ["--audio", str(media / "a.mp4"), "--at", "1.0", "--approx"]
    n, k = 6, 3
    assert _query(index, ckpt, *args, "-k", str(k), "--rerank", str(n)) == 0
    res = last_json(capsys.readouterr().out)
    assert list(index.glob("hnsw-visual-*.faiss"))  # the candidates came from faiss
    assert res["rerank"] == n
    top = _pooled(index, ckpt, capsys, *args, "-k", str(n))
    reference = _evaluation_scores(ckpt, index, ["--audio", media / "a.mp4", 1.0], "visual")
    got = [(r["path"], r["time"]) for r in res["results"]]
    assert got == _by_location(top, reference)[:k]
    assert [r["score"] for r in res["results"]] == pytest.approx(
        [reference[key] for key in got], rel=1e-4, abs=1e-5
    )


def test_rerank_per_file_rescores_each_files_best_pooled_window(indexes, media, capsys):
    ckpt, index = indexes["contrastive"]
    args = ["--audio", str(media / "a.mp4"), "--at", "1.0"]
    n = k = int(load_index(index).tensors["visual_file"].unique().numel())  # files with pictures
    top = _pooled(index, ckpt, capsys, *args, "-k", str(n))
    assert len({path for path, _ in top}) < n  # the n best windows repeat a file
    args.append("--per-file")
    windows = _pooled(index, ckpt, capsys, *args, "-k", str(n))  # each file's best pooled window
    assert _query(index, ckpt, *args, "-k", str(k), "--rerank", str(n)) == 0
    res = last_json(capsys.readouterr().out)
    assert res["rerank"] == n
    paths = [r["path"] for r in res["results"]]
    assert len(paths) == k and len(set(paths)) == k  # each file once
    reference = _evaluation_scores(ckpt, index, ["--audio", media / "a.mp4", 1.0], "visual")
    got = [(r["path"], r["time"]) for r in res["results"]]
    assert got == _by_location(windows, reference)[:k]
    assert [r["score"] for r in res["results"]] == pytest.approx(
        [reference[key] for key in got], rel=1e-4, abs=1e-5
    )
    # a file's best window by location is another one: the pooled one is what is re-scored
    best_by_location = {}
    for key in _by_location(reference, reference):
        best_by_location.setdefault(key[0], key)
    assert any(best_by_location[key[0]] != key for key in got)


@pytest.mark.parametrize("change", ["rewritten", "touched", "deleted"])
def test_rerank_of_a_file_changed_since_indexing_is_one_line(media, tmp_path, capsys, change):
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(media / name, folder / name)
    torch.manual_seed(0)
    ckpt = _checkpoint(tmp_path, "contrastive")
    assert _index(ckpt, tmp_path / "idx", "--inputs", str(folder), "--hop", HOP) == 0
    query = ["--audio", str(media / "tone.wav"), "-k", "1", "--rerank", "100"]
    assert _query(tmp_path / "idx", ckpt, *query) == 0
    capsys.readouterr()
    path = folder / "a.mp4"
    if change == "rewritten":  # other content and size
        shutil.copy(media / "b.mp4", path)
    elif change == "touched":  # the same bytes and size, a new modification time
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        path.unlink()
    assert _query(tmp_path / "idx", ckpt, *query) == 2
    err = _one_line_error(capsys)
    assert err.startswith(f"error: {path}: ") and "run avssl index again" in err
    assert ("changed since it was indexed" in err) == (change != "deleted")


def test_rerank_is_named_in_the_html_page(indexes, media, tmp_path, capsys):
    ckpt, index = indexes["contrastive"]
    args = ["--audio", str(media / "a.mp4"), "--at", "1.0", "-k", "2"]
    assert _query(index, ckpt, *args, "--rerank", "3", "--html", str(tmp_path / "r.html")) == 0
    assert _query(index, ckpt, *args, "--html", str(tmp_path / "p.html")) == 0
    capsys.readouterr()
    assert "best 3 re-scored by best location" in (tmp_path / "r.html").read_text()
    assert "re-scored" not in (tmp_path / "p.html").read_text()


def test_without_rerank_the_output_is_the_pooled_search(indexes, media, capsys):
    ckpt, index = indexes["avolnet"]
    assert _query(index, ckpt, "--audio", str(media / "a.mp4"), "--at", "1.0", "-k", "4") == 0
    res = last_json(capsys.readouterr().out)
    assert list(res) == ["query", "results"]
    assert all(set(r) == {"path", "time", "modality", "score"} for r in res["results"])
    model, cfg, _ = load_model(ckpt)
    d = cfg.data
    p = media / "a.mp4"
    wave = read_audio_padded(p, 0.5, d.window, d.sample_rate, audio_end(p, probe(p).duration))
    with torch.no_grad():
        q = torch.nn.functional.normalize(model.eval().embed_audio(wave[None]), dim=1)[0]
    loaded = load_index(index)
    pooled = loaded.tensors["visual"].float() @ q  # the stored unit vectors' dot products
    top = pooled.topk(4)
    assert [r["score"] for r in res["results"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    t = loaded.tensors
    times = [float(t["visual_time"][i]) for i in top.indices.tolist()]
    want = [(loaded.files[int(t["visual_file"][i])]["path"], None if tt != tt else round(tt, 3))
            for i, tt in zip(top.indices.tolist(), times, strict=True)]  # fmt: skip
    assert [(r["path"], r["time"]) for r in res["results"]] == want


@pytest.mark.parametrize(
    ("method", "sets", "args"),
    [
        ("avenet", (), ["--audio", "tone.wav"]),
        ("l3", (), ["--audio", "tone.wav", "--target", "audio"]),
        ("contrastive", ("model.spatial=false",), ["--image", "still.png"]),
    ],
)
def test_rerank_without_a_map_is_one_line_naming_the_method(
    media, tmp_path, capsys, method, sets, args
):
    ckpt = _checkpoint(tmp_path, method, *sets)
    assert _index(ckpt, tmp_path / "idx", "--inputs", str(media / "tone.wav"),
                  str(media / "still.png")) == 0  # fmt: skip
    capsys.readouterr()
    args = [args[0], str(media / args[1]), *args[2:]]
    assert _query(tmp_path / "idx", ckpt, *args, "-k", "1") == 0  # the search itself works
    capsys.readouterr()
    assert _query(tmp_path / "idx", ckpt, *args, "-k", "1", "--rerank", "1") == 2
    err = _one_line_error(capsys)
    assert f"the {method} method" in err and "--rerank" in err


def test_rerank_refusals(indexes, media, capsys):
    ckpt, index = indexes["contrastive"]
    with pytest.raises(SystemExit) as exc:
        _query(index, ckpt, "--audio", str(media / "tone.wav"), "-k", "5", "--rerank", "3")
    err = _one_line_error(capsys)
    assert exc.value.code == 2 and err.startswith("error: --rerank: 3 is less than -k 5")
    with pytest.raises(SystemExit) as exc:
        _query(index, ckpt, "--audio", str(media / "tone.wav"), "--rerank", "0")
    assert exc.value.code == 2 and _one_line_error(capsys).startswith("error: --rerank: ")
    # a same-modality query is already scored as the evaluation scores it
    same = ["--audio", str(media / "tone.wav"), "--target", "audio", "-k", "1", "--rerank", "2"]
    assert _query(index, ckpt, *same) == 2
    assert "pictures only; an audio query for audio windows" in _one_line_error(capsys)
