"""Bad input to ``evaluate.py`` refused in one line (``error: FILE: reason``, exit 2), before the
work where the input allows: checkpoints whose entries have the wrong type or whose stored config
is out of range, splits with no usable clip (the first reason given, as ``sync`` gives it),
``localize`` with no usable box, an ``--out`` symlink that cannot be written through, and a
``sync --max-offset`` under one video frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_index_fixes import _checkpoint

import evaluate
from avssl.data.manifest import Row, write_manifest
from avssl.eval.sync_cli import check_max_offset
from avssl.train.checkpoint import load_checkpoint, save_checkpoint

BOX = {"sources": [[0.25, 0.25, 0.75, 0.75]]}
SPECK = {"sources": [[0.5, 0.5, 0.501, 0.501]]}  # a valid box under one pixel at 224x224


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A random-weight contrastive checkpoint (it has a localisation map) at the tiny sizes."""
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), "contrastive")


def _one_line(capsys, argv: list[str]) -> str:
    """The one stderr line of a refusal (exit 2, no traceback)."""
    assert evaluate.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def _manifest(folder: Path, name: str, rows: list[tuple[str, dict | None]]) -> Path:
    """A manifest of test rows ``(video, boxes)``."""
    out = [
        Row(id=f"c{i}", video=video, split="test", labels=["a" if i % 2 else "b"], boxes=boxes)
        for i, (video, boxes) in enumerate(rows)
    ]
    write_manifest(folder / name, out)
    return folder / name


# ------------------------------------------------------------------ findings 1 and 2: checkpoints


def _edited(ckpt: Path, folder: Path, name: str, edit) -> Path:
    state = load_checkpoint(ckpt)
    del state["path"], state["format"]
    edit(state)
    return save_checkpoint(folder / name, state)


def _set(section: str, key: str, value):
    return lambda s: s["config"][section].__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda s: s.__setitem__("config", "a string"), "bad config in checkpoint (it is a str"),
        (lambda s: s.__setitem__("config", [1]), "bad config in checkpoint (it is a list"),
        (lambda s: s.__setitem__("model", "w"), "bad weights in checkpoint ('model' is a str,"),
        (lambda s: s.__setitem__("model", [1, 2]), "bad weights in checkpoint ('model' is a list"),
        (lambda s: s["model"].__setitem__("x", 3), "'model' holds an int at 'x', not a tensor"),
        (lambda s: s.__setitem__("step", "7"), "bad step in checkpoint (a str, not an integer)"),
        (lambda s: s.pop("config"), "no config stored in checkpoint"),
        (lambda s: s.pop("model"), "no weights ('model') stored in checkpoint"),
        (lambda s: s["config"].__setitem__(3, 1), "unknown config key '3'"),
    ],
)
def test_checkpoint_entries_of_the_wrong_type(ckpt, tmp_path, capsys, edit, reason):
    bad = _edited(ckpt, tmp_path, "bad.pt", edit)
    line = _one_line(capsys, ["avc", "--checkpoint", str(bad), "--data", "never-read.jsonl"])
    assert line.startswith(f"error: {bad}: ") and reason in line, line


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_set("model", "embed_dim", -4), "model.embed_dim: must be > 0, got -4"),
        (_set("model", "channels", [0, 16]), "model.channels: every value must be > 0, got [0, 16"),
        (_set("data", "sample_rate", 0), "data.sample_rate: must be > 0, got 0"),
        (_set("data", "fps", 1e9), "data.fps: must be at most 1000, got 1000000000.0"),
    ],
)
def test_out_of_range_config_in_a_checkpoint(ckpt, tmp_path, capsys, edit, reason):
    bad = _edited(ckpt, tmp_path, "bad.pt", edit)
    for sub in ("avc", "localize"):
        line = _one_line(capsys, [sub, "--checkpoint", str(bad), "--data", "never-read.jsonl"])
        assert line.startswith(f"error: {bad}: bad config in checkpoint (") and reason in line


# ------------------------------------------------------------------ finding 3: no usable clip


@pytest.mark.parametrize("sub", ["avc", "retrieval", "localize", "sync"])
def test_no_usable_clip_names_the_first_reason(ckpt, tmp_path, capsys, sub):
    manifest = _manifest(tmp_path, "m.jsonl", [(f"gone{i}.mp4", BOX) for i in range(3)])
    line = _one_line(capsys, [sub, "--checkpoint", str(ckpt), "--data", str(manifest)])
    gone = tmp_path / "gone0.mp4"
    assert line == (
        f"error: {manifest}: split 'test' has no usable clip of its 3 (first: {gone}: no such file)"
    )


def test_one_usable_clip_names_the_first_reason(ckpt, media_factory, capsys):
    media_factory("v0.mp4", duration=2.5)
    manifest = _manifest(media_factory.folder, "m.jsonl", [("v0.mp4", BOX), ("gone.mp4", BOX)])
    line = _one_line(capsys, ["avc", "--checkpoint", str(ckpt), "--data", str(manifest)])
    gone = media_factory.folder / "gone.mp4"
    assert line == (
        f"error: {manifest}: split 'test' has 1 usable clip of its 2 (need at least 2; "
        f"first: {gone}: no such file)"
    )


def test_classify_with_no_readable_clip_names_the_first_reason(tmp_path, capsys):
    for name in ("a/x1.wav", "a/x2.wav", "b/x3.wav", "b/x4.wav"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("not audio")
    argv = ["classify", "--dataset", "folder", "--root", str(tmp_path), "--features", "logmel",
            "--protocol", "kfold", "--folds", "2"]  # fmt: skip
    line = _one_line(capsys, argv)
    first = f"first: {tmp_path / 'a' / 'x1.wav'}: not a media file"
    assert line.startswith(f"error: {tmp_path}: 0 readable clips (4 skipped; {first}")


# ------------------------------------------------------------------ finding 4: localize, no box


def test_localize_with_no_usable_box_is_refused_before_decoding(ckpt, tmp_path, capsys):
    # the rows are missing too: the boxes are refused from the manifest, before decoding
    rows = [("gone0.mp4", SPECK), ("gone1.mp4", {"sources": []}), ("gone2.mp4", None)]
    manifest = _manifest(tmp_path, "m.jsonl", rows)
    line = _one_line(capsys, ["localize", "--checkpoint", str(ckpt), "--data", str(manifest)])
    assert line == (
        f"error: {manifest}: no test clip has a usable box (the boxes of all 2 with boxes draw "
        "nothing at 224x224: none listed, or under one pixel)"
    )


def test_localize_when_the_usable_boxes_are_unreadable(ckpt, media_factory, capsys):
    for i in range(2):
        media_factory(f"v{i}.mp4", duration=2.5)
    rows = [("v0.mp4", SPECK), ("v1.mp4", {"sources": []}), ("gone.mp4", BOX)]
    manifest = _manifest(media_factory.folder, "m.jsonl", rows)
    line = _one_line(capsys, ["localize", "--checkpoint", str(ckpt), "--data", str(manifest)])
    assert line.startswith(f"error: {manifest}: no readable test clip has a usable box (")
    assert "all 2 with boxes" in line


# ------------------------------------------------------------------ finding 5: --out symlinks


@pytest.mark.parametrize("sub", ["avc", "sync"])
def test_out_symlink_that_cannot_be_written_through(tmp_path, capsys, sub):
    missing = tmp_path / "no-such.pt"  # never read: the output is refused first
    argv = [sub, "--checkpoint", str(missing), *(["--video", "v.mp4"] if sub == "sync" else [])]
    link = tmp_path / "r.json"
    os.symlink(tmp_path / "nowhere" / "r.json", link)
    assert _one_line(capsys, [*argv, "--out", str(link)]) == (
        f"error: {link}: exists (pass --force to overwrite)"
    )
    assert _one_line(capsys, [*argv, "--out", str(link), "--force"]) == (
        f"error: {link}: is a symlink to {tmp_path / 'nowhere' / 'r.json'}, which cannot be "
        f"created (no folder {tmp_path / 'nowhere'})"
    )
    loop = tmp_path / "loop.json"
    os.symlink(loop, loop)
    assert _one_line(capsys, [*argv, "--out", str(loop), "--force"]) == (
        f"error: {loop}: is a symlink loop"
    )
    # a dangling link into an existing folder: --force writes the file it points at
    ok = tmp_path / "ok.json"
    os.symlink(tmp_path / "later.json", ok)
    line = _one_line(capsys, [*argv, "--out", str(ok), "--force"])
    assert str(ok) not in line and "no such file" in line  # accepted: fails on an input
    assert link.is_symlink() and loop.is_symlink() and not (tmp_path / "later.json").exists()


# ------------------------------------------------------------------ finding 6: sync --max-offset


def test_sync_max_offset_under_one_frame(ckpt, media_factory, capsys, monkeypatch):
    # refused once the checkpoint gives the frame rate (25 fps), before any clip is decoded
    # (the manifest is not even there) and before the model is built
    import avssl.models

    def no_model(*args):
        raise AssertionError("the model was built before --max-offset was checked")

    monkeypatch.setattr(avssl.models, "build_model", no_model)
    video = media_factory("v.mp4", duration=2.5)
    for argv in (["--video", str(video)], ["--data", str(media_factory.folder / "m.jsonl")]):
        line = _one_line(capsys, ["sync", "--checkpoint", str(ckpt), *argv, "--max-offset", "0.03"])
        assert line == (
            "error: --max-offset 0.03: less than one video frame; it must be at least 0.04 s "
            "(1 / the checkpoint's data.fps 25)"
        )
    check_max_offset(0.04, 25.0)  # exactly one frame is enough
    check_max_offset(1 / 29.97, 29.97)
    with pytest.raises(Exception, match="at least 0.04 s"):
        check_max_offset(0.0399, 25.0)
