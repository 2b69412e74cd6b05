"""The decoded shard cache: ``avssl cache``, reading it back exactly, resuming, streaming."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import train
from avssl.cli import main as avssl_main
from avssl.config import load_config
from avssl.data import media, shards_cli
from avssl.data.manifest import Row, write_manifest
from avssl.data.shard_stream import ShardStream, shuffled
from avssl.data.shards import read_index
from avssl.data.source import load_split
from avssl.errors import AvsslError
from tests.conftest import TINY

SETS = [a for s in TINY for a in ("--set", s)]


def _build(out: Path, *extra: str, capsys) -> dict:
    capsys.readouterr()
    assert shards_cli.main(["--out", str(out), *SETS, "--no-progress", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def world_cache(tiny_cache, tmp_path_factory):
    """The tiny synthetic world (12 train, 4 val, 4 test clips) cached in shards of 3."""
    out = tmp_path_factory.mktemp("shards") / "cache"
    args = ["--out", str(out), *SETS, "--shard-size", "3", "--workers", "2", "--no-progress"]
    assert shards_cli.main(args) == 0
    return out


def _no_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("media decoded although a cache is configured")

    monkeypatch.setattr(media, "read_clip", fail)


@pytest.mark.parametrize("split,train_", [("train", True), ("val", False)])
def test_cached_items_equal_decoded_items(world_cache, split, train_, monkeypatch):
    raw_cfg = load_config(None, TINY).data
    raw = load_split(raw_cfg, split, train_, windows_per_clip=2, seed=5, progress=False)
    cached_cfg = load_config(None, [*TINY, f"data.cache={world_cache}"]).data
    _no_decoding(monkeypatch)
    cached = load_split(cached_cfg, split, train_, windows_per_clip=2, seed=5, progress=False)
    assert [r.id for r in cached.store.rows] == [r.id for r in raw.store.rows]
    assert cached.store.skipped == raw.store.skipped == []
    assert len(cached) == len(raw) == 2 * {"train": 12, "val": 4}[split]
    for epoch in (0, 1):
        raw.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(raw)):
            a, b = raw[i], cached[i]
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), (i, key)


def test_index_lists_every_clip_with_settings(world_cache):
    index = read_index(world_cache)
    assert index["settings"] == {
        "format": 1, "fps": 25.0, "sample_rate": 16000, "train_size": 36, "eval_size": 32
    }  # fmt: skip
    assert index["n_samples"] == 20 and len(index["shards"]) == 7
    assert [s["n"] for s in index["shards"]] == [3] * 6 + [2]
    ids = [i for s in index["shards"] for i in s["ids"]]
    assert len(set(ids)) == 20
    splits = [sp for s in index["shards"] for sp in s["splits"]]
    assert splits.count("train") == 12 and splits.count("val") == splits.count("test") == 4
    for s in index["shards"]:
        assert (world_cache / s["name"]).stat().st_size == s["bytes"]


def test_train_split_read_for_evaluation_comes_from_the_cache(world_cache, monkeypatch):
    # CCA fits, cohorts and --recalibrate train read the train split as evaluation does: the
    # cache holds it at load_size (36), and each item is resized to frame_size (32)
    cfg = load_config(None, [*TINY, f"data.cache={world_cache}"]).data
    _no_decoding(monkeypatch)
    ds = load_split(cfg, "train", False, progress=False)
    assert len(ds.store) == 12 and ds.store.skipped == []
    item = ds[0]
    assert item["frames"].shape == (3, 32, 32)


def test_report_gallery_reads_the_cached_train_split(world_cache, monkeypatch):
    # the report fits l3's CCA on training clips: the cache holds them at load_size
    from avssl.data.manifest import read_manifest
    from avssl.data.source import manifest_path
    from avssl.tools.report_gallery import centre_clips

    cfg = load_config(None, [*TINY, f"data.cache={world_cache}"]).data
    manifest = manifest_path(cfg, progress=False)
    rows = [r for r in read_manifest(manifest) if r.split == "train"]
    _no_decoding(monkeypatch)
    clips = centre_clips(rows, manifest, cfg, 5, "train")
    assert len(clips.rows) == 5 and clips.skipped == []
    assert clips.frames.shape[1:] == (3, 32, 32)


@pytest.mark.parametrize(
    "override,split,train_,needs",
    [
        ("data.fps=10", "val", False, "fps=10"),
        ("data.sample_rate=8000", "val", False, "sample_rate=8000"),
        ("data.frame_fit=crop", "train", True, "frame_fit=crop"),
    ],
)
def test_reader_refuses_other_settings(world_cache, override, split, train_, needs):
    sets = [*TINY, f"data.cache={world_cache}"] + ([override] if override else [])
    with pytest.raises(AvsslError, match="shard cache built with fps=25") as err:
        load_split(load_config(None, sets).data, split, train_, progress=False)
    assert needs in str(err.value) and "\n" not in str(err.value)


def test_resume_after_interruption(world_cache, tmp_path, capsys):
    out = tmp_path / "cache"
    shutil.copytree(world_cache, out)
    # an interrupted run: the last shard never committed, a half-written one left behind
    for name in ("shard-000006.tar", "shard-000006.json", "shard-000005.tar"):
        (out / name).unlink()
    (out / "shard-000009.tar.tmp").write_bytes(b"partial")
    (out / ".shard-000009.json.tmp4242").write_bytes(b"{")  # the sidecar of a killed run
    index = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps({**index, "complete": False}))
    with pytest.raises(AvsslError, match="did not finish"):
        read_index(out)

    summary = _build(out, "--shard-size", "3", capsys=capsys)
    assert summary["written"] == 5 and summary["resumed"] == 15 and summary["n_skipped"] == 0
    assert summary["shards"] == 7 and not list(out.glob("*.tmp*"))
    again = read_index(out)
    assert again["n_samples"] == 20
    assert sorted(i for s in again["shards"] for i in s["ids"]) == sorted(
        i for s in index["shards"] for i in s["ids"]
    )
    assert summary["bytes"] == sum(s["bytes"] for s in index["shards"])  # same clips, same bytes
    # a finished cache: nothing left to do
    assert _build(out, "--shard-size", "3", capsys=capsys)["written"] == 0


def test_other_settings_cannot_resume(world_cache, tmp_path, capsys):
    out = tmp_path / "cache"
    shutil.copytree(world_cache, out)
    with pytest.raises(AvsslError, match="other decode settings"):
        _build(out, "--set", "data.fps=10", capsys=capsys)


def test_out_that_is_not_a_cache_is_refused(world_cache, tmp_path):
    run = ["--no-progress", *SETS]
    mine = tmp_path / "mine.txt"
    mine.write_text("MINE")
    with pytest.raises(AvsslError, match=r"mine.txt: exists and is not a directory$"):
        shards_cli.main(["--out", str(mine), *run])
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("MINE")  # a user's folder: no shards are added to it
    with pytest.raises(AvsslError, match=r"folder: a folder that is not a shard cache"):
        shards_cli.main(["--out", str(folder), *run])
    (folder / "index.json").write_text('{"a": 1}')
    with pytest.raises(AvsslError, match=r"index.json: not a shard cache index"):
        shards_cli.main(["--out", str(folder), *run])
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "notes.txt"]
    assert mine.read_text() == "MINE"


def test_unknown_split_refused_before_anything_is_written(world_cache, tmp_path):
    out = tmp_path / "cache"
    with pytest.raises(AvsslError, match=r"--splits tset: tset is not a split \(valid: train"):
        shards_cli.main(["--out", str(out), *SETS, "--no-progress", "--splits", "tset"])
    assert not out.exists()


def _bad_manifest(media_factory, tmp_path: Path) -> Path:
    rows = []
    for i in range(3):
        media_factory(f"ok{i}.mp4", duration=1.2, size=(32, 32))
        rows.append(Row(id=f"ok{i}", video=f"ok{i}.mp4", split="val"))
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00not a video" * 50)
    rows.insert(1, Row(id="gone", video="missing.mp4", split="val"))
    rows.append(Row(id="junk", video="corrupt.mp4", split="val"))
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, rows)
    return path


def test_bad_clips_skipped_like_decoding(media_factory, tmp_path, capsys, monkeypatch):
    manifest = _bad_manifest(media_factory, tmp_path)
    out = tmp_path / "cache"
    summary = _build(out, "--data", str(manifest), "--workers", "1", capsys=capsys)
    assert summary["written"] == 3 and summary["n_skipped"] == 2
    assert [s["id"] for s in summary["skipped"]] == ["gone", "junk"]
    assert summary["skipped"][0]["reason"] == "no such file"
    raw_cfg = load_config(None, [*TINY, f"data.root={manifest}", "data.window=1.0"]).data
    raw = load_split(raw_cfg, "val", False, progress=False)
    raw_cfg.cache = str(out)
    _no_decoding(monkeypatch)
    cached = load_split(raw_cfg, "val", False, progress=False)
    assert cached.store.skipped == raw.store.skipped and len(cached.store.skipped) == 2
    assert torch.equal(cached[0]["frames"], raw[0]["frames"])


def test_strict_stops_with_one_line_error(media_factory, tmp_path, capsys):
    manifest = _bad_manifest(media_factory, tmp_path)
    out = tmp_path / "cache"
    code = avssl_main(
        ["cache", "--data", str(manifest), "--out", str(out), "--strict", "--no-progress", *SETS]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    # the first bad row in the (seeded, shuffled) write order, named with its file
    assert ("missing.mp4" in err and "'gone'" in err) or ("corrupt.mp4" in err and "'junk'" in err)
    assert not list(out.glob("*.tmp*"))
    with pytest.raises(AvsslError, match="did not finish"):
        read_index(out)


@pytest.mark.parametrize("split,n", [(None, 20), ("train", 12)])
def test_stream_each_sample_once_per_epoch(world_cache, split, n):
    orders = {}
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ds = ShardStream(world_cache, split, seed=3, rank=rank, world=2, shuffle_buffer=4)
            ds.set_epoch(epoch)
            loader = DataLoader(ds, batch_size=None, num_workers=2)
            keys = [s["key"] for s in loader]
            assert keys, (rank, epoch)
            orders[rank, epoch] = keys
            seen += keys
        assert len(seen) == n and len(set(seen)) == n
    assert orders[0, 0] + orders[1, 0] != orders[0, 1] + orders[1, 1]  # reshuffled per epoch
    ds = ShardStream(world_cache, split, seed=3, rank=0, world=2, shuffle_buffer=4)
    assert [s["key"] for s in DataLoader(ds, batch_size=None, num_workers=2)] == orders[0, 0]


def test_stream_samples_match_the_preloaded_clips(world_cache):
    data = load_config(None, TINY).data
    stream = ShardStream(world_cache, "val", data=data, train=False, shuffle_buffer=0)
    raw = load_split(data, "val", False, progress=False).store
    by_id = {r.id: i for i, r in enumerate(raw.rows)}
    samples = list(stream)
    assert len(samples) == stream.n_samples == 4
    for s in samples:
        i = by_id[s["row"]["id"]]
        assert np.array_equal(s["frames"], raw._frames[i].numpy())
        assert np.array_equal(s["audio"], raw._audio[i].numpy())
    with pytest.raises(AvsslError, match="fps=10"):
        ShardStream(world_cache, "val", data=load_config(None, ["data.fps=10"]).data, train=False)


@pytest.mark.parametrize("size", [0, 1, 3, 50])
def test_shuffle_buffer_is_a_permutation(size):
    rng = np.random.default_rng(size)
    out = list(shuffled(iter(range(40)), size, rng))
    assert sorted(out) == list(range(40))
    if size <= 1:
        assert out == list(range(40))
    else:
        assert out != list(range(40))
    if size == 3:  # a small buffer only moves items a little earlier
        assert all(out.index(i) >= i - 3 for i in range(40))


def test_train_from_cache_without_decoding(world_cache, tiny_train_args, capsys, monkeypatch):
    _no_decoding(monkeypatch)
    assert train.main(tiny_train_args(f"data.cache={world_cache}", "train.steps=2")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_skipped"] == 0 and summary["step"] == 2


def test_evaluating_other_data_ignores_the_training_cache():
    from avssl.config import Config
    from avssl.eval.cli import use_data

    cfg = Config()
    cfg.data.cache = "/somewhere/shards"
    use_data(cfg, None)
    assert cfg.data.cache == "/somewhere/shards" and cfg.data.root is None
    use_data(cfg, "other/manifest.jsonl")
    assert cfg.data.root == "other/manifest.jsonl" and cfg.data.cache is None


def test_localize_at_another_frame_size_reads_the_media(world_cache, tiny_train_args, capsys):
    # the cache holds frames at the training size: --frame-size decodes the media instead of
    # failing with advice to rebuild the cache
    import evaluate

    assert train.main(tiny_train_args(f"data.cache={world_cache}", "train.steps=2")) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]
    argv = ["localize", "--checkpoint", run, "--frame-size", "48", "--no-progress"]
    assert evaluate.main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frame_size"] == 48


def _copy_cache(world_cache, tmp_path) -> Path:
    out = tmp_path / "c"
    shutil.copytree(world_cache, out)
    return out


@pytest.mark.parametrize(
    "edit,reason",
    [
        (lambda ix: [1], "not a shard cache index (no 'settings' object)"),
        (lambda ix: {**ix, "settings": []}, "not a shard cache index (no 'settings' object)"),
        (lambda ix: {**ix, "shards": None}, "'shards' is not a list"),
        (lambda ix: {**ix, "shards": [{**ix["shards"][0], "keys": None}]}, "its 'keys' is not a"),
        (lambda ix: {**ix, "shards": [{**ix["shards"][0], "name": "../x/shard-000000.tar"}]},
         "is not shard-NNNNNN.tar"),
        (lambda ix: {**ix, "shards": [ix["shards"][0], ix["shards"][0]]}, "is listed twice"),
    ],
)  # fmt: skip
def test_a_damaged_index_is_one_line(world_cache, tmp_path, edit, reason):
    # a hand-edited index.json gave AttributeError / KeyError / TypeError tracebacks
    out = _copy_cache(world_cache, tmp_path)
    index = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps(edit(index)))
    cfg = load_config(None, [*TINY, f"data.cache={out}"]).data
    with pytest.raises(AvsslError, match=re.escape(reason)):
        load_split(cfg, "train", True, progress=False)


def test_a_shard_copied_under_another_name_is_refused(world_cache, tmp_path, capsys):
    # its clips would be read twice in every streamed epoch
    out = _copy_cache(world_cache, tmp_path)
    for ext in (".tar", ".json"):
        shutil.copy(out / f"shard-000001{ext}", out / f"shard-000099{ext}")
    with pytest.raises(AvsslError, match="shard-000099.json: damaged shard sidecar"):
        shards_cli.main(["--out", str(out), *SETS, "--no-progress"])
    sidecar = json.loads((out / "shard-000099.json").read_text())
    (out / "shard-000099.json").write_text(json.dumps({**sidecar, "name": "shard-000099.tar"}))
    with pytest.raises(AvsslError, match="is in both shard-000001.tar and shard-000099.tar"):
        shards_cli.main(["--out", str(out), *SETS, "--no-progress"])


def test_frames_of_another_size_than_the_index_records_are_refused(world_cache, tmp_path):
    out = _copy_cache(world_cache, tmp_path)
    index = json.loads((out / "index.json").read_text())
    index["settings"]["train_size"] = 40  # the shards hold 36-px frames
    (out / "index.json").write_text(json.dumps(index))
    cfg = load_config(None, [*TINY, f"data.cache={out}", "data.load_size=40"]).data
    with pytest.raises(AvsslError, match="frames of 36 px where the index records 40"):
        load_split(cfg, "train", True, progress=False)


@pytest.mark.parametrize("flags", [["--out", ""], ["--out", " "], ["--data", ""], ["--splits", ""]])
def test_empty_cache_flags_are_refused(tmp_path, flags, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" read as "." built into the current folder
    argv = ["--out", str(tmp_path / "c"), *SETS, "--no-progress", *flags]
    with pytest.raises(AvsslError, match=f"^{flags[0]}: an empty value"):
        shards_cli.main(argv)
    assert not any(tmp_path.iterdir())
