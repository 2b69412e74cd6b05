"""``avssl index`` / ``avssl query``: building, incremental updates, search and bad input."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from bad_media import last_json
from conftest import TINY, MediaFactory

import train
from avssl.cli import main as cli
from avssl.config import load_config, to_dict
from avssl.data.media import read_audio
from avssl.errors import AvsslError
from avssl.models import build_model
from avssl.tools import ann
from avssl.tools.index import FORMAT, Index, empty_tensors, load_index, save_index
from avssl.tools.index_media import window_centres
from avssl.tools.query import search
from avssl.train.checkpoint import load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_cache):
    """A tiny trained contrastive checkpoint and a random-weight l3 one."""
    root = tmp_path_factory.mktemp("ckpt")
    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={root / 'runs'}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    trained = next((root / "runs").glob("*/last.pt"))
    cfg = load_config(None, [s for s in TINY if s.startswith(("data.", "model."))])
    cfg.model.method = "l3"
    other = save_checkpoint(root / "l3.pt", {"model": build_model(cfg.model, cfg.data).state_dict(),
                                             "config": to_dict(cfg)})  # fmt: skip
    return trained, other


@pytest.fixture
def media(media_factory: MediaFactory) -> Path:
    folder = media_factory.folder / "media"
    folder.mkdir()
    mf = MediaFactory(folder)
    mf("clip.mp4", duration=3.0)
    mf("spaced é name.webm", duration=2.0, channels=2)
    mf("tone.wav", duration=2.5)
    mf("still.png")
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder


def _index(ckpt, inputs, out, *extra) -> int:
    return cli(["index", "--checkpoint", str(ckpt), "--inputs", *map(str, inputs),
                "--out", str(out), "--quiet", *extra])  # fmt: skip


def _query(index, ckpt, *args) -> int:
    return cli(["query", "--index", str(index), "--checkpoint", str(ckpt), *args])


def test_index_then_query(ckpts, media, tmp_path, capsys):
    ckpt, _ = ckpts
    out = tmp_path / "idx"
    assert _index(ckpt, [media], out) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["files"] == 4 and summary["added"] == 4 and summary["n_skipped"] == 1
    assert summary["skipped"][0]["path"].endswith("broken.mp4")
    assert "not a media file" in summary["skipped"][0]["reason"]
    # clip 3 s -> 3 windows, webm 2 s -> 2, wav 2.5 s -> 2 (hop 1, window 1), png -> 1 visual
    assert summary["audio_windows"] == 3 + 2 + 2 and summary["visual_windows"] == 3 + 2 + 1
    assert [len(window_centres(d, 1.0, 1.0)) for d in (3.0, 2.0, 2.5, 0.4)] == [3, 2, 2, 1]

    index = load_index(out)
    model, cfg, _ = load_model(ckpt)
    # a stored audio row is the model's embedding of the window centred on its time
    clip_id = next(i for i, f in enumerate(index.files) if f["path"].endswith("clip.mp4"))
    row = int(((index.tensors["audio_file"] == clip_id) & (index.tensors["audio_time"] == 1.5))
               .nonzero()[0])  # fmt: skip
    with torch.no_grad():
        direct = F.normalize(
            model.embed_audio(read_audio(media / "clip.mp4", 1.0, 1.0, 16000)[None])
        )
    torch.testing.assert_close(index.tensors["audio"][row].float(), direct[0], atol=2e-3, rtol=0)

    # same-modality query with a stored window finds that window first, with cosine 1
    assert _query(out, ckpt, "--audio", str(media / "tone.wav"), "--at", "1.5", "--target",
                  "audio", "-k", "3", "--json") == 0  # fmt: skip
    res = last_json(capsys.readouterr().out)
    assert set(res) == {"query", "results"}
    assert res["query"] == {"path": str(media / "tone.wav"), "modality": "audio", "time": 1.5,
                            "target": "audio"}  # fmt: skip
    assert len(res["results"]) == 3
    first = res["results"][0]
    assert set(first) == {"path", "time", "modality", "score"}
    # clip.mp4 carries the same test tone, so its window at 1.5 s may tie with the query's own
    own = [r for r in res["results"] if r["path"] == str((media / "tone.wav").resolve())]
    assert own and own[0]["time"] == 1.5
    assert own[0]["score"] == pytest.approx(1.0, abs=2e-3)  # float16 storage
    assert first["score"] == pytest.approx(own[0]["score"], abs=2e-3)
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)

    # default target of an image query is audio; the table names the files
    assert _query(out, ckpt, "--image", str(media / "still.png"), "-k", "2") == 0
    table = capsys.readouterr().out
    assert "visual query" in table and "-> audio" in table and len(table.splitlines()) == 4


def test_hop_off_the_sample_grid_keeps_each_window_at_its_time(ckpts, media, tmp_path, capsys):
    # 0.3333 s is 5,332.8 samples at 16 kHz: the windows must start a whole number apart
    ckpt, _ = ckpts
    out = tmp_path / "idx"
    files = [media / "clip.mp4", media / "tone.wav"]
    assert _index(ckpt, files, out, "--hop", "0.3333") == 0
    capsys.readouterr()
    t = load_index(out).tensors
    for m in ("audio", "visual"):
        assert len(t[m]) == len(t[f"{m}_time"]) == len(t[f"{m}_file"])
    model, _, _ = load_model(ckpt)
    durations = {"clip.mp4": 3.0, "tone.wav": 2.5}
    index = load_index(out)
    for fid, entry in enumerate(index.files):
        name = Path(entry["path"]).name
        rows = (t["audio_file"] == fid).nonzero()[:, 0]
        times = t["audio_time"][rows]
        assert len(rows) == len(window_centres(durations[name], 1.0, 5333 / 16000))
        assert float(times.max()) + 0.5 <= durations[name] + 1e-3
        last = int(rows[-1])  # the last window of each file, where a shortfall shows first
        start = float(t["audio_time"][last]) - 0.5
        with torch.no_grad():
            direct = F.normalize(
                model.embed_audio(read_audio(media / name, start, 1.0, 16000)[None])
            )
        torch.testing.assert_close(t["audio"][last].float(), direct[0], atol=3e-3, rtol=0)


def _random_index(n_files=7, per_file=5, dim=8, seed=0) -> Index:
    g = torch.Generator().manual_seed(seed)
    t = empty_tensors(dim)
    n = n_files * per_file
    t["visual"] = F.normalize(torch.randn(n, dim, generator=g), dim=1).to(t["visual"].dtype)
    t["visual_file"] = torch.arange(n_files).repeat_interleave(per_file)
    t["visual_time"] = torch.arange(per_file).float().repeat(n_files)
    files = [{"path": f"f{i}"} for i in range(n_files)]
    meta = {"format": FORMAT, "checkpoint": {"path": "c.pt", "sha256": "0" * 64}}
    return Index(Path("x"), meta, files, t)


@pytest.mark.parametrize("seed", range(3))
def test_search_matches_brute_force(seed):
    index = _random_index(seed=seed)
    q = F.normalize(torch.randn(8, generator=torch.Generator().manual_seed(99 + seed)), dim=0)
    rows = []
    for i in range(index.count("visual")):
        score = sum(float(a) * float(b) for a, b in zip(index.tensors["visual"][i], q, strict=True))
        rows.append((score, f"f{int(index.tensors['visual_file'][i])}",
                     float(index.tensors["visual_time"][i])))  # fmt: skip
    rows.sort(reverse=True)
    got = search(index, q, "visual", 6)
    assert [(r["path"], r["time"]) for r in got] == [(p, t) for _, p, t in rows[:6]]
    assert [r["score"] for r in got] == pytest.approx([s for s, _, _ in rows[:6]], abs=1e-5)
    best = {}
    for s, p, t in rows:
        best.setdefault(p, (s, t))
    got = search(index, q, "visual", 4, per_file=True)
    expect = sorted(((s, p, t) for p, (s, t) in best.items()), reverse=True)[:4]
    assert [(r["path"], r["time"]) for r in got] == [(p, t) for _, p, t in expect]


def test_incremental_reindex(ckpts, media, tmp_path, capsys):
    ckpt, _ = ckpts
    out = tmp_path / "idx"
    assert _index(ckpt, [media], out) == 0
    capsys.readouterr()
    before = load_index(out, mmap=False)
    png_row = before.tensors["visual"][before.tensors["visual_time"].isnan()].clone()

    assert _index(ckpt, [media], out) == 0  # nothing changed
    s = last_json(capsys.readouterr().out)
    assert (s["added"], s["updated"], s["unchanged"], s["removed"]) == (0, 0, 4, 0)

    sf.write(media / "tone.wav", np.zeros(16000 * 4, np.float32), 16000)  # changed: 4 s now
    os.utime(media / "tone.wav", ns=(1, 10**18))
    (media / "clip.mp4").unlink()  # removed
    MediaFactory(media)("new.flac", duration=1.0)  # new
    assert _index(ckpt, [media], out) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["added"], s["updated"], s["unchanged"], s["removed"]) == (1, 1, 2, 1)
    assert s["audio_windows"] == 2 + 4 + 1 and s["visual_windows"] == 2 + 1
    after = load_index(out)
    assert sorted(Path(f["path"]).name for f in after.files) == sorted(
        ["spaced é name.webm", "still.png", "tone.wav", "new.flac"]
    )
    # unchanged rows are kept as they were, and file ids point at the right files
    torch.testing.assert_close(
        after.tensors["visual"][after.tensors["visual_time"].isnan()], png_row
    )
    tone = next(i for i, f in enumerate(after.files) if f["path"].endswith("tone.wav"))
    assert int((after.tensors["audio_file"] == tone).sum()) == 4
    assert len(list(out.glob("embeddings-*.pt"))) == 1  # the superseded tensor file is gone
    # a mistyped (or unmounted) input is an error, not "every file under it was removed"
    meta = (out / "meta.json").read_text()
    assert _index(ckpt, [media.parent / "nowhere"], out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere: no such file or folder" in err
    assert (out / "meta.json").read_text() == meta and len(load_index(out).files) == 4

    # another hop re-embeds every file: each is updated, none added
    assert _index(ckpt, [media], out, "--hop", "0.5") == 0
    s = last_json(capsys.readouterr().out)
    assert (s["added"], s["updated"], s["unchanged"], s["removed"]) == (0, 4, 0, 0)
    # a changed file that no longer decodes leaves the index: removed (and skipped)
    (media / "new.flac").write_bytes(b"not audio any more")
    assert _index(ckpt, [media], out) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["added"], s["updated"], s["unchanged"], s["removed"]) == (0, 0, 3, 1)
    assert s["files"] == 3 and s["n_skipped"] == 2  # broken.mp4 and new.flac
    # --rebuild replaces the tensor file instead of leaving the old one beside it
    assert _index(ckpt, [media], out, "--rebuild") == 0
    capsys.readouterr()
    assert len(list(out.glob("embeddings-*.pt"))) == 1


def test_a_same_size_rewrite_is_embedded_again_and_a_new_hop_is_recorded(ckpts, tmp_path, capsys):
    ckpt, _ = ckpts
    folder, out = tmp_path / "m", tmp_path / "idx"
    folder.mkdir()
    wav = MediaFactory(folder)("tone.wav", duration=2.0)
    MediaFactory(folder)(".hidden.wav", duration=1.0)  # a dot file is not indexed
    assert _index(ckpt, [folder], out) == 0
    assert last_json(capsys.readouterr().out)["files"] == 1
    before = load_index(out, mmap=False).tensors["audio"].clone()
    size = wav.stat().st_size
    sf.write(wav, np.zeros(32000, np.float32), 16000)  # other sound, same length and size
    assert wav.stat().st_size == size
    os.utime(wav, ns=(1, 10**18))
    assert _index(ckpt, [folder], out) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["added"], s["updated"], s["unchanged"]) == (0, 1, 0)
    assert not torch.equal(load_index(out).tensors["audio"], before)
    assert _index(ckpt, [folder], out, "--hop", "0.5") == 0
    assert last_json(capsys.readouterr().out)["audio_windows"] == 3
    assert load_index(out).meta["hop"] == 0.5  # the next update embeds new files at it too
    MediaFactory(folder)("new.wav", duration=2.0)
    assert _index(ckpt, [folder], out) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["added"], s["unchanged"], s["audio_windows"]) == (1, 1, 3 + 3)
    # -k above the files of a --per-file search names the files, not the windows
    assert _query(out, ckpt, "--audio", str(wav), "--target", "audio", "--per-file", "-k",
                  "5", "--json") == 0  # fmt: skip
    cap = capsys.readouterr()
    assert "warning: -k 5 is more than the 2 files with audio in the index" in cap.err
    assert len(last_json(cap.out)["results"]) == 2


def test_query_times_in_the_file_and_results_in_milliseconds(media_factory):
    from avssl.errors import MediaError
    from avssl.tools.query import query_window, results_of

    wav = media_factory("q.wav", duration=2.0)
    assert query_window(wav, "audio", 2.0, "--audio")[1] == 2.0  # the end is in the file
    with pytest.raises(MediaError, match="outside the file"):
        query_window(wav, "audio", 2.01, "--audio")
    index = _random_index(n_files=1, per_file=2)
    index.tensors["visual_time"] = torch.tensor([1 / 3, math.nan])
    got = results_of(index, "visual", torch.tensor([0, 1]), torch.tensor([0.5, 0.25]))
    assert [r["time"] for r in got] == [0.333, None]


def test_other_checkpoint_refused(ckpts, media, tmp_path, capsys):
    ckpt, other = ckpts
    out = tmp_path / "idx"
    assert _index(ckpt, [media / "tone.wav"], out) == 0
    capsys.readouterr()
    assert _query(out, other, "--audio", str(media / "tone.wav")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out}: built with checkpoint") and len(err.splitlines()) == 1
    assert _index(other, [media / "tone.wav"], out) == 2
    err = capsys.readouterr().err
    assert "built with checkpoint" in err and err.strip().endswith(f"--out {out} --rebuild")
    # the advice works: the index is rebuilt with the other checkpoint, then answers its queries
    assert _index(other, [media / "tone.wav"], out, "--rebuild") == 0
    assert _query(out, other, "--audio", str(media / "tone.wav"), "--target", "audio") == 0


def test_html_escapes_names(ckpts, media_factory, tmp_path, capsys):
    ckpt, _ = ckpts
    evil = media_factory("<script>boom&.wav", duration=1.0)
    media_factory("a.mp4", duration=1.0)
    out, page = tmp_path / "idx", tmp_path / "r.html"
    assert _index(ckpt, [evil, media_factory.folder / "a.mp4"], out) == 0
    assert _query(out, ckpt, "--image", str(media_factory.folder / "a.mp4"), "--target", "audio",
                  "--html", str(page), "--json") == 0  # fmt: skip
    assert last_json(capsys.readouterr().out)["results"][0]["modality"] == "audio"
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;boom&amp;.wav" in text
    assert "data:audio/wav;base64," in text and "data:image/jpeg;base64," in text


def test_hits_of_files_changed_or_missing_since_indexing_are_noted(
    ckpts, media_factory, tmp_path, capsys
):
    # the page decoded a changed file's thumbnail as if it were what the search had scored
    ckpt, _ = ckpts
    kept, changed = media_factory("a.mp4", duration=1.0), media_factory("b.mp4", duration=1.0)
    gone = media_factory("c.mp4", duration=1.0)
    query = media_factory("q.wav", duration=1.0)
    out, page = tmp_path / "idx", tmp_path / "r.html"
    assert _index(ckpt, [kept, changed, gone], out) == 0
    capsys.readouterr()
    args = ["--audio", str(query), "-k", "3", "--html", str(page)]
    assert _query(out, ckpt, *args) == 0  # nothing changed: no note
    assert "note:" not in capsys.readouterr().err and "indexed" not in page.read_text()
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same size
    gone.unlink()
    assert _query(out, ckpt, *args, "--force") == 0
    table, err = capsys.readouterr()
    assert len(table.splitlines()) == 5  # the table keeps its rows
    scored = "its hits were scored on the file as it was (run avssl index again)"
    assert sorted(err.splitlines()) == [
        f"note: {changed.resolve()}: changed since it was indexed; {scored}",
        f"note: {gone.resolve()}: missing (moved or deleted since it was indexed); {scored}",
    ]
    text = page.read_text(encoding="utf-8")
    assert text.count("changed since it was indexed") == 1 and text.count(scored) == 2
    row = next(line for line in text.splitlines() if f"<td>{changed.resolve()}</td>" in line)
    assert "changed since it was indexed" in row and "data:image/jpeg;base64," in row
    assert _query(out, ckpt, *args[:4], "--json") == 0  # the JSON's stderr says it too
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_html_never_overwrites_indexed_media(ckpts, media_factory, tmp_path, capsys):
    ckpt, _ = ckpts
    clip, tone = media_factory("a.mp4", duration=1.0), media_factory("b.wav", duration=1.0)
    query = media_factory("q.wav", duration=1.0)
    link = tmp_path / "link.html"
    link.symlink_to(clip)
    out = tmp_path / "idx"
    assert _index(ckpt, [clip, tone], out) == 0
    capsys.readouterr()
    for page in (clip, tone, link):  # indexed, and named by no argument
        before = page.read_bytes()
        assert _query(out, ckpt, "--audio", str(query), "--html", str(page), "--force") == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and page.read_bytes() == before, err
        if page != link:  # refused by its name: a page is named .html
            assert err == f"error: {page}: --html writes an HTML page: name it .html or .htm\n"
            continue
        assert err.startswith(f"error: {page}: is ")
        assert f"a media file of the index {out}" in err and "--force never" in err


def test_bad_inputs(ckpts, media, tmp_path, capsys, monkeypatch):
    ckpt, _ = ckpts
    out = tmp_path / "idx"
    dash = MediaFactory(media)("-dash.wav", duration=1.0)
    assert _index(ckpt, [media / "tone.wav", media / "still.png"], out) == 0
    capsys.readouterr()
    cases = [
        (["--image", str(media / "tone.wav")], "an audio file without pictures"),
        (["--audio", str(media / "still.png")], "a still image"),
        (["--audio", str(media / "broken.mp4")], "not a media file"),
        (["--audio", str(media / "missing.wav")], "no such file"),
        (["--audio", str(media / "tone.wav"), "--at", "7"], "outside the file"),
        (["--image", str(media / "still.png"), "--at", "-5"], "a still image has no time"),
        (["--audio", str(media / "tone.wav"), "-k", "0"], "-k must be at least 1"),
    ]
    for args, reason in cases:
        assert _query(out, ckpt, *args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and reason in err and len(err.splitlines()) == 1, err
    # -k larger than the index: clamped with a warning
    assert _query(out, ckpt, f"--audio={dash}", "-k", "50", "--json") == 0
    cap = capsys.readouterr()
    assert "warning: -k 50 is more than the 1 visual windows" in cap.err
    assert len(last_json(cap.out)["results"]) == 1
    # a leading dash works relative to the current folder too
    monkeypatch.chdir(media)
    assert _query(out, ckpt, "--audio=-dash.wav", "-k", "1", "--json") == 0
    assert last_json(capsys.readouterr().out)["query"]["path"] == "-dash.wav"
    # an index holding no audio windows
    empty = tmp_path / "empty"
    assert _index(ckpt, [media / "still.png"], empty) == 0
    capsys.readouterr()
    assert _query(empty, ckpt, "--image", str(media / "still.png")) == 2
    assert "holds no audio windows" in capsys.readouterr().err
    # --strict: the first unreadable file is an error
    assert _index(ckpt, [media / "broken.mp4"], tmp_path / "strict", "--strict") == 2
    assert "broken.mp4: not a media file" in capsys.readouterr().err


@pytest.fixture
def faiss_mod(monkeypatch):
    faiss = pytest.importorskip("faiss", reason="--approx tests need faiss (pip install faiss-cpu)")
    monkeypatch.setattr(ann, "_LOADED", {})  # no graph kept from another test
    return faiss


def _saved_random_index(folder: Path, n_files: int, per_file: int, dim: int, seed=0) -> Index:
    index = _random_index(n_files, per_file, dim, seed)
    index.path = folder
    save_index(index)
    return load_index(folder)


def _keys(results: list[dict]) -> set:
    return {(r["path"], r["time"]) for r in results}


def test_approx_recall_matches_brute_force(faiss_mod, tmp_path):
    index = _saved_random_index(tmp_path / "idx", n_files=40, per_file=100, dim=32)
    qs = F.normalize(torch.randn(20, 32, generator=torch.Generator().manual_seed(5)), dim=1)
    recalls = []
    for q in qs:
        exact = search(index, q, "visual", 10)
        approx = search(index, q, "visual", 10, approx=True)
        assert len(approx) == 10 and set(approx[0]) == set(exact[0])
        scores = [r["score"] for r in approx]
        assert scores == sorted(scores, reverse=True)
        # shared results carry the same float32 re-scored score as the brute-force path
        by_key = {(r["path"], r["time"]): r["score"] for r in exact}
        assert all(
            r["score"] == by_key[k] for r in approx if (k := (r["path"], r["time"])) in by_key
        )
        recalls.append(len(_keys(approx) & _keys(exact)) / 10)
    assert sum(recalls) / len(recalls) >= 0.9, recalls


def test_approx_cache_reused_then_rebuilt(faiss_mod, tmp_path, monkeypatch):
    folder = tmp_path / "idx"
    index = _saved_random_index(folder, n_files=5, per_file=40, dim=8)
    q = F.normalize(torch.randn(8, generator=torch.Generator().manual_seed(1)), dim=0)
    builds = []
    real_build = ann.build
    monkeypatch.setattr(ann, "build", lambda *a: builds.append(a[1]) or real_build(*a))
    first = search(index, q, "visual", 5, approx=True)
    caches = list(folder.glob("hnsw-*.faiss"))
    assert builds == ["visual"] and [c.name.split("-")[1] for c in caches] == ["visual"]
    assert not list(folder.glob(".*tmp*"))  # written atomically, no temporary left
    stamp = caches[0].stat().st_mtime_ns

    ann._LOADED.clear()  # a new process: the graph comes from the cache file, not a rebuild
    assert search(load_index(folder), q, "visual", 5, approx=True) == first
    assert builds == ["visual"] and caches[0].stat().st_mtime_ns == stamp

    # the index changes (a new file whose windows all equal the query): rebuilt, old cache gone
    index = load_index(folder, mmap=False)
    index.tensors["visual"] = torch.cat([index.tensors["visual"], q.half().repeat(3, 1)])
    index.tensors["visual_file"] = torch.cat([index.tensors["visual_file"], torch.full((3,), 5)])
    index.tensors["visual_time"] = torch.cat([index.tensors["visual_time"], torch.arange(3.0)])
    index.files.append({"path": "new"})
    save_index(index)
    got = search(load_index(folder), q, "visual", 5, approx=True)
    assert builds == ["visual", "visual"]
    assert [r["path"] for r in got[:3]] == ["new"] * 3
    new_caches = list(folder.glob("hnsw-*.faiss"))
    assert len(new_caches) == 1 and new_caches[0] != caches[0]


def test_approx_cli_matches_exact(faiss_mod, ckpts, media, tmp_path, capsys):
    ckpt, _ = ckpts
    out = tmp_path / "idx"
    assert _index(ckpt, [media], out) == 0
    capsys.readouterr()
    args = ["--audio", str(media / "tone.wav"), "-k", "4", "--json"]
    assert _query(out, ckpt, *args) == 0
    exact = last_json(capsys.readouterr().out)
    assert _query(out, ckpt, *args, "--approx") == 0
    approx = last_json(capsys.readouterr().out)  # a tiny index: the graph finds all
    assert approx["query"] == exact["query"]

    def key(r):  # equal scores may come in either order
        return (-r["score"], r["path"], r["time"])

    assert sorted(approx["results"], key=key) == sorted(exact["results"], key=key)
    assert [p.name.split("-")[1] for p in out.glob("hnsw-*.faiss")] == ["visual"]
    assert _query(out, ckpt, *args, "--approx", "--per-file") == 0
    assert "--approx ignored" in capsys.readouterr().err


def test_approx_without_faiss(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    assert _query(tmp_path / "idx", tmp_path / "c.pt", "--audio", "a.wav", "--approx") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'idx'}: --approx needs faiss (pip install -e '.[faiss]')"
    with pytest.raises(AvsslError, match="--approx needs faiss"):
        search(_random_index(), torch.ones(8) / 8**0.5, "visual", 3, approx=True)


@pytest.mark.parametrize(
    "meta,reason",
    [
        ("[]", "damaged index metadata (not a JSON object)"),
        ('{"format": "nope"}', "not an avssl index (format 'nope')"),
        (f'{{"format": "{FORMAT}"}}', "damaged index metadata (no 'tensors' or 'files')"),
        ("{", "damaged index metadata"),
        (f'{{"format": "{FORMAT}", "tensors": "t.pt", "files": []}}',
         "damaged index metadata (no 'checkpoint' path and sha256)"),
        (f'{{"format": "{FORMAT}", "tensors": "t.pt", "files": [], "checkpoint": "x"}}',
         "damaged index metadata (no 'checkpoint' path and sha256)"),
    ],
)  # fmt: skip
def test_damaged_index_metadata_is_one_error(meta, reason, tmp_path):
    (tmp_path / "meta.json").write_text(meta)
    with pytest.raises(AvsslError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_index(tmp_path)


def test_a_second_index_update_at_once_is_refused(ckpts, media, tmp_path, capsys):
    from avssl.folder_lock import hold_folder

    out = tmp_path / "idx"
    out.mkdir()
    with hold_folder(out, "held"):  # as a running update holds it
        assert _index(ckpts[0], [media], out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {out}: another avssl index is updating this index; wait for it to end"
    assert not any(out.iterdir())
    fresh = tmp_path / "fresh"
    assert _index(ckpts[0], [tmp_path / "nowhere"], fresh) == 2  # refused: no folder left
    assert not fresh.exists()


def test_a_wav_cut_short_is_skipped(ckpts, media_factory, tmp_path, capsys):
    folder = tmp_path / "wavs"
    folder.mkdir()
    mf = MediaFactory(folder)
    mf("whole.wav", duration=2.0)
    cut = mf("cut.wav", duration=2.0)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    assert _index(ckpts[0], [folder], tmp_path / "idx") == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["files"] == 1 and res["n_skipped"] == 1
    [skip] = res["skipped"]
    assert skip["path"] == str(cut) and skip["reason"].startswith("truncated: header declares")
    # nor is it a query: it would read as a shorter whole sound
    assert _query(tmp_path / "idx", ckpts[0], "--audio", str(cut), "--target", "audio") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cut}: truncated: header declares") and "\n" not in err


def test_the_table_keeps_a_file_name_with_a_newline_on_its_row(capsys):
    from avssl.tools.query_cli import _print_table

    query = {"modality": "audio", "path": "q\nx.wav", "time": 1.0, "target": "visual"}
    _print_table(query, [{"score": 0.5, "time": None, "path": "a\nb.png"}])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("audio query q\\nx.wav at 1.00 s")
    assert lines[2].endswith("a\\nb.png")


def test_stamp_change_tells_unchanged_changed_and_missing_files(tmp_path):
    """:func:`stamp_change` by one ``os.stat``: a folder on the path replaced by a file is a
    missing file too, not an unreadable one."""
    from avssl.tools.index_media import file_stamp, stamp_change

    folder = tmp_path / "sub"
    folder.mkdir()
    path = folder / "a.wav"
    path.write_bytes(b"0123")
    entry = {"path": str(path), **file_stamp(path)}
    assert stamp_change(entry) is None
    os.utime(path, ns=(0, entry["mtime_ns"] + 1_000_000))
    assert stamp_change(entry) == "changed since it was indexed"
    path.unlink()
    assert stamp_change(entry).startswith("missing")
    folder.rmdir()
    folder.write_bytes(b"")  # the folder is now a file: a.wav cannot be under it
    assert stamp_change(entry).startswith("missing")
