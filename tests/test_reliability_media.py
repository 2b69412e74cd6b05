"""Bad media at every entry point (issue 8).

Commands about one file (``inspect``, ``evaluate sync --video``, ``query --audio/--image/--video``,
``overlay``) must answer each case with a correct result or one ``error: FILE: reason`` line and
exit status 2. Commands over a dataset (``train``, ``evaluate avc/retrieval/localize/sync/
classify``, ``index``, ``prepare``) must skip, count and list each bad item with its reason in
their JSON summary and go on; ``--strict`` (where it exists) turns the first one into an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bad_media import CASES, OK, Case, last_json, one_line_error, run
from conftest import TINY, MediaFactory

import evaluate
import train
from avssl.cli import main as cli
from avssl.data.manifest import Row, write_manifest
from avssl.errors import MAX_LISTED_SKIPS, skip_fields
from avssl.eval.audio_sets import MEDIA_EXTS


@pytest.fixture(scope="module")
def ckpt(tiny_cache, tmp_path_factory) -> Path:
    """One tiny trained contrastive checkpoint (spatial map, shared space) for the module."""
    runs = tmp_path_factory.mktemp("rel-runs")
    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={runs}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    return next(runs.glob("*/last.pt"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, ckpt) -> dict:
    """Every case written once, and an index of one good video to query."""
    root = tmp_path_factory.mktemp("rel-media")
    mf = MediaFactory(root)
    paths = {c.name: c.make(mf) for c in CASES}
    good = MediaFactory(tmp_path_factory.mktemp("rel-good"))("good.mp4", duration=2.0)
    index = root / "index"
    argv = ["index", "--checkpoint", str(ckpt), "--inputs", str(good), "--out", str(index)]
    assert cli([*argv, "--quiet"]) == 0
    return {"root": root, "paths": paths, "index": index}


def _commands(ckpt: Path, index: Path, path: str, out: Path) -> dict[str, tuple]:
    query = ["query", "--index", str(index), "--checkpoint", str(ckpt), "--json", "-k", "1"]
    return {
        "inspect": (cli, ["inspect", path]),
        "sync": (evaluate.main, ["sync", "--checkpoint", str(ckpt), f"--video={path}",
                                 "--max-offset", "0.2", "--times", "2", "--no-progress"]),
        "query_audio": (cli, [*query, f"--audio={path}"]),
        "query_image": (cli, [*query, f"--image={path}"]),
        "query_video": (cli, [*query, f"--video={path}"]),
        "overlay": (cli, ["overlay", "--checkpoint", str(ckpt), "-o", str(out), "--fps", "5",
                          "--max-seconds", "1", "--max-side", "64", "--force", "--", path]),
    }  # fmt: skip


def _check_result(command: str, out: str, overlay: Path) -> None:
    """A successful run printed a sensible JSON result."""
    res = last_json(out)
    if command == "inspect":
        assert res["decodable"] is True and (res["has_video"] or res["has_audio"])
    elif command == "sync":
        assert abs(res["offset_s"]) <= 0.2 + 1e-9 and np.isfinite(res["confidence"])
        assert np.isfinite(res["curve"]).all()
    elif command.startswith("query"):
        assert len(res["results"]) == 1 and np.isfinite(res["results"][0]["score"])
    else:
        assert res["frames"] >= 1 and overlay.is_file() and overlay.stat().st_size > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_file_commands(case: Case, ckpt, world, tmp_path, capsys):
    path = world["paths"][case.name]
    overlay = tmp_path / "overlay.mp4"
    for command, (fn, argv) in _commands(ckpt, world["index"], str(path), overlay).items():
        overlay.unlink(missing_ok=True)
        code, out, err = run(capsys, fn, argv)
        reason = case.errors.get(command, OK)
        if reason is OK:
            assert code == 0, (command, err)
            _check_result(command, out, overlay)
        else:
            one_line_error(code, out, err, path, reason)
            assert not overlay.exists(), command


def test_leading_dash_names(ckpt, world, tmp_path, capsys, monkeypatch):
    """A relative name starting with a dash, given after ``--`` or as ``--flag=NAME``."""
    MediaFactory(tmp_path)("-dash é.mp4")
    monkeypatch.chdir(tmp_path)
    for command, (fn, argv) in _commands(
        ckpt, world["index"], "-dash é.mp4", tmp_path / "o.mp4"
    ).items():
        if command == "inspect":
            argv = ["inspect", "--", "-dash é.mp4"]
        code, out, err = run(capsys, fn, argv)
        assert code == 0, (command, err)
        _check_result(command, out, tmp_path / "o.mp4")
        # and as the next word after the flag, as a user types it
        spaced = [w for a in argv for w in (a.split("=", 1) if a.endswith("=-dash é.mp4") else [a])]
        if spaced != argv:
            code, out, err = run(capsys, fn, spaced)
            assert code == 0, (command, spaced, err)
    code, out, err = run(capsys, cli, ["inspect", "--", "-missing.mp4"])
    one_line_error(code, out, err, Path("-missing.mp4"), "no such file")
    # without "--": a dash name that is not an option is still the file
    code, out, err = run(capsys, cli, ["inspect", "-dash é.mp4", "--fps", "5"])
    assert code == 0, err
    _check_result("inspect", out, tmp_path / "o.mp4")
    code, out, err = run(capsys, cli, ["inspect", "-missing.mp4"])
    one_line_error(code, out, err, Path("-missing.mp4"), "no such file")
    argv = ["overlay", "-dash é.mp4", "--checkpoint", str(ckpt), "-o", "-out.mp4", "--fps", "5",
            "--max-seconds", "1", "--max-side", "64"]  # fmt: skip
    code, out, err = run(capsys, cli, argv)
    assert code == 0, err
    _check_result("overlay", out, tmp_path / "-out.mp4")


@pytest.mark.parametrize(
    "args,reason",
    [
        (["--sample-rate", str(10**7)], "invalid sample rate"),
        (["--duration", "601"], "exceeds the 600 s limit"),
        (["--size", "5000"], "output size 5000x5000 outside the limit"),
        (["--fps", "5000"], "invalid fps"),
        (["--start", "-1"], "invalid window start"),
    ],
)
def test_decoding_limits_through_inspect(media_factory, capsys, args, reason):
    path = media_factory("clip.mp4", duration=1.0)
    code, out, err = run(capsys, cli, ["inspect", str(path), *args])
    one_line_error(code, out, err, path, reason)


@pytest.mark.shared_data
def test_shared_videos_through_one_file_commands(shared_data, ckpt, world, tmp_path, capsys):
    """The real oddities (6-channel AAC, VP8/Vorbis WebM, odd sizes) give correct results."""
    videos = sorted((shared_data / "videos").iterdir())
    for path in videos:
        overlay = tmp_path / f"{path.stem}.mp4"
        for command, (fn, argv) in _commands(ckpt, world["index"], str(path), overlay).items():
            code, out, err = run(capsys, fn, argv)
            assert code == 0, (path.name, command, err)
            _check_result(command, out, overlay)


# ---- commands over a dataset --------------------------------------------------------------------

BOX = {"sources": [[0.25, 0.25, 0.75, 0.75]]}


@pytest.fixture(scope="module")
def mixed(world) -> dict:
    """A manifest of the good clips spread over the splits plus every bad case in each split."""
    paths = world["paths"]
    good = [c for c in CASES if c.train_ok]
    bad = [c for c in CASES if not c.train_ok]
    splits = ["train"] * 5 + ["val"] * 3 + ["test"] * (len(good) - 8)
    rows = []
    for c, split in zip(good, splits, strict=True):
        box = BOX if split == "test" else None
        rows.append(Row(c.name, video=paths[c.name].name, split=split, labels=["a"], boxes=box))
    for split in ("train", "val", "test"):
        for c in bad:
            key = "image" if paths[c.name].suffix == ".png" else "video"
            box = BOX if split == "test" else None
            rows.append(Row(f"{split}/{c.name}", **{key: paths[c.name].name}, split=split,
                            labels=["a"], boxes=box))  # fmt: skip
    manifest = world["root"] / "mixed.jsonl"
    write_manifest(manifest, rows)
    return {"manifest": manifest, "bad": [c.name for c in bad], "n_test": splits.count("test")}


def _ids(items: list[dict], prefix: str = "") -> set[str]:
    return {item["id"].removeprefix(prefix) for item in items}


def test_train_skips_lists_and_strict(mixed, tmp_path, capsys):
    sets = [*TINY, "train.steps=2", "train.eval_every=2", "train.batch_size=2",
            f"train.runs_dir={tmp_path}", f"data.root={mixed['manifest']}"]  # fmt: skip
    argv = [a for s in sets for a in ("--set", s)] + ["--no-progress"]
    code, out, err = run(capsys, train.main, argv)
    assert code == 0, err
    summary = last_json(out)
    assert summary["step"] == 2 and summary["n_skipped"] == 2 * len(mixed["bad"])
    for split in ("train", "val"):
        items = [s for s in summary["skipped"] if s["split"] == split]
        assert _ids(items, f"{split}/") == set(mixed["bad"])
    reasons = {s["id"]: s["reason"] for s in summary["skipped"]}
    assert "no such file" in reasons["train/missing"]
    assert "no audio stream" in reasons["train/no audio stream"]
    assert "shorter than the 1-s window" in reasons["val/shorter than a window"]
    code, out, err = run(capsys, train.main, [*argv, "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--strict" in err, err
    assert err.startswith("error: ") and "missing.mp4: no such file" in err


@pytest.mark.parametrize("sub", ["avc", "retrieval", "localize", "sync"])
def test_evaluate_skips_lists_and_strict(sub, ckpt, mixed, capsys):
    argv = [sub, "--checkpoint", str(ckpt), "--data", str(mixed["manifest"]), "--no-progress"]
    if sub == "sync":
        argv += ["--max-offset", "0.2", "--times", "2"]
    code, out, err = run(capsys, evaluate.main, argv)
    assert code == 0, err
    res = last_json(out)
    items, count = res["skipped"], res["n_skipped"]
    assert count == len(mixed["bad"]) and _ids(items, "test/") == set(mixed["bad"])
    assert all(item["reason"] for item in items)
    assert res["n"] == (mixed["n_test"] * 4 if sub == "avc" else mixed["n_test"])
    if sub == "avc":  # n counts positives: the clips times their windows
        assert (res["n_clips"], res["windows"]) == (mixed["n_test"], 4)
    code, out, err = run(capsys, evaluate.main, [*argv, "--strict"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "missing.mp4: no such file" in err


UNDECODABLE = {
    "empty",
    "not media",
    "truncated mp4",
    "over the pixel limit",
    "header-only wav",
    "NaN samples",
    "samples of 1e19",
}


def test_index_skips_lists_and_strict(ckpt, world, tmp_path, capsys):
    argv = ["index", "--checkpoint", str(ckpt), "--inputs", str(world["root"]), "--quiet"]
    code, out, err = run(capsys, cli, [*argv, "--out", str(tmp_path / "a")])
    assert code == 0, err
    summary = last_json(out)
    listed = {Path(s["path"]).name for s in summary["skipped"]}
    want = {world["paths"][name].name for name in UNDECODABLE}
    assert listed == want and summary["n_skipped"] == len(want)
    code, out, err = run(capsys, cli, [*argv, "--out", str(tmp_path / "b"), "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_classify_skips_lists_and_strict(world, tmp_path, capsys):
    """A folder dataset whose classes hold good and bad files (log-mel features: no model)."""
    root = tmp_path / "sounds"
    for k, path in enumerate(world["paths"].values()):
        folder = root / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists():
            (folder / path.name).symlink_to(path)
    argv = ["classify", "--dataset", "folder", "--root", str(root), "--features", "logmel",
            "--folds", "2", "--no-progress"]  # fmt: skip
    code, out, err = run(capsys, evaluate.main, argv)
    assert code == 0, err
    res = last_json(out)
    listed = {Path(s["path"]).name for s in res["skipped"]}
    # listed by extension (images and raw .h264 are not sound files); then skipped when undecodable
    # or without an audio stream
    bad = {
        "empty",
        "not media",
        "truncated mp4",
        "no audio stream",
        "header-only wav",
        "NaN samples",
        "samples of 1e19",
    }
    assert listed == {world["paths"][n].name for n in bad}
    n_listed = sum(p.suffix in MEDIA_EXTS for p in world["paths"].values() if p.exists())
    assert res["n_skipped"] == len(bad) and res["n_clips"] == n_listed - len(bad)
    code, out, err = run(capsys, evaluate.main, [*argv, "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_prepare_skips_lists_and_strict(world, tmp_path, capsys):
    """``avssl prepare vggss --probe`` test-decodes every row and reports the bad ones."""
    media = tmp_path / "media"
    media.mkdir()
    for path in world["paths"].values():
        if path.exists():
            (media / path.name).symlink_to(path)
    entries = [{"file": p.stem, "class": "a", "bbox": [[0.1, 0.1, 0.5, 0.5]]}
               for p in world["paths"].values()]  # fmt: skip
    ann = tmp_path / "vggss.json"
    ann.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    argv = ["prepare", "vggss", "--annotations", str(ann), "--media", str(media), "--probe"]
    code, out, err = run(capsys, cli, [*argv, "--out", str(tmp_path / "out")])
    assert code == 0, err
    report = last_json(out)
    full = json.loads((tmp_path / "out" / "prepare_report.json").read_text(encoding="utf-8"))
    # items with no video (and no image + sound pair) are "missing"; bad files "unreadable"
    missing = {item for item, _ in full["missing_items"]}
    assert missing == {
        "missing", "tone", "huge", "still", "unknown duration", "header", "nan", "loud"
    }  # fmt: skip
    unreadable = {item: reason for item, reason in full["unreadable_items"]}
    assert unreadable.keys() == {"empty", "notes", "truncated", "mute"}
    # each reason names the file: a row may have a picture and a separate sound
    assert unreadable["mute"].startswith(f"{media}/mute.")
    assert unreadable["mute"].endswith(": no audio stream")
    assert unreadable["empty"].startswith(f"{media}/empty.")
    assert unreadable["empty"].endswith(": empty file")
    assert (report["missing"], report["unreadable"]) == (len(full["missing_items"]), 4)
    assert report["written"] + report["missing"] + report["unreadable"] == len(entries)
    code, out, err = run(capsys, cli, [*argv, "--out", str(tmp_path / "s"), "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--strict" in err, err


def test_cache_skips_lists_and_strict(mixed, tmp_path, capsys, monkeypatch):
    sets = [*TINY, f"data.root={mixed['manifest']}"]
    argv = ["cache", "--no-progress"] + [a for s in sets for a in ("--set", s)]
    code, out, err = run(capsys, cli, [*argv, "--out", str(tmp_path / "shards")])
    assert code == 0, err
    summary = last_json(out)
    n_rows = len(mixed["manifest"].read_text().splitlines())
    assert summary["written"] + summary["n_skipped"] == n_rows
    skipped = {s["id"] for s in summary["skipped"]}
    for split in ("train", "val", "test"):  # what cannot be decoded is skipped in every split
        mine = {i.removeprefix(f"{split}/") for i in skipped if i.startswith(f"{split}/")}
        assert mine and mine <= set(mixed["bad"]) and "missing" in mine
    assert all(s["reason"] for s in summary["skipped"])
    # training from the cache skips exactly what training from the media skips
    train_sets = [*sets, "train.steps=2", "train.eval_every=2", "train.batch_size=2"]
    runs = {}
    for name, extra in (("media", []), ("cache", [f"data.cache={tmp_path / 'shards'}"])):
        targs = [*train_sets, *extra, f"train.runs_dir={tmp_path / name}"]
        code, out, err = run(capsys, train.main, [a for s in targs for a in ("--set", s)])
        assert code == 0, err
        runs[name] = {(s["split"], s["id"]) for s in last_json(out)["skipped"]}
    assert runs["media"] == runs["cache"]
    # the cache of a manifest without data.root: refused before the default world is built
    monkeypatch.setenv("AVSSL_CACHE", str(tmp_path / "worlds"))
    targs = [*TINY, f"data.cache={tmp_path / 'shards'}", f"train.runs_dir={tmp_path / 'r'}"]
    code, out, err = run(capsys, train.main, [a for s in targs for a in ("--set", s)])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip().endswith(f"add --set data.root={mixed['manifest']}")
    assert not (tmp_path / "worlds").exists()
    code, out, err = run(capsys, cli, [*argv, "--out", str(tmp_path / "strict"), "--strict"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")


def test_skip_fields_count_every_item_and_list_the_first():
    items = [{"id": f"c{i}", "reason": "no such file"} for i in range(MAX_LISTED_SKIPS + 3)]
    fields = skip_fields(items)
    assert fields == {"n_skipped": MAX_LISTED_SKIPS + 3, "skipped": items[:MAX_LISTED_SKIPS]}
    assert skip_fields([]) == {"n_skipped": 0, "skipped": []}
