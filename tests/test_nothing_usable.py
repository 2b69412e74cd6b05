"""``avssl cache`` and ``avssl index`` with no usable item: one error line, exit 2, nothing
written (no empty cache or index), and an earlier cache or index left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY
from test_index_fixes import _checkpoint

from avssl.cli import main as cli
from avssl.config import load_config
from avssl.data.manifest import Row, write_manifest
from avssl.data.shards import decode_settings

SETS = [a for s in TINY for a in ("--set", s)]


def _one_error(capsys) -> str:
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert captured.out == "" and line.startswith("error: ")
    return line


@pytest.fixture
def missing_manifest(tmp_path) -> Path:
    rows = [Row(id=f"c{i}", video=f"gone{i}.mp4", split="train") for i in range(3)]
    write_manifest(tmp_path / "manifest.jsonl", rows)
    return tmp_path / "manifest.jsonl"


def _cache(manifest: Path, out: Path) -> int:
    return cli(["cache", "--data", str(manifest), "--out", str(out), *SETS, "--no-progress"])


def test_cache_of_only_missing_clips_writes_nothing(missing_manifest, tmp_path, capsys):
    out = tmp_path / "new" / "cache"
    assert _cache(missing_manifest, out) == 2
    line = _one_error(capsys)
    assert line.startswith(f"error: {missing_manifest}: no usable clip to cache (3 of 3 row(s) ")
    assert "first: " in line and "gone0.mp4: no such file" in line
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cache(missing_manifest, empty) == 2
    _one_error(capsys)
    assert list(empty.iterdir()) == []


def test_cache_keeps_an_earlier_empty_cache_as_it_was(missing_manifest, tmp_path, capsys):
    out = tmp_path / "cache"
    out.mkdir()
    settings = decode_settings(load_config(None, TINY).data)
    old = json.dumps({"settings": settings, "shards": [], "skipped": [], "complete": True})
    (out / "index.json").write_text(old)
    assert _cache(missing_manifest, out) == 2
    assert "no usable clip" in _one_error(capsys)
    assert (out / "index.json").read_text() == old
    assert sorted(p.name for p in out.iterdir()) == ["index.json"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A random-weight contrastive checkpoint at the tiny test sizes."""
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), "contrastive")


def _index(ckpt: Path, out: Path, *inputs: str) -> int:
    return cli(
        ["index", "--checkpoint", str(ckpt), "--out", str(out), "--quiet", "--inputs", *inputs]
    )


def test_index_of_only_missing_media_writes_nothing(ckpt, missing_manifest, tmp_path, capsys):
    out = tmp_path / "idx"
    assert _index(ckpt, out, str(missing_manifest)) == 2
    line = _one_error(capsys)
    assert line.startswith(f"error: {out}: no usable media file in the inputs (3 skipped; first: ")
    assert line.endswith("gone0.mp4: no such file); nothing written")
    assert not out.exists()


def test_index_keeps_an_earlier_index_as_it_was(ckpt, missing_manifest, media_factory, capsys):
    good = media_factory("tone.wav", duration=1.0)
    out = media_factory.folder / "idx"
    assert _index(ckpt, out, str(good)) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    good.unlink()  # the only indexed file is gone, and the manifest's clips are missing
    assert _index(ckpt, out, str(missing_manifest)) == 2
    err = _one_error(capsys)  # kept, not emptied: an unmounted input reads like this too
    assert "no usable media file" in err and "every file it holds (1) is gone" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
