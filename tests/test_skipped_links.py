"""``avssl index`` and ``avssl embed``: a link to nothing found in an input folder is skipped
like any unreadable file, with a ``skipped`` line on stderr and its absolute path in the JSON."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bad_media import last_json
from conftest import MediaFactory, media_folder
from test_index_fixes import _checkpoint

from avssl.cli import main as cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), "contrastive")


@pytest.fixture
def folder(media_factory: MediaFactory, tmp_path) -> Path:
    media = media_folder(media_factory, {"tone.wav": {"duration": 2.0}})
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(media / "tone.wav", clips / "tone.wav")
    (clips / "bad.mp4").write_bytes(b"not a video")
    (clips / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    return clips


@pytest.mark.parametrize("command", ["index", "embed"])
def test_a_link_to_nothing_gets_a_skipped_line_and_an_absolute_path(
    command, ckpt, folder, tmp_path, capsys, monkeypatch
):
    # it was counted in the JSON only, named as found under a relative input (clips/gone.wav,
    # where the other skipped files were absolute), and no "skipped" line said so on stderr
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = [command, "--checkpoint", str(ckpt), "--out", str(out), "--inputs", "clips"]
    assert cli(args) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    gone = os.path.join(str(folder), "gone.wav")
    assert summary["n_skipped"] == 2
    assert {s["path"] for s in summary["skipped"]} == {gone, str(folder / "bad.mp4")}
    lines = [x for x in captured.err.splitlines() if x.startswith("skipped ")]
    assert len(lines) == 2, captured.err
    assert any(x.startswith(f"skipped {gone}: no such file (a broken link to ") for x in lines)
    # --quiet keeps stderr free of per-file lines, these included
    shutil.rmtree(out)
    assert cli([*args, "--quiet"]) == 0
    assert not [x for x in capsys.readouterr().err.splitlines() if x.startswith("skipped ")]


@pytest.mark.parametrize("command", ["index", "embed"])
def test_a_fifo_named_as_media_in_a_folder_is_skipped_and_counted(
    command, ckpt, folder, tmp_path, capsys
):
    # it was left out without a word (not counted, not listed), where the same FIFO given as
    # an input is skipped as "not a regular file or folder"
    os.mkfifo(folder / "pipe.wav")
    out = tmp_path / "out"
    args = [command, "--checkpoint", str(ckpt), "--out", str(out), "--inputs", str(folder)]
    assert cli(args) == 0
    summary = last_json(capsys.readouterr().out)
    assert {"path": str(folder / "pipe.wav"), "reason": "not a regular file"} in summary["skipped"]
    assert summary["n_skipped"] == 3
