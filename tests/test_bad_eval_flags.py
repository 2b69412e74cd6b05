"""Bad evaluation flags and outputs: refused in one line before any work, nothing overwritten.

Numeric flags are checked by argparse (a one-line error naming the flag, exit 2); an output that
exists is refused (``error: PATH: reason``, exit 2) unless ``--force``. No case needs a
checkpoint: every refusal comes before the model is loaded.
"""

from __future__ import annotations

import json

import pytest
from bad_media import last_json
from test_classify import make_folder

import evaluate
from avssl.cli import main as cli

MISSING = "no-such.pt"
CLASSIFY = ["classify", "--dataset", "manifest", "--root", "m.jsonl", "--features", "logmel"]
SYNC = ["sync", "--checkpoint", MISSING, "--video", "v.mp4"]


def _usage_error(capsys, argv: list[str]) -> str:
    """The one stderr line of an argparse refusal (exit 2, no usage block, no traceback)."""
    with pytest.raises(SystemExit) as exc:
        evaluate.main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "flag", "reason"),
    [
        (["avc", "--checkpoint", MISSING, "--windows", "0"], "--windows", "at least 1, got 0"),
        (["avc", "--checkpoint", MISSING, "--windows", "-3"], "--windows", "at least 1, got -3"),
        (["avc", "--checkpoint", MISSING, "--windows", "x"], "--windows", "not an integer: 'x'"),
        ([*CLASSIFY, "--batch-size", "0"], "--batch-size", "at least 1, got 0"),
        ([*CLASSIFY, "--folds", "0"], "--folds", "at least 2, got 0"),
        ([*CLASSIFY, "--folds", "1"], "--folds", "at least 2, got 1"),
        ([*SYNC, "--batch-size", "0"], "--batch-size", "at least 1, got 0"),
        ([*SYNC, "--times", "0"], "--times", "at least 1, got 0"),
        ([*SYNC, "--times", "-2"], "--times", "at least 1, got -2"),
        (
            [*SYNC, "--times", "99999999999999999999"],
            "--times",
            "at most 10,000, got 99999999999999999999",
        ),
        ([*CLASSIFY, "--seed", "4294967296"], "--seed", "at most 4,294,967,295, got 4294967296"),
        ([*SYNC, "--max-offset", "nan"], "--max-offset", "above 0, got nan"),
        ([*SYNC, "--max-offset", "inf"], "--max-offset", "above 0, got inf"),
        ([*SYNC, "--max-offset", "0"], "--max-offset", "above 0, got 0"),
        (["retrieval", "--checkpoint", MISSING, "--cca-dim", "-3"], "--cca-dim", "got -3"),
        (["retrieval", "--checkpoint", MISSING, "--cca-dim", "0"], "--cca-dim", "got 0"),
        (["retrieval", "--checkpoint", MISSING, "--cca-ridge", "-1"], "--cca-ridge", "got -1"),
        (["retrieval", "--checkpoint", MISSING, "--cca-ridge", "nan"], "--cca-ridge", "got nan"),
    ],
)
def test_bad_numeric_flags_are_usage_errors(capsys, argv, flag, reason):
    line = _usage_error(capsys, argv)
    assert line.startswith(f"error: {flag}: ")
    assert line.endswith(f"{reason} (evaluate.py {argv[0]} --help)")


def _refused(capsys, argv: list[str]) -> str:
    """The one stderr line of a refusal by the entry point (exit 2)."""
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err.strip()


ALL = {
    "avc": ["avc", "--checkpoint", MISSING],
    "retrieval": ["retrieval", "--checkpoint", MISSING],
    "localize": ["localize", "--checkpoint", MISSING],
    "sync": SYNC,
    "classify": CLASSIFY,
}


@pytest.mark.parametrize("name", list(ALL))
def test_existing_out_file_is_kept_unless_force(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "precious.json"
    mine.write_bytes(b'{"mine": 1}\n')
    argv = [*ALL[name], "--out", str(mine)]
    assert _refused(capsys, argv) == f"error: {mine}: exists (pass --force to overwrite)"
    assert mine.read_bytes() == b'{"mine": 1}\n'
    # with --force the output is accepted and the command goes on to fail on its input instead
    err = _refused(capsys, [*argv, "--force"])
    assert str(mine) not in err and mine.read_bytes() == b'{"mine": 1}\n'


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_out_that_cannot_be_a_file(tmp_path, capsys, force):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert _refused(capsys, [*ALL["avc"], "--out", str(folder), *force]) == (
        f"error: {folder}: is a directory"
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    argv = [*ALL["avc"], "--out", str(blocker / "sub" / "r.json"), *force]
    assert _refused(capsys, argv) == f"error: {blocker}: not a directory"
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_out_dir_that_is_a_file(tmp_path, capsys, force):
    mine = tmp_path / "existing_file"
    mine.write_text("MINE")
    argv = [*ALL["localize"], "--out-dir", str(mine), *force]
    assert _refused(capsys, argv) == f"error: {mine}: exists and is not a directory"
    assert mine.read_text() == "MINE"


def test_non_empty_out_dir_is_kept_unless_force(tmp_path, capsys):
    folder = tmp_path / "heat_user"
    folder.mkdir()
    mine = folder / "00000_0_nicolas_0.png"
    mine.write_text("MINE")
    argv = [*ALL["localize"], "--out-dir", str(folder)]
    err = _refused(capsys, argv)
    assert err == f"error: {folder}: folder is not empty (pass --force to write into it)"
    assert mine.read_text() == "MINE" and [p.name for p in folder.iterdir()] == [mine.name]
    assert MISSING in _refused(capsys, [*argv, "--force"])  # accepted: fails on the checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    assert MISSING in _refused(capsys, [*ALL["localize"], "--out-dir", str(empty)])


def test_force_overwrites_an_existing_out(tmp_path, capsys):
    root = make_folder(tmp_path / "f", recordings=2, takes=1)
    out = tmp_path / "r.json"
    out.write_text("old")
    argv = ["classify", "--dataset", "folder", "--root", str(root), "--features", "logmel",
            "--folds", "2", "--group-regex", r"^(.+)_take", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert evaluate.main(argv) == 2 and out.read_text() == "old"
    capsys.readouterr()
    assert evaluate.main([*argv, "--force"]) == 0
    assert json.loads(out.read_text()) == last_json(capsys.readouterr().out)


def test_query_html_is_kept_unless_force(tmp_path, capsys):
    page = tmp_path / "r.html"
    page.write_text("mine")
    argv = ["query", "--index", str(tmp_path / "idx"), "--checkpoint", MISSING,
            "--audio", "a.wav", "--html", str(page)]  # fmt: skip
    assert cli(argv) == 2
    assert capsys.readouterr().err == f"error: {page}: exists (pass --force to overwrite)\n"
    assert cli([*argv, "--force"]) == 2  # accepted: fails on the missing index instead
    err = capsys.readouterr().err
    assert str(page) not in err and len(err.splitlines()) == 1 and page.read_text() == "mine"


def test_force_never_overwrites_an_input(tmp_path, capsys, monkeypatch):
    # --force replaces an earlier output, never a file the command reads: the manifest, the
    # checkpoint (also inside a run folder given as --checkpoint), the index or the query
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "best.pt").write_text("ckpt")
    (tmp_path / "m.jsonl").write_text("rows")
    index = tmp_path / "idx"
    index.mkdir()
    (index / "meta.json").write_text("{}")
    (tmp_path / "q.wav").write_text("sound")
    cases = [
        (["avc", "--checkpoint", str(run), "--data", "m.jsonl", "--out", "m.jsonl"], "m.jsonl"),
        (["avc", "--checkpoint", f"{run}/best.pt", "--out", f"{run}/best.pt"], f"{run}/best.pt"),
        (["avc", "--checkpoint", str(run), "--out", f"{run}/best.pt"], f"{run}/best.pt"),
    ]
    for argv, out in cases:
        err = _refused(capsys, [*argv, "--force"])
        assert err.startswith(f"error: {out}: is ") and "--force never overwrites it" in err
    # an HTML output must be named .html: an input never is
    for page in ("q.wav", "idx/meta.json"):
        argv = ["query", "--index", "idx", "--checkpoint", str(run), "--audio", "q.wav"]
        assert cli([*argv, "--html", page, "--force"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {page}: --html writes an HTML page: name it .html or .htm\n"
    assert cli([*argv, "--html", ""]) == 2  # an unset variable: refused, not ignored
    assert capsys.readouterr().err == "error: --html: an empty file name\n"
    assert cli(["report", str(run), "-o", f"{run}/best.pt", "--force"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {run}/best.pt: -o writes an HTML page: name it .html or .htm\n"
    assert cli(["report", str(run), "-o", "notes.txt"]) == 2  # a new file: refused all the same
    assert "-o writes an HTML page" in capsys.readouterr().err
    assert not (tmp_path / "notes.txt").exists()
    assert (run / "best.pt").read_text() == "ckpt" and (tmp_path / "m.jsonl").read_text() == "rows"
    assert (index / "meta.json").read_text() == "{}" and (tmp_path / "q.wav").read_text() == "sound"
    # an earlier result in the run folder may be replaced: refused only for the checkpoint
    (run / "avc.json").write_text("old")
    argv = ["avc", "--checkpoint", str(run), "--out", f"{run}/avc.json", "--force"]
    assert "--force never" not in _refused(capsys, argv)


def test_empty_values_and_media_outputs_are_refused(tmp_path, capsys, monkeypatch):
    """``--data ""`` once evaluated the checkpoint's own data, ``--video ""`` a whole split; an
    ``--out`` named as media could be one of the manifest's files (--force replaced a video
    with JSON)."""
    monkeypatch.chdir(tmp_path)
    for argv, flag in (
        (["avc", "--checkpoint", MISSING, "--data", ""], "--data"),
        (["sync", "--checkpoint", MISSING, "--video", ""], "--video"),
        (["avc", "--checkpoint", MISSING, "--out", ""], "--out"),
    ):
        assert _refused(capsys, argv) == f"error: {flag}: an empty value (leave the flag out)"
    (tmp_path / "0_george_0.wav").write_text("sound")
    for out in ("0_george_0.wav", "clip.MP4", "frame.png"):
        argv = [*CLASSIFY, "--out", out, "--force"]
        assert _refused(capsys, argv).startswith(f"error: {out}: --out names a media file")
    assert (tmp_path / "0_george_0.wav").read_text() == "sound"
    # a checkpoint the log-mel baseline does not use must still exist (a typo goes unnoticed)
    err = _refused(capsys, [*CLASSIFY, "--checkpoint", MISSING])
    assert err == f"error: {MISSING}: no such checkpoint or run directory"


def test_existing_out_in_a_folder_that_takes_no_new_file(tmp_path, capsys, monkeypatch):
    # evaluate rewrites --out in place: a writable file in a read-only folder is fine, a new
    # file there is refused before any work
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    mine = tmp_path / "shared.json"
    mine.write_text("old")
    err = _refused(capsys, [*ALL["avc"], "--out", str(mine), "--force"])
    assert MISSING in err and "cannot be written" not in err  # accepted: fails on the checkpoint
    new = tmp_path / "new.json"
    err = _refused(capsys, [*ALL["avc"], "--out", str(new)])
    assert err == f"error: {new}: cannot be written (Read-only file system)"
