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


def test_a_dashed_run_huge_numbers_and_a_result_named_twice(tmp_path, capsys, monkeypatch):
    # a run folder starting with a dash was "required: run_dir"; a number of 5,000 digits was
    # a traceback; a result given twice (and found in the run) was shown three times
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "-run"
    run.mkdir()
    (run / "config.yaml").write_text("")
    result = '{"evaluated_at": "2026-12-06T00:00:00+00:00", "offset_accuracy": 0.9}\n'
    (run / "sync.json").write_text(result)
    (tmp_path / "copy.json").write_text(result)
    (run / "huge.json").write_text('{"evaluated_at": "x", "n": 1' + "0" * 5000 + "}")
    lines = ['{"step": 1, "split": "train", "loss": 1' + "0" * 400 + "}"]
    lines += [f'{{"step": {s}, "split": "train", "loss": {1 / s}}}' for s in (2, 3)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert cli.main(["report", "-run", "--results", "copy.json", "copy.json"]) == 0
    out, err = capsys.readouterr()
    assert last_json(out)["report"] == "-run/report.html"
    assert "note: huge.json: skipped (not readable JSON: Exceeds the limit" in err
    page = (run / "report.html").read_text()
    assert page.count("offset_accuracy") == 1
