"""``avssl index --inputs`` takes file names that start with a dash, as other commands do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_media import last_json
from conftest import MediaFactory
from test_index_fixes import _checkpoint

from avssl.cli import main as cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A random-weight contrastive checkpoint at the tiny test sizes."""
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), "contrastive")


def _indexed(out: Path) -> list[str]:
    return sorted(
        Path(f["path"]).name for f in json.loads((out / "meta.json").read_text())["files"]
    )


@pytest.mark.parametrize(
    "inputs",
    [
        ["--inputs", "-a.wav", "-b.wav"],
        ["--inputs", "plain.wav", "-a.wav", "-b.wav"],
        ["--inputs", "--", "-a.wav", "-b.wav", "plain.wav"],
        ["--inputs=-a.wav", "--inputs", "-b.wav"],
    ],
)
def test_dash_inputs(ckpt, media_factory: MediaFactory, monkeypatch, capsys, inputs):
    folder = media_factory.folder
    for name in ("-a.wav", "-b.wav", "plain.wav"):
        media_factory(name, duration=1.0)
    monkeypatch.chdir(folder)
    args = ["index", "--checkpoint", str(ckpt), "--out", "idx", "--quiet", *inputs]
    assert cli(args) == 0, capsys.readouterr().err
    names = [a.removeprefix("--inputs=") for a in inputs if a.endswith(".wav")]
    assert _indexed(folder / "idx") == sorted(names)
    assert last_json(capsys.readouterr().out)["n_skipped"] == 0


def test_dash_word_that_is_no_file_still_refused(ckpt, tmp_path, capsys):
    """A dash word that is neither an existing path nor has an extension stays an option."""
    with pytest.raises(SystemExit) as exc:
        cli(["index", "--checkpoint", str(ckpt), "--inputs", "-x", "--out", str(tmp_path / "i")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --inputs: expected at least one argument (avssl index --help)"
    ]
    assert not (tmp_path / "i").exists()
