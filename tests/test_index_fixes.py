"""``avssl index`` / ``avssl query``: l3's unequal widths, l3 cross-modal queries, and what
``--rebuild`` keeps (recorded inputs and hop) and never deletes (another tool's files)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_media import last_json
from conftest import TINY, MediaFactory, media_folder

from avssl.cli import main as cli
from avssl.config import load_config, to_dict
from avssl.models import build_model, embedding_dims
from avssl.tools.index import load_index
from avssl.train.checkpoint import save_checkpoint


def _checkpoint(folder: Path, method: str, *sets: str) -> Path:
    """A random-weight checkpoint of ``method`` at the tiny test sizes, the same whichever tests
    ran before (the near-ties of a random network's scores then fall the same way every run)."""
    cfg = load_config(None, [s for s in TINY if s.startswith(("data.", "model."))] + list(sets))
    cfg.model.method = method
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.data)
    name = "-".join([method, *sets]).replace("=", "")
    path = save_checkpoint(
        folder / f"{name}.pt", {"model": model.state_dict(), "config": to_dict(cfg)}
    )
    return Path(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """l3 with 3 audio time bins (sound wider than pictures), with 1 (equal widths), and a
    contrastive model."""
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "l3": _checkpoint(root, "l3", "model.audio_time_bins=3"),
        "l3-equal": _checkpoint(root, "l3", "model.audio_time_bins=1"),
        "contrastive": _checkpoint(root, "contrastive"),
    }


@pytest.fixture
def media(media_factory: MediaFactory) -> Path:
    return media_folder(
        media_factory,
        {"still.png": {}, "tone.wav": {"duration": 2.0},
         "silent.mp4": {"duration": 2.0, "audio": False}, "clip.mp4": {"duration": 2.0}},
    )  # fmt: skip


def _index(ckpt, out, *extra) -> int:
    return cli(["index", "--checkpoint", str(ckpt), "--out", str(out), "--quiet", *extra])


def _query(index, ckpt, *args) -> int:
    return cli(["query", "--index", str(index), "--checkpoint", str(ckpt), "--json", *args])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def test_l3_index_of_files_lacking_a_side(ckpts, media, tmp_path, capsys):
    from avssl.train.checkpoint import load_model

    model, cfg, _ = load_model(ckpts["l3"])
    model.eval()
    da, dv = embedding_dims(model, cfg.data)
    assert da != dv  # the case that broke: each file's empty side came with the other's width
    # a file alone in a new index: its empty side meets the index's empty tensors
    for name in ("still.png", "tone.wav", "silent.mp4"):
        assert _index(ckpts["l3"], tmp_path / name, "--inputs", str(media / name)) == 0, name
    capsys.readouterr()
    out = tmp_path / "all"
    assert _index(ckpts["l3"], out, "--inputs", str(media)) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["files"], s["audio_windows"], s["visual_windows"]) == (4, 2 + 2, 1 + 2 + 2)
    index = load_index(out)
    assert index.tensors["audio"].shape == (4, da) and index.tensors["visual"].shape == (5, dv)

    # same-modality queries find the query's own file first
    assert _query(out, ckpts["l3"], "--image", str(media / "still.png"), "--target", "visual") == 0
    res = last_json(capsys.readouterr().out)["results"]
    assert res[0]["path"] == str((media / "still.png").resolve()) and res[0]["time"] is None
    assert res[0]["score"] == pytest.approx(1.0, abs=2e-3)
    assert _query(out, ckpts["l3"], "--audio", str(media / "tone.wav"), "--target", "audio") == 0
    res = last_json(capsys.readouterr().out)["results"]
    assert len(res) == 4 and res[0]["score"] == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("which", ["l3", "l3-equal"])
def test_l3_cross_modal_queries_go_through_the_index_cca(which, ckpts, media, tmp_path, capsys):
    """Unequal widths were a traceback, equal ones meaningless scores behind a warning, then a
    refusal: now every form of cross-modal query searches the index's CCA space."""
    ckpt = ckpts[which]
    out = tmp_path / "idx"
    assert _index(ckpt, out, "--inputs", str(media / "clip.mp4"), str(media / "still.png")) == 0
    assert last_json(capsys.readouterr().out)["cca"]["pairs"] == 2
    cases = [
        (["--audio", str(media / "clip.mp4")], "visual"),
        (["--image", str(media / "still.png")], "audio"),
        (["--video", str(media / "clip.mp4")], "visual"),
        (["--video", str(media / "clip.mp4"), "--target", "audio"], "audio"),
    ]
    for args, target in cases:
        assert _query(out, ckpt, *args) == 0, args
        res = last_json(capsys.readouterr().out)
        assert res["cca"]["components"] == 1  # two pairs: one direction
        assert {r["modality"] for r in res["results"]} == {target}
        # one direction: every window scores +1 or -1 (or 0 on it)
        assert all(abs(abs(r["score"]) - 1) < 2e-3 or r["score"] == 0 for r in res["results"])
    assert _query(out, ckpt, "--audio", str(media / "clip.mp4"), "--target", "audio") == 0
    res = last_json(capsys.readouterr().out)
    assert "cca" not in res and res["results"][0]["modality"] == "audio"


def test_rebuild_refuses_a_folder_that_is_not_an_index(ckpts, media, tmp_path, capsys):
    ckpt = ckpts["contrastive"]
    out = tmp_path / "project"
    out.mkdir()
    meta = json.dumps({"project": "my notes", "tensors": "weights.pt"})
    (out / "meta.json").write_text(meta)
    (out / "weights.pt").write_text("precious")
    for extra in ([], ["--rebuild"]):
        assert _index(ckpt, out, "--inputs", str(media / "tone.wav"), *extra) == 2
        err = _one_line_error(capsys)
        assert "not an avssl index" in err
        assert not extra or err.endswith(
            "remove the folder yourself, or give another --out, to index anew"
        )
        assert sorted(p.name for p in out.iterdir()) == ["meta.json", "weights.pt"]
        assert (out / "meta.json").read_text() == meta
        assert (out / "weights.pt").read_text() == "precious"


def test_rebuild_deletes_only_a_tensor_file_the_index_wrote(ckpts, media, tmp_path, capsys):
    ckpt = ckpts["contrastive"]
    out = tmp_path / "idx"
    assert _index(ckpt, out, "--inputs", str(media / "tone.wav")) == 0
    capsys.readouterr()
    own = next(out.glob("embeddings-*.pt"))
    # an edited meta.json naming a user's file, beside the index or outside it
    for name in ("weights.pt", "../weights.pt"):
        (out / name).write_text("precious")
        meta = json.loads((out / "meta.json").read_text())
        (out / "meta.json").write_text(json.dumps({**meta, "tensors": name}))
        assert _index(ckpt, out, "--inputs", str(media / "tone.wav"), "--rebuild") == 0
        capsys.readouterr()
        assert (out / name).read_text() == "precious"
        assert len(load_index(out).files) == 1
    assert own.is_file()  # no longer named by meta.json: left alone as well
    # an index's own tensor file is replaced, not left beside the new one
    before = set(out.glob("embeddings-*.pt"))
    assert _index(ckpt, out, "--inputs", str(media / "tone.wav"), "--rebuild") == 0
    capsys.readouterr()
    assert len(set(out.glob("embeddings-*.pt")) - before) == 1
    assert len(set(out.glob("embeddings-*.pt"))) == len(before)


def test_rebuild_keeps_the_recorded_inputs_and_hop(ckpts, media, tmp_path, capsys):
    ckpt = ckpts["contrastive"]
    out = tmp_path / "idx"
    assert _index(ckpt, out, "--inputs", str(media), "--hop", "0.5") == 0
    first = last_json(capsys.readouterr().out)
    recorded = json.loads((out / "meta.json").read_text())
    assert _index(ckpt, out, "--rebuild") == 0
    again = last_json(capsys.readouterr().out)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["inputs"], meta["hop"]) == (recorded["inputs"], 0.5)
    assert (again["files"], again["added"], again["audio_windows"], again["visual_windows"]) == (
        first["files"], first["files"], first["audio_windows"], first["visual_windows"],
    )  # fmt: skip
    # an explicit flag still wins
    assert _index(ckpt, out, "--rebuild", "--hop", "1", "--inputs", str(media / "tone.wav")) == 0
    last = last_json(capsys.readouterr().out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["hop"] == 1.0 and meta["inputs"] == [str((media / "tone.wav").resolve())]
    assert (last["files"], last["audio_windows"]) == (1, 2)
    # a recorded hop an edit spoilt is one error, not a traceback
    (out / "meta.json").write_text(json.dumps({**meta, "hop": "fast"}))
    assert _index(ckpt, out, "--inputs", str(media / "tone.wav")) == 2
    assert "damaged index metadata (hop 'fast')" in _one_line_error(capsys)


def test_search_refuses_a_query_of_another_width(tmp_path):
    import torch

    from avssl.errors import AvsslError
    from avssl.tools.index import Index, empty_tensors
    from avssl.tools.query import search

    tensors = empty_tensors(8)
    tensors["visual"] = torch.randn(3, 8).half()
    tensors["visual_file"], tensors["visual_time"] = torch.zeros(3, dtype=torch.long), torch.ones(3)
    index = Index(tmp_path, {}, [{"path": "a.mp4"}], tensors)
    assert len(search(index, torch.randn(8), "visual", 2)) == 2
    with pytest.raises(AvsslError, match="visual windows are 8-d, the query 4-d"):
        search(index, torch.randn(4), "visual", 2)


def test_a_hop_under_10_ms_is_refused(capsys):
    # 1e-9 was rounded up to one audio sample: a window per sample, 800 MB for a 6-s clip
    from avssl.cli import main as cli

    assert cli(["index", "--checkpoint", "x", "--inputs", "y", "--out", "z", "--hop", "1e-9"]) == 2
    assert capsys.readouterr().err.strip() == "error: --hop: must be at least 0.01 s, got 1e-09"


def test_a_hop_over_an_hour_is_refused(capsys):
    # written to meta.json, it made every later update refuse the index as damaged
    from avssl.cli import main as cli

    assert cli(["index", "--checkpoint", "x", "--inputs", "y", "--out", "z", "--hop", "3601"]) == 2
    assert capsys.readouterr().err.strip() == "error: --hop: must be at most 3600 s, got 3601"


@pytest.mark.parametrize("hop", ["inf", "nan", "0", "-1"])
def test_a_bad_hop_is_one_argparse_line(hop, capsys):
    # inf passed a hand-written > 0 check and was then reported as damaged index metadata
    from avssl.cli import main as cli

    with pytest.raises(SystemExit) as exc:
        cli(["index", "--checkpoint", "x", "--inputs", "y", "--out", "z", "--hop", hop])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: --hop: ") and "\n" not in err


def test_a_file_name_that_is_not_utf8_is_indexed_and_queried(ckpts, media, tmp_path, capsys):
    # meta.json was written as UTF-8 text, which cannot hold such a name: a traceback, and an
    # orphan tensor file that made the folder "not an avssl index" from then on
    ckpt = ckpts["contrastive"]
    folder = tmp_path / "names"
    folder.mkdir()
    odd = folder / os.fsdecode(b"caf\xe9.mp4")
    shutil.copy(media / "clip.mp4", odd)
    out = tmp_path / "idx"
    assert _index(ckpt, out, "--inputs", str(folder)) == 0
    assert last_json(capsys.readouterr().out)["files"] == 1  # printed to a strict UTF-8 stream
    assert [f["path"] for f in load_index(out).files] == [str(odd)]
    assert _index(ckpt, out) == 0
    assert last_json(capsys.readouterr().out)["unchanged"] == 1
    page = tmp_path / "r.html"
    assert _query(out, ckpt, "--audio", str(odd), "--html", str(page)) == 0
    res = last_json(capsys.readouterr().out)
    assert res["query"]["path"] == str(odd) and res["results"][0]["path"] == str(odd)
    assert "caf\\udce9.mp4" in page.read_text(encoding="utf-8")
    assert cli(["query", "--index", str(out), "--checkpoint", str(ckpt), "--audio", str(odd)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("caf\\udce9.mp4")


def test_a_failed_metadata_write_leaves_no_tensor_file(ckpts, media, tmp_path, capsys, monkeypatch):
    import avssl.tools.index as index_module

    def full_disk(path, *args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    ckpt = ckpts["contrastive"]
    out = tmp_path / "idx"
    assert _index(ckpt, out, "--inputs", str(media / "tone.wav")) == 0
    capsys.readouterr()
    before = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(index_module, "write_text", full_disk)
    assert _index(ckpt, out, "--inputs", str(media)) == 2
    assert "No space left on device" in _one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == before
    fresh = tmp_path / "fresh"
    assert _index(ckpt, fresh, "--inputs", str(media)) == 2
    capsys.readouterr()
    assert not fresh.exists()  # nothing of a first run is left
    monkeypatch.undo()
    assert _index(ckpt, out, "--inputs", str(media)) == 0  # still an index
    assert last_json(capsys.readouterr().out)["files"] == 4


def test_links_to_nothing_are_skipped_and_a_lost_linked_folder_is_refused(
    ckpts, media, tmp_path, capsys
):
    # they were dropped without a word: a linked folder on an unmounted disk read as every file
    # under it deleted ("removed": 2, nothing skipped)
    ckpt = ckpts["contrastive"]
    disk, folder, out = tmp_path / "disk", tmp_path / "in", tmp_path / "idx"
    disk.mkdir()
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        shutil.copy(media / "tone.wav", disk / name)
    shutil.copy(media / "still.png", folder / "still.png")
    (folder / "disk").symlink_to(disk)
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "loop.wav").symlink_to("loop.wav")
    assert _index(ckpt, out, "--inputs", str(folder)) == 0
    s = last_json(capsys.readouterr().out)
    assert s["files"] == 3 and s["n_skipped"] == 2
    assert s["skipped"] == [
        {"path": str(folder / "gone.wav"),
         "reason": f"no such file (a broken link to {tmp_path / 'nowhere.wav'})"},
        {"path": str(folder / "loop.wav"), "reason": "is a symlink loop"},
    ]  # fmt: skip
    meta = (out / "meta.json").read_text()
    disk.rename(tmp_path / "unmounted")
    for extra in ([], ["--rebuild"], ["--strict"]):
        assert _index(ckpt, out, *extra) == 2
        assert _one_line_error(capsys) == (
            f"error: {folder / 'disk'}: a link to {disk}, which is missing (an unmounted disk?), "
            f"through which {out} indexed 2 files; nothing changed (remove the link to drop them)"
        )
        assert (out / "meta.json").read_text() == meta
    (folder / "disk").unlink()  # the advice: the files go, as deleted files do
    assert _index(ckpt, out) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["files"], s["removed"], s["n_skipped"]) == (1, 2, 2)


def test_a_lost_link_to_one_indexed_file_is_refused_too(ckpts, media, tmp_path, capsys):
    # a folder of per-file links into storage that went: only links to folders were counted,
    # so every linked file was dropped as deleted
    from avssl.tools.index_media import lost_under

    disk, folder, out = tmp_path / "disk", tmp_path / "in", tmp_path / "idx"
    disk.mkdir()
    folder.mkdir()
    shutil.copy(media / "tone.wav", disk / "a.wav")
    shutil.copy(media / "still.png", folder / "still.png")
    (folder / "a.wav").symlink_to(disk / "a.wav")
    assert _index(ckpts["contrastive"], out, "--inputs", str(folder)) == 0
    assert last_json(capsys.readouterr().out)["files"] == 2
    meta = (out / "meta.json").read_text()
    disk.rename(tmp_path / "unmounted")
    indexed = [str(disk / "a.wav"), str(disk / "a.wav.bak"), str(folder / "still.png")]
    assert lost_under(folder / "a.wav", indexed) == 1  # the target itself, not a name sharing it
    assert _index(ckpts["contrastive"], out) == 2
    err = _one_line_error(capsys)
    assert err.startswith(f"error: {folder / 'a.wav'}: a link to {disk / 'a.wav'}, which is")
    assert (out / "meta.json").read_text() == meta


def test_the_same_weights_read_otherwise_are_refused(ckpts, media, tmp_path, capsys):
    """The front end keeps its window and filter bank out of the weights hash: a checkpoint of
    the same weights with another STFT hop embeds otherwise, so it neither updates nor queries
    the index; an index whose config does not record the key (an older one) is not refused."""
    ckpt = ckpts["contrastive"]
    other = _checkpoint(tmp_path, "contrastive", "model.audio.hop_length=160")
    out = tmp_path / "idx"
    assert _index(ckpt, out, "--inputs", str(media)) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for run in (
        lambda: _index(other, out, "--inputs", str(media)),
        lambda: _query(out, other, "--audio", str(media / "tone.wav")),
    ):
        assert run() == 2
        err = _one_line_error(capsys)
        assert f"built with checkpoint {ckpt}, whose weights {other} reads with other" in err
        assert "(model.audio.hop_length 320 -> 160)" in err and err.endswith("--rebuild")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    fps = _checkpoint(tmp_path, "contrastive", "data.fps=30")  # frames are picked by time
    assert _index(fps, out, "--inputs", str(media)) == 0
    assert _query(out, ckpt, "--audio", str(media / "tone.wav")) == 0
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["model"]["audio"]["hop_length"]
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert _query(out, other, "--audio", str(media / "tone.wav")) == 0


def test_a_jpeg_cut_short_is_skipped_and_refused_as_a_query(ckpts, tmp_path, capsys):
    """A JPEG cut to 60% of its bytes decoded with its lower part blank and was indexed as if
    whole: the walk now skips it with its reason, and a query with it is refused in one line."""
    from PIL import Image

    ckpt, folder, out = ckpts["contrastive"], tmp_path / "photos", tmp_path / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # a cut lands in the scan data
    whole, cut = folder / "whole.jpg", folder / "cut.jpg"
    Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), np.uint8))).save(whole)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    assert _index(ckpt, out, "--inputs", str(folder)) == 0
    s = last_json(capsys.readouterr().out)
    assert (s["files"], s["visual_windows"], s["n_skipped"]) == (1, 1, 1)
    [skip] = s["skipped"]
    assert skip["path"] == str(cut) and skip["reason"].startswith("truncated or corrupt")
    assert _query(out, ckpt, "--image", str(cut), "--target", "visual", "-k", "1") == 2
    assert _one_line_error(capsys).startswith(f"error: {cut}: truncated or corrupt")
