"""``avssl cache`` into a folder another build owns: another manifest, another write order,
other decode settings, a second process, an empty input and a SIGTERM, each one line that
leaves the cache as it was."""

import json
import shutil
import signal
from pathlib import Path

import pytest
from bad_media import sigterm_at_call
from test_shard_integrity import SETS, _build, world  # noqa: F401 (a fixture)

from avssl.cli import main as avssl_main
from avssl.data import shards_cli
from avssl.data.manifest import read_manifest, write_manifest
from avssl.folder_lock import hold_folder


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _cache(out: Path, *extra: str) -> int:
    return avssl_main(["cache", "--out", str(out), "--no-progress", *SETS, *extra])


def test_a_cache_of_another_manifest_is_refused_and_another_path_to_it_resumes(
    world,  # noqa: F811
    tmp_path,
    capsys,
):
    out = tmp_path / "cache"
    shutil.copytree(world[0], out)
    before = _snapshot(out)
    rows = read_manifest(world[1])
    other = [r for r in rows if r.split != "train"]  # lacks the cached train rows
    write_manifest(tmp_path / "other.jsonl", other)
    for row in other:  # keep its media reachable from the new folder
        row.video = str((world[1].parent / row.video).resolve())
    write_manifest(tmp_path / "other.jsonl", other)
    assert _cache(out, "--data", str(tmp_path / "other.jsonl")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {out}: holds ") and "cached from another manifest" in err
    assert _snapshot(out) == before
    (tmp_path / "link").symlink_to(world[1].parent)  # the same manifest by another path
    assert _cache(out, "--data", str(tmp_path / "link" / world[1].name)) == 0
    assert '"written": 0' in capsys.readouterr().out


def test_another_order_or_other_settings_name_what_differs(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cache"
    shutil.copytree(world[0], out)
    before = _snapshot(out)
    assert _cache(out, "--seed", "7") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "written in the order of seed 0; pass --seed 0 to resume it" in err
    assert _cache(out, "--set", "data.sample_rate=8000") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "other decode settings (data.sample_rate 16000, now 8000)" in err
    assert _snapshot(out) == before


def test_a_second_writer_is_refused(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cache"
    shutil.copytree(world[0], out)
    with hold_folder(out, "held"):  # as a running build holds it
        assert _cache(out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err == f"error: {out}: another avssl cache is writing into this folder; wait for it to end"
    )


def test_an_empty_split_says_so_and_writes_nothing(world, tmp_path, capsys):  # noqa: F811
    rows = [r for r in read_manifest(world[1]) if r.split == "train"]
    for row in rows:
        row.video = str((world[1].parent / row.video).resolve())
    write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "new"
    assert _cache(out, "--data", str(tmp_path / "m.jsonl"), "--splits", "val") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {tmp_path / 'm.jsonl'}: no row of split(s) val; nothing to cache"
    assert not out.exists()


def test_a_sigterm_leaves_no_partial_shard(world, tmp_path, capsys, monkeypatch):  # noqa: F811
    sigterm_at_call(monkeypatch, shards_cli, "decode_row", 3)
    out = tmp_path / "cache"
    assert _cache(out, "--shard-size", "5", "--workers", "1") == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # the shard being written went
    monkeypatch.undo()
    _build(out, "--shard-size", "5")  # and a rerun finishes it
    assert _snapshot(out).keys() == _snapshot(world[0]).keys()


def test_a_moved_cache_names_the_media_way(tmp_path):
    from avssl.data.shards import read_index
    from avssl.errors import AvsslError

    with pytest.raises(AvsslError, match="read the media instead with --data MANIFEST"):
        read_index(tmp_path)


def test_a_refused_rerun_leaves_even_damaged_shards_as_they_were(world, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cache"
    shutil.copytree(world[0], out)
    shard = sorted(out.glob("shard-*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])  # cut short after the build
    before = _snapshot(out)
    rows = [r for r in read_manifest(world[1]) if r.split != "train"]
    for row in rows:
        row.video = str((world[1].parent / row.video).resolve())
    write_manifest(tmp_path / "other.jsonl", rows)
    assert _cache(out, "--data", str(tmp_path / "other.jsonl")) == 2
    err = capsys.readouterr().err
    assert "damaged" not in err and "cached from another manifest" in err
    assert _snapshot(out) == before


def test_a_relative_data_path_is_recorded_absolute(world, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(world[1].parent)
    out = tmp_path / "rel"
    assert _cache(out, "--data", world[1].name) == 0
    recorded = json.loads((out / "index.json").read_text())["manifest"]
    assert recorded == str(world[1].parent.absolute() / world[1].name)


def test_a_rerun_keeps_the_caches_shard_size_and_says_when_given_another(
    world,  # noqa: F811
    tmp_path,
    capsys,
):
    """Complete shards are append-only: a rerun goes on with the limits the cache recorded, and a
    --shard-size other than those sizes only the shards it writes, and says so (it changed
    nothing, without a word, on a finished cache)."""
    out = tmp_path / "cache"
    shutil.copytree(world[0], out)
    before = _snapshot(out)
    n_shards = len(json.loads((out / "index.json").read_text())["shards"])
    assert _cache(out, "--shard-size", "5") == 0  # the size it was built to: no note
    assert "note:" not in capsys.readouterr().err
    assert _cache(out, "--shard-size", "2") == 0
    err = capsys.readouterr().err
    assert f"note: {out}: its {n_shards} complete shard(s) keep their size; --shard-size " in err
    assert "applies to no clip: every row is cached (a new --out builds every shard so)" in err
    assert _snapshot(out) == before  # nothing written, the recorded limits kept

    part = tmp_path / "part"
    assert _cache(part, "--splits", "val", "--shard-size", "3") == 0
    assert "note:" not in capsys.readouterr().err  # a new folder: nothing kept
    assert _cache(part, "--splits", "val,test") == 0  # no flag: the cache's size, 3
    assert "note:" not in capsys.readouterr().err
    assert max(s["n"] for s in json.loads((part / "index.json").read_text())["shards"]) == 3
    old = {s["name"] for s in json.loads((part / "index.json").read_text())["shards"]}
    assert _cache(part, "--shard-size", "2", "--shard-mb", "64") == 0
    err = capsys.readouterr().err
    assert "; --shard-size and --shard-mb apply to the " in err and " clip(s) decoded now" in err
    index = json.loads((part / "index.json").read_text())
    assert index["shard_limits"] == {"shard_size": 2, "shard_mb": 64}
    assert {s["n"] for s in index["shards"] if s["name"] not in old} == {2}  # the train split's

    huge = tmp_path / "huge"  # a count no shard reaches: --shard-mb alone closes them
    assert _cache(huge, "--splits", "val", "--shard-size", "2000000") == 0
    assert _cache(huge, "--splits", "val,test", "--shard-size", "2000000") == 0
    assert _cache(huge, "--splits", "val,test,train") == 0
    assert "note:" not in capsys.readouterr().err
    limits = json.loads((huge / "index.json").read_text())["shard_limits"]
    assert limits == {"shard_size": 2000000, "shard_mb": 512}

    index["shard_limits"] = {"shard_size": "many", "shard_mb": -1}  # edited by hand: ignored
    (part / "index.json").write_text(json.dumps(index))
    assert _cache(part, "--shard-size", "2") == 0
    assert f"note: {part}: its " in capsys.readouterr().err  # 2 is not what it recorded now
