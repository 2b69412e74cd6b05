"""``avssl report`` refuses a folder that is not a run, before writing anything; a run with
only some of its files still gets a page."""

from __future__ import annotations

import pytest
from bad_media import last_json

from avssl import cli


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["report", str(folder)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: {folder}: not a run directory (none of the files train.py writes: "
        "config.yaml, metrics.jsonl, best.pt, last.pt); nothing written"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl"])
def test_a_run_with_one_file_gets_a_page(tmp_path, capsys, name):
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text("")
    assert cli.main(["report", str(run)]) == 0
    assert last_json(capsys.readouterr().out)["report"] == str(run / "report.html")
