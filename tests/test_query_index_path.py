"""``avssl query --index``: a path that is not an index folder is named for what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MediaFactory, media_folder
from test_index_fixes import _checkpoint, _one_line_error

from avssl.cli import main as cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), "contrastive")


def test_a_missing_index_or_a_file_is_told_apart_from_a_folder_without_meta_json(
    ckpt, media_factory: MediaFactory, tmp_path, capsys
):
    # a mistyped --index said "not an avssl index (no meta.json)", as if the folder existed,
    # and so did the index's own meta.json given as --index
    sound = media_folder(media_factory, {"tone.wav": {"duration": 2.0}}) / "tone.wav"
    (tmp_path / "empty").mkdir()
    (tmp_path / "meta.json").write_text("{}")
    expected = {
        "typo": "no such index folder",
        "meta.json": "not an index folder",
        "empty": "not an avssl index (no meta.json)",
    }
    for name, reason in expected.items():
        index = tmp_path / name
        args = ["query", "--index", str(index), "--checkpoint", str(ckpt), "--audio", str(sound)]
        assert cli(args) == 2
        assert _one_line_error(capsys) == f"error: {index}: {reason}"
