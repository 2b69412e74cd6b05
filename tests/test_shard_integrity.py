"""The shard cache stays true to the manifest and to what was written: edited rows, write order
and easy negatives on a class-ordered manifest, damaged shards, synced writes, kept skips."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from avssl.cli import main as avssl_main
from avssl.config import load_config
from avssl.data import shard_writer, shards_cli
from avssl.data.manifest import Row, read_manifest, write_manifest
from avssl.data.shards import read_index
from avssl.data.source import load_split, manifest_path
from avssl.data.stream_pairs import StreamPairs
from avssl.errors import AvsslError
from tests.conftest import TINY

SETS = [a for s in TINY for a in ("--set", s)]


def _build(out: Path, *extra: str) -> None:
    assert shards_cli.main(["--out", str(out), *SETS, "--no-progress", *extra]) == 0


@pytest.fixture(scope="module")
def world(tiny_cache, tmp_path_factory):
    """The tiny synthetic world (12 train clips) cached in shards of 5; and its manifest."""
    out = tmp_path_factory.mktemp("integrity") / "cache"
    _build(out, "--shard-size", "5")
    return out, manifest_path(load_config(None, TINY).data, False)


def _edited(manifest: Path, folder: Path) -> tuple[Path, str]:
    """A copy of ``manifest`` whose first train row now starts elsewhere (same id)."""
    rows = read_manifest(manifest)
    row = next(r for r in rows if r.split == "train")
    row.start += 0.25
    write_manifest(folder / "manifest.jsonl", rows)
    return folder / "manifest.jsonl", row.id


@pytest.mark.parametrize("digests", [True, False])  # False: a cache from before row digests
def test_stream_skips_rows_changed_since_caching(world, tmp_path, digests):
    cache, manifest = world
    if not digests:
        cache = tmp_path / "old"
        shutil.copytree(world[0], cache)
        index = json.loads((cache / "index.json").read_text())
        for shard in index["shards"]:
            del shard["digests"]
        (cache / "index.json").write_text(json.dumps(index))
    edited, row_id = _edited(manifest, tmp_path)
    data = load_config(None, [*TINY, f"data.root={edited}", f"data.cache={cache}"]).data
    stream = StreamPairs(data, edited)
    in_memory = load_split(data, "train", True, progress=False)
    built = json.loads((cache / "index.json").read_text())["manifest"]
    reason = f"{cache}: row {row_id!r} changed since it was cached (the cache was built from "
    reason += f"{built})"
    assert stream.skipped == in_memory.skipped == [(row_id, reason)]
    assert len(stream) == 11 and row_id not in stream.clip_of
    stream.set_epoch(0)
    items = list(stream)
    assert len(items) == sum(stream.rank_batches(1, 1)) == 11  # the count every rank relies on


def test_cache_rerun_refuses_rows_changed_since_caching(world, tmp_path, capsys):
    out = tmp_path / "cache"
    shutil.copytree(world[0], out)
    edited, row_id = _edited(world[1], tmp_path)
    before = (out / "index.json").read_text()
    capsys.readouterr()
    code = avssl_main(["cache", "--out", str(out), "--data", str(edited), "--no-progress", *SETS])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert f"{out}: 1 cached row(s) changed" in err and repr(row_id) in err and "--out" in err
    assert (out / "index.json").read_text() == before  # the finished cache is left as it was
    read_index(out)


def _class_ordered(
    folder: Path, n_classes: int = 10, per_class: int = 20, shown=False, share: int = 1
) -> Path:
    """A manifest sorted by class, as FSDD / AV-Digits are; its media are never decoded. Each
    run of ``share`` rows names one video file (rows of one file are no easy negatives)."""
    rows = [
        Row(id=f"c{c}_{j}", video=f"x{(c * per_class + j) // share}.mp4",
            end=1.2, labels=[str(c)],
            frame_labels=[str(c), str((c + 1) % n_classes)] if shown else None)
        for c in range(n_classes) for j in range(per_class)
    ]  # fmt: skip
    write_manifest(folder / "manifest.jsonl", rows)
    return folder / "manifest.jsonl"


def _fake_decode(monkeypatch, manifest: Path) -> None:
    """Each clip decodes to 1.2 s of audio filled with its manifest position."""
    position = {r.id: i for i, r in enumerate(read_manifest(manifest))}

    def decode(row, manifest, data):
        n = round(1.2 * data.sample_rate)
        return np.zeros((30, 8, 8, 3), np.uint8), np.full(n, position[row.id], np.float32)

    monkeypatch.setattr(shards_cli, "decode_row", decode)


def _class_cache(tmp_path, monkeypatch, *extra, shown=False, share=1) -> tuple[Path, Path]:
    manifest = _class_ordered(tmp_path, shown=shown, share=share)
    _fake_decode(monkeypatch, manifest)
    out = tmp_path / "cache"
    args = ["--out", str(out), "--data", str(manifest), "--shard-size", "50", "--no-progress"]
    assert shards_cli.main([*args, "--set", "data.load_size=8", "--set", "data.frame_size=8",
                            *extra]) == 0  # fmt: skip
    return out, manifest


def _streamed(out: Path, manifest: Path, *sets: str, buffer=None):
    """Two epochs of ``(clip, easy-negative clip)`` pairs in stream order, and the labels."""
    data = load_config(None, ["data.load_size=8", "data.frame_size=8", f"data.cache={out}", *sets])
    stream = StreamPairs(data.data, manifest, seed=0, shuffle_buffer=buffer)
    epochs = []
    for epoch in range(2):
        stream.set_epoch(epoch)
        epochs.append([(int(x["audio"][0]), int(x["audio_easy"][0])) for x in stream])
    return epochs, [r.labels[0] for r in read_manifest(manifest)]


def test_class_ordered_manifest_gives_near_uniform_negatives(tmp_path, monkeypatch):
    out, manifest = _class_cache(tmp_path, monkeypatch)
    # a buffer shorter than a class run, as with real datasets of thousands of clips a class
    epochs, labels = _streamed(out, manifest, buffer=16)
    same_easy = same_next = total = 0
    for epoch in epochs:
        assert sorted(c for c, _ in epoch) == list(range(200))
        same_easy += sum(labels[c] == labels[e] for c, e in epoch)
        # neighbours in the stream share a batch: in-batch negatives
        clips = [c for c, _ in epoch]
        same_next += sum(labels[a] == labels[b] for a, b in zip(clips, clips[1:], strict=False))
        total += len(epoch)
    expected = 19 / 199  # another clip of the same class, drawn uniformly
    assert same_easy / total < 2 * expected, same_easy / total
    assert same_next / total < 2 * expected, same_next / total


def test_write_order_is_seeded_and_shuffled(tmp_path, monkeypatch):
    orders = []
    for run, seed in enumerate((0, 0, 1)):
        (tmp_path / str(run)).mkdir()
        out, manifest = _class_cache(tmp_path / str(run), monkeypatch, "--seed", str(seed))
        index = read_index(out)
        orders.append([i for s in index["shards"] for i in s["ids"]])
        assert sorted(orders[-1]) == sorted(r.id for r in read_manifest(manifest))
        assert index["order_seed"] == seed
    assert orders[0] == orders[1] != orders[2]
    assert orders[0] != [r.id for r in read_manifest(manifest)]


def test_easy_negatives_come_from_the_whole_shuffle_buffer(tmp_path, monkeypatch):
    out, manifest = _class_cache(tmp_path, monkeypatch)
    ahead = far = total = 0
    for epoch in _streamed(out, manifest, buffer=32)[0]:
        at = {c: i for i, (c, _) in enumerate(epoch)}
        gaps = [at[e] - at[c] for c, e in epoch]
        ahead += sum(g > 0 for g in gaps)  # still in the buffer when the item was cut
        far += sum(abs(g) > 8 for g in gaps)
        total += len(epoch)
    assert ahead / total > 0.5 and far / total > 0.3, (ahead / total, far / total)


def test_unseen_negatives_still_avoid_shown_classes(tmp_path, monkeypatch):
    out, manifest = _class_cache(tmp_path, monkeypatch, shown=True)
    shown = [set(r.frame_labels) for r in read_manifest(manifest)]
    epochs, labels = _streamed(out, manifest, "data.unseen_negatives=true")
    for epoch in epochs:
        assert len(epoch) == 200 and not [c for c, e in epoch if labels[e] in shown[c]]


def _cut(shard: Path, zero_tail: bool) -> None:
    """Keep the first sample of ``shard``: cut the file at the second, or zero it from there."""
    import tarfile

    with tarfile.open(shard) as tar:
        at = tar.getmembers()[3].offset  # header of the second sample
    data = bytearray(shard.read_bytes())
    if zero_tail:  # same size: what an unsynced file can hold after a power loss
        data[at:] = bytes(len(data) - at)
    else:
        del data[at:]
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize("zero_tail", [False, True])
def test_damaged_shard_is_a_one_line_error(world, tmp_path, zero_tail):
    cache = tmp_path / "cache"
    shutil.copytree(world[0], cache)
    shard = cache / read_index(cache)["shards"][0]["name"]  # 5 train clips
    _cut(shard, zero_tail)
    data = load_config(None, [*TINY, f"data.cache={cache}"]).data
    for read in (
        lambda: list(StreamPairs(data, world[1], seed=0)),
        lambda: load_split(data, "train", True, progress=False),
    ):
        with pytest.raises(AvsslError) as err:
            read()
        assert str(err.value).startswith(f"{shard}: ") and "\n" not in str(err.value)
        assert ("truncated" in str(err.value)) and "rebuild" in str(err.value)


def test_shards_and_sidecars_are_synced_before_they_are_renamed(tmp_path, monkeypatch):
    events, fsync, replace = [], os.fsync, os.replace

    def logged_fsync(fd):
        events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def logged_replace(src, dst):
        events.append(("rename", str(src)))
        replace(src, dst)

    monkeypatch.setattr(shard_writer.os, "fsync", logged_fsync)
    monkeypatch.setattr(shard_writer.os, "replace", logged_replace)
    writer = shard_writer.ShardWriter(tmp_path, 0, 2, 1 << 30)
    for i in range(3):
        row = Row(id=f"r{i}", video="x.mp4")
        writer.add(row, np.zeros((2, 4, 4, 3), np.uint8), np.zeros(8, np.float32))
    writer.flush()
    shard_writer.write_json(tmp_path / "index.json", {"a": 1})
    renamed = [path for kind, path in events if kind == "rename"]
    assert len(renamed) == 5  # two shards with their sidecars, the index
    for path in renamed:
        assert ("sync", path) in events[: events.index(("rename", path))], path


def test_rerun_for_some_splits_keeps_the_other_splits_skips(media_factory, tmp_path):
    rows = []
    for i, split in enumerate(["train", "train", "val", "val"]):
        media_factory(f"ok{i}.mp4", duration=1.2, size=(32, 32))
        rows.append(Row(id=f"ok{i}", video=f"ok{i}.mp4", split=split))
    rows.append(Row(id="gone", video="missing.mp4", split="val"))
    write_manifest(tmp_path / "manifest.jsonl", rows)
    out = tmp_path / "cache"
    run = ["--data", str(tmp_path / "manifest.jsonl"), "--workers", "1"]
    _build(out, *run)
    first = read_index(out)["skipped"]
    assert [s["id"] for s in first] == ["gone"]
    _build(out, *run, "--splits", "train")
    assert read_index(out)["skipped"] == first
    data = load_config(None, [*TINY, f"data.root={tmp_path}", f"data.cache={out}"]).data
    val = load_split(data, "val", False, progress=False)
    assert [(i, r.endswith(": no such file")) for i, r in val.skipped] == [("gone", True)]


def test_resumed_counts_the_rows_of_this_runs_splits_only(media_factory, tmp_path, capsys):
    rows = []
    for i, split in enumerate(["train", "train", "val"]):
        media_factory(f"ok{i}.mp4", duration=1.2, size=(32, 32))
        rows.append(Row(id=f"ok{i}", video=f"ok{i}.mp4", split=split))
    write_manifest(tmp_path / "manifest.jsonl", rows)
    out = tmp_path / "cache"
    run = ["--data", str(tmp_path / "manifest.jsonl"), "--workers", "1"]
    _build(out, *run)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 3
    _build(out, *run, "--splits", "train")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["written"], summary["resumed"]) == (0, 2)  # not the val clip too


def test_a_cache_of_another_manifest_file_is_warned_once(world, tmp_path, tiny_train_args, capsys):
    # rows match by their JSON and media paths are relative to the manifest: a copy of it
    # elsewhere is served the first one's frames, which is right for a moved dataset only
    import train

    cache, manifest = world
    copy = tmp_path / "copy" / "manifest.jsonl"
    write_manifest(copy, read_manifest(manifest))
    sets = (f"data.root={copy}", f"data.cache={cache}", "train.steps=1")
    assert train.main(tiny_train_args(*sets)) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [
        f"warning: data.cache {cache} was built from {manifest.resolve()}, not {copy}: rows "
        "that match are served from the cache (rebuild it if this manifest's media differ)"
    ]
    assert (
        train.main(tiny_train_args(f"data.root={manifest}", f"data.cache={cache}", "train.steps=1"))
        == 0
    )
    assert "warning" not in capsys.readouterr().err


def test_streamed_easy_negatives_never_share_the_clips_media(tmp_path, monkeypatch):
    # two rows of one video: the other one's sound matches the picture (61 of 200 did)
    out, manifest = _class_cache(tmp_path, monkeypatch, share=2)
    for epoch in _streamed(out, manifest, buffer=16)[0]:
        assert len(epoch) == 200 and not [c for c, e in epoch if c // 2 == e // 2]


def test_a_missing_cache_does_not_fail_commands_that_do_not_read_it(world, tmp_path):
    # evaluate.py sync decodes media itself: the warning's look at the cache stopped it when the
    # run's cache had been moved or deleted
    _, manifest = world
    data = load_config(None, [*TINY, f"data.root={manifest}", f"data.cache={tmp_path / 'gone'}"])
    assert manifest_path(data.data, False) == manifest
